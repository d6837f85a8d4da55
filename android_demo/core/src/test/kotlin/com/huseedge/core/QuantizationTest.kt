package com.huseedge.core

import org.junit.Assert.assertArrayEquals
import org.junit.Test

class QuantizationTest {
    @Test
    fun quantisesWithRoundHalfToEvenAndClips() {
        val params = QuantParams(0.5f, -3)
        // x / 0.5 - 3: 0.25 -> -2.5 -> -2 (even); 0.75 -> -1.5 -> -2; 100 -> 197 -> 127; -100 -> -203 -> -128
        assertArrayEquals(byteArrayOf(-2, -2, 127, -128), params.toInt8(floatArrayOf(0.25f, 0.75f, 100f, -100f)))
        assertArrayEquals(floatArrayOf(1.5f, -62.5f), params.fromInt8(byteArrayOf(0, -128)), 0f)
    }

    @Test
    fun uint8RoundTripsPixels() {
        val params = QuantParams(1f, 0)
        val pixels = floatArrayOf(0f, 17f, 255f)
        assertArrayEquals(pixels, params.fromUInt8(params.toUInt8(pixels)), 0f)
    }
}
