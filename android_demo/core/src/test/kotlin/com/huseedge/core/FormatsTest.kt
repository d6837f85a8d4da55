package com.huseedge.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Test
import java.nio.ByteBuffer
import java.nio.ByteOrder

class FormatsTest {
    @Test
    fun parsesJson() {
        val value = Json.obj(Json.parse("""{"a": [1, -2.5e1, "x\"\u00e9\n"], "b": {"c": null, "d": true}}"""), "test")
        assertEquals(listOf(1.0, -25.0, "x\"\u00e9\n"), value["a"])
        assertEquals(mapOf("c" to null, "d" to true), value["b"])
    }

    @Test(expected = FormatException::class)
    fun refusesTruncatedJson() {
        Json.parse("""{"a": [1, 2""")
    }

    @Test
    fun readsNpyVersion1() {
        val header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }".padEnd(118) + "\n"
        val buffer = ByteBuffer.allocate(10 + header.length + 16).order(ByteOrder.LITTLE_ENDIAN)
        buffer.put(byteArrayOf(0x93.toByte(), 'N'.toByte(), 'U'.toByte(), 'M'.toByte(), 'P'.toByte(), 'Y'.toByte(), 1, 0))
        buffer.putShort(header.length.toShort()).put(header.toByteArray())
        floatArrayOf(1f, 2f, 3f, 4f).forEach { buffer.putFloat(it) }
        val array = NpyArray.read(buffer.array())
        assertArrayEquals(intArrayOf(2, 2), array.shape)
        assertArrayEquals(floatArrayOf(1f, 2f, 3f, 4f), array.float32(), 0f)
    }

    @Test(expected = FormatException::class)
    fun refusesTruncatedNpy() {
        NpyArray.read(byteArrayOf(0x93.toByte(), 'N'.toByte(), 'U'.toByte(), 'M'.toByte(), 'P'.toByte(), 'Y'.toByte(), 1, 0, 10, 0))
    }
}
