package com.huseedge.core

import java.io.File
import java.security.MessageDigest

/**
 * An exported edge bundle (see `huse_edge/bundle.py`): the only contract between the Python side and the app.
 * Loading checks the format version and the sha256 of every file listed in `manifest.json` before anything runs,
 * and that labels and vocabulary match the manifest.
 */
class HuseBundle private constructor(
    val directory: File,
    val manifest: Map<String, Any?>,
    val labels: LabelHierarchy,
    val tokenizer: TitleTokenizer,
    val preprocessor: ImagePreprocessor
) {
    val embeddingDim: Int get() = (manifest["embedding_dim"] as Double).toInt()
    val fusionImageWeight: Double get() = manifest["fusion_image_weight"] as? Double ?: 0.5

    /** The multi-signature model file of a variant (`int8`, `float`, ...). */
    fun modelFile(variant: String): File = File(directory, variant(variant)["model"] as String)

    /** Inputs and outputs of one signature of a variant, by name, with their quantisation. */
    fun io(variant: String, signature: String): Pair<Map<String, TensorSpec>, Map<String, TensorSpec>> {
        val io = Json.obj(variant(variant)["io"] ?: throw FormatException("manifest: no io description of '$variant'"), "io")
        val entry = Json.obj(io[signature] ?: throw FormatException("manifest: no signature '$signature' in '$variant'"), signature)
        fun specs(side: String) = Json.obj(entry[side], side).mapValues { (name, raw) ->
            val spec = Json.obj(raw, name)
            @Suppress("UNCHECKED_CAST")
            TensorSpec(spec["dtype"] as String, (spec["shape"] as List<Double>).map { it.toInt() },
                QuantParams((spec["scale"] as Double).toFloat(), (spec["zero_point"] as Double).toLong()))
        }
        return Pair(specs("inputs"), specs("outputs"))
    }

    private fun variant(name: String): Map<String, Any?> {
        val variants = Json.obj(manifest["variants"], "manifest variants")
        return Json.obj(variants[name] ?: throw FormatException("the bundle has no '$name' model (it has ${variants.keys})"), name)
    }

    companion object {
        const val FORMAT_VERSION = 1

        fun load(directory: File, verifyHashes: Boolean = true): HuseBundle {
            val manifestFile = File(directory, "manifest.json")
            if (!manifestFile.isFile) throw FormatException("$directory: not a bundle (no manifest.json)")
            val manifest = Json.obj(Json.parse(manifestFile.readText()), "manifest.json")
            val version = (manifest["format_version"] as? Double)?.toInt()
            if (version != FORMAT_VERSION) throw FormatException("$directory: bundle format version $version, this app reads $FORMAT_VERSION")
            val files = Json.obj(manifest["files"], "manifest files")
            for ((name, expected) in files) {
                if (name.startsWith("/") || name.split('/').contains("..")) throw FormatException("manifest names a file outside the bundle: $name")
                if (!verifyHashes) continue
                val file = File(directory, name)
                if (!file.isFile) throw FormatException("$name is listed in the manifest but missing")
                if (sha256(file) != expected) throw FormatException("$name does not match its sha256 in the manifest (corrupted or modified)")
            }
            val labels = LabelHierarchy.load(File(directory, "labels.txt"))
            val tokenizer = TitleTokenizer.load(directory)
            if ((manifest["num_classes"] as? Double)?.toInt() != labels.size || (manifest["vocab_size"] as? Double)?.toInt() != tokenizer.size) {
                throw FormatException("labels.txt/vocab.txt do not match the manifest (${labels.size} classes, ${tokenizer.size} tokens)")
            }
            val preprocessing = Json.obj(Json.parse(File(directory, "preprocessing.json").readText()), "preprocessing.json")
            // bundles exported before the spec had a version follow version 1, which version 2 extends
            val spec = (preprocessing["version"] as? Double)?.toInt() ?: 1
            if (spec > ImagePreprocessor.SPEC_VERSION) throw FormatException("$directory: preprocessing spec version $spec, this app implements ${ImagePreprocessor.SPEC_VERSION}")
            val preprocessor = ImagePreprocessor((preprocessing["height"] as Double).toInt(), (preprocessing["width"] as Double).toInt())
            return HuseBundle(directory, manifest, labels, tokenizer, preprocessor)
        }

        fun sha256(file: File): String {
            val digest = MessageDigest.getInstance("SHA-256")
            file.inputStream().use { stream ->
                val buffer = ByteArray(1 shl 16)
                while (true) {
                    val read = stream.read(buffer)
                    if (read < 0) break
                    digest.update(buffer, 0, read)
                }
            }
            return digest.digest().joinToString("") { String.format("%02x", it) }
        }
    }
}
