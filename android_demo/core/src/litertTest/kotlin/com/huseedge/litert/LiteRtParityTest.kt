package com.huseedge.litert

import com.huseedge.core.Golden
import com.huseedge.core.HuseBundle
import com.huseedge.core.Ranking
import org.junit.Assert.assertEquals
import org.junit.Assume
import org.junit.Test
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * The exported int8 bundle run through the LiteRT C API (`-Dhuse.litert=.../libLiteRt.so`) on tensors made by
 * the Kotlin core (tokenizer, resize, quantisation) gives exactly the Python runtime's embeddings and the same
 * fused top-1 on every golden product.
 */
class LiteRtParityTest {
    @Test
    fun kotlinPathEqualsPythonRuntime() {
        val library = System.getProperty("huse.litert")
        Assume.assumeTrue("-Dhuse.litert (libLiteRt.so) not given", library != null && File(library).isFile)
        val bundle = HuseBundle.load(Golden.bundleDir())
        val titles = Golden.lines("products.jsonl").map { it["title"] as String }
        val images = Golden.rawImages()
        val expected = mapOf("embed_image" to Golden.npy("image_embeddings").float32(),
            "embed_text" to Golden.npy("text_embeddings").float32())
        val probabilities = Golden.npy("fused_probabilities")
        val pythonProbabilities = probabilities.float32()
        val dim = bundle.embeddingDim
        var sameTop1 = 0
        LiteRtCompiledModel(library!!, bundle.modelFile("int8").path).use { model ->
            for (signature in model.signatures.keys) {  // the manifest's quantisation is the model's own
                val (inputs, outputs) = bundle.io("int8", signature)
                for (tensor in model.inputs(signature) + model.outputs(signature)) {
                    val spec = inputs[tensor.name] ?: outputs.getValue(tensor.name)
                    assertEquals("$signature/${tensor.name}", tensor.quant, spec.quant)
                    assertEquals("$signature/${tensor.name}", tensor.shape.toList(), spec.shape)
                }
            }
            val imageInput = model.inputs("embed_image").single()
            for ((i, image) in images.withIndex()) {
                val pixels = bundle.preprocessor.resize(image.third, image.first, image.second)
                val imageBytes = imageInput.quant.toUInt8(bundle.preprocessor.toFloats(pixels))
                val tokens = bundle.tokenizer.encode(titles[i])
                val tokenBytes = ByteBuffer.allocate(4 * tokens.size).order(ByteOrder.LITTLE_ENDIAN)
                    .also { b -> tokens.forEach { b.putInt(it) } }.array()
                val inputs = mapOf("image" to imageBytes, "tokens" to tokenBytes)
                for (signature in listOf("embed_image", "embed_text")) {
                    val output = model.outputs(signature).single()
                    val raw = model.run(signature, inputs.filterKeys { key -> model.inputs(signature).any { it.name == key } })
                    val mine = output.quant.fromInt8(raw.getValue(output.name))
                    val python = expected.getValue(signature).copyOfRange(i * dim, (i + 1) * dim)
                    for (j in 0 until dim) assertEquals("$signature of product $i, element $j", python[j], mine[j], 0f)
                }
                val fusedOutput = model.outputs("classify_product").single()
                val fused = fusedOutput.quant.fromInt8(model.run("classify_product", inputs).getValue(fusedOutput.name))
                val python = pythonProbabilities.copyOfRange(i * fused.size, (i + 1) * fused.size)
                assertEquals("fused top-1 of product $i (${titles[i]})",
                    Ranking.topIndices(python, 1)[0], Ranking.topIndices(fused, 1)[0])
                sameTop1++
            }
        }
        println("LiteRT C API (CompiledModel CPU) via JNA: fused top-1 equal to the Python runtime on $sameTop1 of ${images.size} products")
    }
}
