package com.huseedge.demo

import android.content.Context
import android.graphics.Bitmap
import android.os.SystemClock
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import com.huseedge.core.ClassScore
import com.huseedge.core.HuseBundle
import com.huseedge.core.ImagePreprocessor
import com.huseedge.core.ProductIndex
import com.huseedge.core.Ranking
import com.huseedge.core.SearchHit
import com.huseedge.core.TensorSpec
import com.huseedge.core.TitleTokenizer
import java.io.File
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * Owns the LiteRT CompiledModel of the bundle in `assets/huse` and runs it off the main thread: photo and/or title
 * -> top-k categories (full hierarchy) and the most similar catalogue products. Everything platform-free
 * (tokenizer, resize, quantisation, fusion, top-k, index search, manifest checks) is the `core` module, verified
 * on the JVM against the Python runtime; this class only moves bytes between it and LiteRT.
 */
class HuseClassifierHelper(
    private val context: Context,
    private val listener: Listener,
    var useGpu: Boolean = false,
    private val topK: Int = 5,
    private val variant: String = "int8",
) {
    interface Listener {
        fun onResults(result: Result)
        fun onError(message: String)
    }

    data class Result(
        val categories: List<ClassScore>,
        val similar: List<SearchHit>,
        val inferenceMs: Long,
        val accelerator: String,
    )

    private val executor: ExecutorService = Executors.newSingleThreadExecutor()
    private var bundle: HuseBundle? = null
    private var index: ProductIndex? = null
    private var model: CompiledModel? = null
    private var modelOnGpu = false

    /** Classifies asynchronously; either input may be null, not both. Results arrive on the listener's thread.
     *  A title without tokens (no ASCII letter or digit) counts as none: the text tower would classify padding. */
    fun classify(photo: Bitmap?, title: String?) {
        executor.execute {
            try {
                listener.onResults(run(photo, title?.takeIf { TitleTokenizer.tokens(it).isNotEmpty() }))
            } catch (error: Exception) {
                listener.onError(error.message ?: error.toString())
            }
        }
    }

    fun close() {
        executor.execute {
            model?.close()
            model = null
        }
        executor.shutdown()
    }

    private fun run(photo: Bitmap?, title: String?): Result {
        require(photo != null || title != null) { "a photo or a title with letters or digits is needed" }
        val bundle = bundle ?: HuseBundle.load(copyAssets()).also { bundle = it }
        val index = index ?: File(bundle.directory, INDEX).takeIf { it.isFile }?.let { ProductIndex.load(it) }.also { index = it }
        val model = compiledModel(bundle)
        val start = SystemClock.uptimeMillis()

        val imageBytes = photo?.let { pixelsOf(bundle, it) }
        val tokens = title?.let { bundle.tokenizer.encode(it) }
        val imageEmbedding = imageBytes?.let { runSignature(model, bundle, "embed_image", mapOf("image" to it)) }
        val textEmbedding = tokens?.let { runSignature(model, bundle, "embed_text", mapOf("tokens" to it)) }
        val probabilities = if (imageBytes != null && tokens != null) {
            runSignature(model, bundle, "classify_product", mapOf("image" to imageBytes, "tokens" to tokens))
        } else {
            runSignature(model, bundle, "classify", mapOf("embedding" to (imageEmbedding ?: textEmbedding)!!))
        }
        val query = if (imageEmbedding != null && textEmbedding != null) {
            Ranking.fuse(imageEmbedding, textEmbedding, bundle.fusionImageWeight)
        } else (imageEmbedding ?: textEmbedding)!!
        val similar = index?.search(query, "fused", topK) ?: emptyList()
        val elapsed = SystemClock.uptimeMillis() - start
        return Result(Ranking.topClasses(probabilities, bundle.labels, topK), similar, elapsed, if (modelOnGpu) "GPU" else "CPU")
    }

    /** Real-valued inputs (pixels 0..255, token ids, embeddings) in, the signature's single output as reals out. */
    private fun runSignature(model: CompiledModel, bundle: HuseBundle, signature: String, inputs: Map<String, Any>): FloatArray {
        val (inputSpecs, outputSpecs) = bundle.io(variant, signature)
        val inputBuffers = inputSpecs.mapValues { (name, spec) ->
            model.createInputBuffer(name, signature).also { buffer ->
                when (val value = inputs.getValue(name)) {
                    is IntArray -> buffer.writeInt(value)
                    is FloatArray -> write(buffer, spec, value)
                    else -> throw IllegalArgumentException("unsupported input for $name")
                }
            }
        }
        val (outputName, outputSpec) = outputSpecs.entries.single()
        val outputBuffer = model.createOutputBuffer(outputName, signature)
        try {  // a failed run must not leak its native buffers: the user retries on the same helper
            model.run(inputBuffers, mapOf(outputName to outputBuffer), signature)
            return if (outputSpec.dtype == "float32") outputBuffer.readFloat() else outputSpec.decode(outputBuffer.readInt8())
        } finally {
            (inputBuffers.values + outputBuffer).forEach { it.close() }
        }
    }

    private fun write(buffer: com.google.ai.edge.litert.TensorBuffer, spec: TensorSpec, values: FloatArray) {
        if (spec.dtype == "float32") buffer.writeFloat(values) else buffer.writeInt8(spec.encode(values))  // uint8 too: same bytes
    }

    private fun pixelsOf(bundle: HuseBundle, photo: Bitmap): FloatArray {
        val argb = IntArray(photo.width * photo.height)
        photo.getPixels(argb, 0, photo.width, 0, 0, photo.width, photo.height)
        val resized = bundle.preprocessor.resize(ImagePreprocessor.argbToRgb(argb), photo.height, photo.width)
        return bundle.preprocessor.toFloats(resized)
    }

    private fun compiledModel(bundle: HuseBundle): CompiledModel {
        model?.let { if (modelOnGpu == useGpu) return it else it.close() }
        val options = if (useGpu) CompiledModel.Options(Accelerator.GPU, Accelerator.CPU) else CompiledModel.Options(Accelerator.CPU)
        return CompiledModel.create(bundle.modelFile(variant).path, options).also {
            model = it
            modelOnGpu = useGpu
        }
    }

    /** Assets are copied to app storage once per app version, so the core can verify and memory-map plain files;
     *  the copies of earlier versions are deleted then, or each update would leave a bundle (6-20 MB) behind. */
    private fun copyAssets(): File {
        val target = File(context.filesDir, "huse-${context.packageManager.getPackageInfo(context.packageName, 0).lastUpdateTime}")
        if (!File(target, "manifest.json").isFile) {
            val staging = File(context.filesDir, "huse-staging").apply { deleteRecursively(); mkdirs() }
            for (name in context.assets.list(ASSETS).orEmpty()) {
                context.assets.open("$ASSETS/$name").use { input -> File(staging, name).outputStream().use { input.copyTo(it) } }
            }
            check(staging.renameTo(target)) { "cannot install the bundle into ${target.path}" }
            context.filesDir.listFiles { file -> file.isDirectory && file.name.startsWith("huse-") && file != target }
                ?.forEach { it.deleteRecursively() }
        }
        return target
    }

    companion object {
        const val ASSETS = "huse"
        const val INDEX = "products.hidx"
    }
}
