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
            val hits = index.search(Golden.row(values, queries.shape, q), expected["modality"] as String, rows[q].size)
            for ((rank, hit) in hits.withIndex()) {
                val score = scores[q][rank]
                assertEquals("query $q rank $rank score", score, hit.score.toDouble(), 1e-4)
                // the same product, unless Python's summation order breaks a tie at this rank
                val tied = scores[q].count { Math.abs(it - score) < 1e-4 } > 1
                assertTrue("query $q rank $rank: row ${hit.row}, python ${rows[q][rank].toInt()}", tied || hit.row == rows[q][rank].toInt())
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
