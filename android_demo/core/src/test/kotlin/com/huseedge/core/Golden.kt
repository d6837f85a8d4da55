package com.huseedge.core

import org.junit.Assume
import java.io.File

/**
 * The golden vectors written by `huse-edge android golden` (`-Dhuse.golden=DIR`), the bundle they came from
 * (`-Dhuse.bundle=DIR`) and optionally its product index (`-Dhuse.index=FILE`).
 */
object Golden {
    fun dir(): File = required("huse.golden")
    fun bundleDir(): File = required("huse.bundle")
    fun indexFile(): File = required("huse.index")

    private fun required(property: String): File {
        val value = System.getProperty(property)
        Assume.assumeTrue("-D$property not given", value != null)
        return File(value!!)
    }

    fun npy(name: String): NpyArray = NpyArray.read(File(dir(), "$name.npy").readBytes(), "$name.npy")

    fun lines(name: String): List<Map<String, Any?>> =
        File(dir(), name).readLines(Charsets.UTF_8).filter { it.isNotEmpty() }.map { Json.obj(Json.parse(it), name) }

    /** Row i of an (N, ...) float32 array. */
    fun row(values: FloatArray, shape: IntArray, i: Int): FloatArray {
        val width = values.size / shape[0]
        return values.copyOfRange(i * width, (i + 1) * width)
    }

    /**
     * Photos as (height, width, RGB bytes): each product's photo as the Python side decoded it (`raw`), or the
     * synthetic large photos of the resize cases (`resize_raw`).
     */
    fun rawImages(pixelsName: String = "raw_pixels", shapesName: String = "raw_shapes"): List<Triple<Int, Int, ByteArray>> {
        val pixels = npy(pixelsName).uint8()
        val shapes = npy(shapesName).int32()
        var offset = 0
        return (0 until shapes.size / 2).map {
            val (h, w) = Pair(shapes[2 * it], shapes[2 * it + 1])
            val image = pixels.copyOfRange(offset, offset + h * w * 3)
            offset += h * w * 3
            Triple(h, w, image)
        }
    }
}
