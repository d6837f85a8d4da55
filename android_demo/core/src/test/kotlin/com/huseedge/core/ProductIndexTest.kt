package com.huseedge.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

class ProductIndexTest {
    @Test
    fun int8SearchMatchesPython() {
        val index = ProductIndex.load(Golden.indexFile())
        val queries = Golden.npy("search_queries")
        val values = queries.float32()
        val expected = Json.obj(Json.parse(java.io.File(Golden.dir(), "search_expected.json").readText()), "search_expected")
        @Suppress("UNCHECKED_CAST") val rows = expected["rows"] as List<List<Double>>
        @Suppress("UNCHECKED_CAST") val scores = expected["scores"] as List<List<Double>>
        for (q in 0 until queries.shape[0]) {
            val query = Golden.row(values, queries.shape, q)
            val modality = expected["modality"] as String
            val all = index.scores(query, modality)
            val hits = index.search(query, modality, rows[q].size)
            for ((rank, hit) in hits.withIndex()) {
                val score = scores[q][rank]
                // Same score sequence, and Python's product scores the same here: the lists can differ only in
                // the order of products whose scores tie to within float summation order.
                assertEquals("query $q rank $rank score", score, hit.score.toDouble(), 1e-4)
                assertEquals("query $q rank $rank: python's row ${rows[q][rank].toInt()}", score,
                    all[rows[q][rank].toInt()].toDouble(), 1e-4)
            }
        }
    }

    @Test
    fun indexBelongsToTheBundleModel() {
        val index = ProductIndex.load(Golden.indexFile())
        val bundle = HuseBundle.load(Golden.bundleDir())
        assertEquals(HuseBundle.sha256(bundle.modelFile("int8")), index.modelSha256)
        assertEquals(bundle.embeddingDim, index.dim)
        assertTrue(index.modalities.containsAll(listOf("image", "text", "fused")))
    }
}
