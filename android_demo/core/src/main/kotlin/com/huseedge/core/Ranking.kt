package com.huseedge.core

/** One class of a classification result, with its full hierarchy path. */
data class ClassScore(val classId: Int, val path: List<String>, val score: Float)

object Ranking {
    /** Indices of the k largest values, best first; equal values keep index order (numpy's stable argsort). */
    fun topIndices(values: FloatArray, k: Int): IntArray =
        values.indices.sortedWith(Comparator { a, b -> if (values[a] != values[b]) values[b].compareTo(values[a]) else a.compareTo(b) })
            .take(k).toIntArray()

    fun topClasses(probabilities: FloatArray, labels: LabelHierarchy, k: Int): List<ClassScore> =
        topIndices(probabilities, k).map { ClassScore(it, labels.paths[it], probabilities[it]) }

    fun normalise(vector: FloatArray): FloatArray {
        var sum = 0f
        for (v in vector) sum += v * v
        val norm = maxOf(Math.sqrt(sum.toDouble()).toFloat(), 1e-12f)
        return FloatArray(vector.size) { vector[it] / norm }
    }

    /** The fused embedding of a product or query: normalise(w * image + (1 - w) * text), w from the bundle. */
    fun fuse(image: FloatArray, text: FloatArray, imageWeight: Double): FloatArray {
        val wi = imageWeight.toFloat()
        val wt = (1.0 - imageWeight).toFloat()
        return normalise(FloatArray(image.size) { wi * image[it] + wt * text[it] })
    }
}
