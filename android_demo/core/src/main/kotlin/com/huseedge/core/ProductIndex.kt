package com.huseedge.core

import java.io.File
import java.util.zip.ZipFile

/** One indexed product. */
data class IndexedProduct(val id: String, val title: String, val category: List<String>)

/** A search result: the product, its row in the index and its cosine score. */
data class SearchHit(val row: Int, val product: IndexedProduct, val score: Float)

/**
 * The `.hidx` product index written by `huse-edge index` (format version 1, see `huse_edge/index.py`): a zip with
 * `index.json`, `products.jsonl` and per modality `<m>.i8.npy` (N x D int8) + `<m>.scale.npy` (N float32).
 * Search is brute-force cosine on the int8 rows, exactly as the Python side's int8 search:
 * score(row) = (query . i8[row]) * scale[row].
 */
class ProductIndex(
    val products: List<IndexedProduct>,
    val dim: Int,
    private val values: Map<String, ByteArray>,
    private val scales: Map<String, FloatArray>,
    val modelSha256: String,
    val fusionImageWeight: Double
) {
    val size: Int get() = products.size
    val modalities: Set<String> get() = values.keys

    fun scores(query: FloatArray, modality: String): FloatArray {
        val rows = values[modality] ?: throw IllegalArgumentException("the index has no '$modality' embeddings (it has $modalities)")
        require(query.size == dim) { "query has ${query.size} dimensions, the index $dim" }
        val scale = scales.getValue(modality)
        return FloatArray(size) { row ->
            var dot = 0f
            val base = row * dim
            for (j in 0 until dim) dot += query[j] * rows[base + j]
            dot * scale[row]
        }
    }

    fun search(query: FloatArray, modality: String, k: Int): List<SearchHit> {
        val scores = scores(query, modality)
        return Ranking.topIndices(scores, minOf(k, size)).map { SearchHit(it, products[it], scores[it]) }
    }

    companion object {
        const val FORMAT = "huse-index"
        const val FORMAT_VERSION = 1

        fun load(file: File): ProductIndex = ZipFile(file).use { zip ->
            fun entry(name: String): ByteArray {
                val found = zip.getEntry(name) ?: throw FormatException("${file.name}: no $name")
                return zip.getInputStream(found).use { it.readBytes() }
            }
            val header = Json.obj(Json.parse(String(entry("index.json"), Charsets.UTF_8)), "index.json")
            if (header["format"] != FORMAT || (header["format_version"] as? Double)?.toInt() != FORMAT_VERSION) {
                throw FormatException("${file.name}: not a huse-edge index of format version $FORMAT_VERSION")
            }
            val dim = (header["dim"] as Double).toInt()
            val products = String(entry("products.jsonl"), Charsets.UTF_8).split("\n").filter { it.isNotEmpty() }.map { line ->
                val record = Json.obj(Json.parse(line), "products.jsonl")
                @Suppress("UNCHECKED_CAST")
                IndexedProduct(record["id"] as String, record["title"] as String, record["category"] as List<String>)
            }
            val values = HashMap<String, ByteArray>()
            val scales = HashMap<String, FloatArray>()
            @Suppress("UNCHECKED_CAST")
            for (modality in header["modalities"] as List<String>) {
                val rows = NpyArray.read(entry("$modality.i8.npy"), "$modality.i8.npy")
                if (rows.shape.toList() != listOf(products.size, dim)) throw FormatException("$modality.i8.npy has shape ${rows.shape.toList()}")
                values[modality] = rows.int8()
                scales[modality] = NpyArray.read(entry("$modality.scale.npy"), "$modality.scale.npy").float32()
            }
            val bundle = Json.obj(header["bundle"], "index.json bundle")
            ProductIndex(products, dim, values, scales, bundle["model_sha256"] as String,
                header["fusion_image_weight"] as Double)
        }
    }
}
