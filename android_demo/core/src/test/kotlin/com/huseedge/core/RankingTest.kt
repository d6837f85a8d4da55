package com.huseedge.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

class RankingTest {
    @Test
    fun topIndicesAreStableOnTies() {
        assertArrayEquals(intArrayOf(1, 3, 0), Ranking.topIndices(floatArrayOf(0.1f, 0.5f, 0.0f, 0.5f), 3))
    }

    @Test
    fun topClassAndFusionMatchPython() {
        val bundle = HuseBundle.load(Golden.bundleDir())
        val probabilities = Golden.npy("fused_probabilities")
        val values = probabilities.float32()
        val image = Golden.npy("image_embeddings")
        val imageValues = image.float32()
        val text = Golden.npy("text_embeddings").float32()
        val fused = Golden.npy("fused_embeddings").float32()
        for (i in 0 until probabilities.shape[0]) {
            val row = Golden.row(values, probabilities.shape, i)
            val argmax = row.indices.maxBy { row[it] }!!  // first maximum, like numpy's argmax
            val top = Ranking.topClasses(row, bundle.labels, 5)
            assertEquals("product $i", argmax, top[0].classId)
            assertEquals(bundle.labels.paths[argmax], top[0].path)
            assertEquals("product $i", minOf(5, row.count { it > 0f }), top.size)
            assertTrue("product $i", top.zipWithNext().all { (a, b) -> a.score >= b.score && b.score > 0f })
            val mine = Ranking.fuse(Golden.row(imageValues, image.shape, i), Golden.row(text, image.shape, i),
                bundle.fusionImageWeight)
            assertArrayEquals("fused embedding of product $i", Golden.row(fused, image.shape, i), mine, 1e-6f)
        }
    }
}
