package com.huseedge.core

import java.nio.ByteBuffer
import java.nio.ByteOrder

/** A numpy `.npy` array (format v1/v2, C order, little-endian numbers): how the Python side stores tensors. */
class NpyArray(val descr: String, val shape: IntArray, val data: ByteBuffer) {
    val size: Int get() = shape.fold(1) { a, b -> a * b }

    fun int8(): ByteArray = bytesOf("|i1")
    fun uint8(): ByteArray = bytesOf("|u1")

    fun float32(): FloatArray {
        check("<f4")
        return FloatArray(size).also { data.duplicate().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(it) }
    }

    fun int32(): IntArray {
        check("<i4")
        return IntArray(size).also { data.duplicate().order(ByteOrder.LITTLE_ENDIAN).asIntBuffer().get(it) }
    }

    private fun bytesOf(type: String): ByteArray {
        check(type)
        return ByteArray(size).also { data.duplicate().get(it) }
    }

    private fun check(type: String) {
        if (descr != type) throw FormatException("npy array of type $descr, expected $type")
    }

    companion object {
        private val MAGIC = byteArrayOf(0x93.toByte(), 'N'.toByte(), 'U'.toByte(), 'M'.toByte(), 'P'.toByte(), 'Y'.toByte())
        private val DESCR = Regex("'descr':\\s*'([^']+)'")
        private val ORDER = Regex("'fortran_order':\\s*(True|False)")
        private val SHAPE = Regex("'shape':\\s*\\(([^)]*)\\)")

        fun read(bytes: ByteArray, name: String = "array"): NpyArray {
            if (bytes.size < 10 || !bytes.copyOfRange(0, 6).contentEquals(MAGIC)) throw FormatException("$name: not a .npy file")
            val major = bytes[6].toInt()
            val buffer = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN)
            val (headerLength, start) = when (major) {
                1 -> Pair(buffer.getShort(8).toInt() and 0xFFFF, 10)
                2, 3 -> Pair(buffer.getInt(8), 12)
                else -> throw FormatException("$name: unsupported .npy version $major")
            }
            if (headerLength < 0 || start + headerLength > bytes.size) throw FormatException("$name: truncated header")
            val header = String(bytes, start, headerLength, Charsets.ISO_8859_1)
            val descr = DESCR.find(header)?.groupValues?.get(1) ?: throw FormatException("$name: no dtype in header")
            if (ORDER.find(header)?.groupValues?.get(1) == "True") throw FormatException("$name: Fortran order is not supported")
            val dims = SHAPE.find(header)?.groupValues?.get(1) ?: throw FormatException("$name: no shape in header")
            val shape = dims.split(',').map { it.trim() }.filter { it.isNotEmpty() }.map { it.toInt() }.toIntArray()
            val data = ByteBuffer.wrap(bytes, start + headerLength, bytes.size - start - headerLength).slice()
            val array = NpyArray(descr, shape, data)
            val itemSize = descr.substring(2).toIntOrNull() ?: throw FormatException("$name: unsupported dtype $descr")
            if (data.remaining() < array.size * itemSize) throw FormatException("$name: truncated data")
            return array
        }
    }
}
