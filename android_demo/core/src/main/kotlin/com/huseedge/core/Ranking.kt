package com.huseedge.core

/** One class of a classification result, with its full hierarchy path. */
data class ClassScore(val classId: Int, val path: List<String>, val score: Float)

object Ranking {
    /** Indices of the k largest values, best first; equal values keep index order (numpy's stable argsort). */
    fun topIndices(values: FloatArray, k: Int): IntArray =
        values.indices.sortedWith(Comparator { a, b -> if (values[a] != values[b]) values[b].compareTo(values[a]) else a.compareTo(b) })
            .take(k).toIntArray()

    /** The (at most) k most probable classes. Classes of probability 0 are left out: an int8 softmax resolves
     *  probabilities to 1/256, so most classes of a confident prediction read exactly 0, and ranking those ties
     *  would list classes in label order as if they were guesses (the Python runtime's `top_k` does the same). */
    fun topClasses(probabilities: FloatArray, labels: LabelHierarchy, k: Int): List<ClassScore> =
        topIndices(probabilities, k).filter { probabilities[it] > 0f }
            .map { ClassScore(it, labels.paths[it], probabilities[it]) }

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
