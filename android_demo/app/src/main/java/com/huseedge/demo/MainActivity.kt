package com.huseedge.demo

import android.graphics.Bitmap
import android.graphics.ImageDecoder
import android.net.Uri
import android.os.Build
import android.os.Bundle
import android.provider.MediaStore
import android.widget.Toast
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import com.huseedge.demo.databinding.ActivityMainBinding

/** UI only: picks or takes a photo, takes a title, shows what [HuseClassifierHelper] returns. */
class MainActivity : AppCompatActivity(), HuseClassifierHelper.Listener {
    private lateinit var binding: ActivityMainBinding
    private lateinit var helper: HuseClassifierHelper
    private var photo: Bitmap? = null

    private val pickPhoto = registerForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri -> uri?.let { show(decode(it)) } }
    private val takePhoto = registerForActivityResult(ActivityResultContracts.TakePicturePreview()) { bitmap -> bitmap?.let { show(it) } }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        binding = ActivityMainBinding.inflate(layoutInflater)
        setContentView(binding.root)
        helper = HuseClassifierHelper(this, this)
        binding.pickPhoto.setOnClickListener {
            pickPhoto.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly))
        }
        binding.takePhoto.setOnClickListener { takePhoto.launch(null) }
        binding.useGpu.setOnCheckedChangeListener { _, checked -> helper.useGpu = checked }
        binding.classify.setOnClickListener {
            val title = binding.title.text?.toString()
            if (photo == null && title.isNullOrBlank()) {
                Toast.makeText(this, R.string.need_input, Toast.LENGTH_SHORT).show()
            } else {
                helper.classify(photo, title)
            }
        }
    }

    override fun onDestroy() {
        helper.close()
        super.onDestroy()
    }

    override fun onResults(result: HuseClassifierHelper.Result) = runOnUiThread {
        binding.latency.text = getString(R.string.latency, result.accelerator, result.inferenceMs)
        binding.categories.text = result.categories.joinToString("\n") { "%.3f  %s".format(it.score, it.path.joinToString(" > ")) }
        binding.similar.text = result.similar.joinToString("\n") { "%.3f  %s  [%s]".format(it.score, it.product.title, it.product.category.lastOrNull() ?: "no category") }
    }

    override fun onError(message: String) = runOnUiThread { Toast.makeText(this, message, Toast.LENGTH_LONG).show() }

    private fun show(bitmap: Bitmap) {
        photo = bitmap.copy(Bitmap.Config.ARGB_8888, false)
        binding.photo.setImageBitmap(photo)
    }

    private fun decode(uri: Uri): Bitmap =
        if (Build.VERSION.SDK_INT >= 28) {
            ImageDecoder.decodeBitmap(ImageDecoder.createSource(contentResolver, uri)) { decoder, _, _ ->
                decoder.allocator = ImageDecoder.ALLOCATOR_SOFTWARE
            }
        } else {
            @Suppress("DEPRECATION") MediaStore.Images.Media.getBitmap(contentResolver, uri)
        }
}
