package com.huseedge.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Test

class ImagePreprocessorTest {
    @Test
    fun upscalingTwoPixelsInterpolatesWithHalfPixelCentres() {
        // 1x2 grey image [0, 100] -> 1x4: source x = (i + 0.5) / 2 - 0.5 -> clamp(-0.25, 0.25, 0.75, 1.25)
        val rgb = byteArrayOf(0, 0, 0, 100, 100, 100)
        val out = ImagePreprocessor(1, 4).resize(rgb, 1, 2)
        assertEquals(listOf(0, 25, 75, 100), (0 until 4).map { out[it * 3].toInt() and 0xFF })
    }

    @Test
    fun roundsHalfToEven() {
        // 1x2 [1, 2] -> 1x1 samples x = 0.5: 1.5 rounds to 2; [2, 3] -> 2.5 rounds to 2
        assertEquals(2, ImagePreprocessor(1, 1).resize(byteArrayOf(1, 1, 1, 2, 2, 2), 1, 2)[0].toInt())
        assertEquals(2, ImagePreprocessor(1, 1).resize(byteArrayOf(2, 2, 2, 3, 3, 3), 1, 2)[0].toInt())
    }

    @Test
    fun photosTwiceTheInputSizeAreAveragedOverBlocksFirst() {
        // 2x5 grey photo, both rows [1, 2, 5, 6, 9] -> 1x2: k = min(2 / 1, 5 / 2) = 2; blocks of columns {0, 1},
        // {2, 3} and the narrower {4}: means 1.5, 5.5, 9; then 1x3 -> 1x2 samples x = 0.25 and 1.75:
        // 1.5 * 0.75 + 5.5 * 0.25 = 2.5 -> 2 (half to even), 5.5 * 0.25 + 9 * 0.75 = 8.125 -> 8
        val grey = intArrayOf(1, 2, 5, 6, 9, 1, 2, 5, 6, 9)
        val rgb = ByteArray(30) { grey[it / 3].toByte() }
        val out = ImagePreprocessor(1, 2).resize(rgb, 2, 5)
        assertEquals(listOf(2, 8), (0 until 2).map { out[it * 3].toInt() and 0xFF })
    }

    @Test
    fun opaqueArgbKeepsChannelsAndTransparentBecomesWhite() {
        assertArrayEquals(byteArrayOf(0x12, 0x34, 0x56), ImagePreprocessor.argbToRgb(intArrayOf(0xFF123456.toInt())))
        assertArrayEquals(byteArrayOf(-1, -1, -1), ImagePreprocessor.argbToRgb(intArrayOf(0x00123456)))
    }

    @Test
    fun matchesPythonOnEveryGoldenPhoto() {
        val bundle = HuseBundle.load(Golden.bundleDir())
        val inputs = Golden.npy("inputs")
        val expected = inputs.uint8()
        val size = bundle.preprocessor.height * bundle.preprocessor.width * 3
        for ((i, image) in Golden.rawImages().withIndex()) {
            val out = bundle.preprocessor.resize(image.third, image.first, image.second)
            assertArrayEquals("photo of product $i", expected.copyOfRange(i * size, (i + 1) * size), out)
        }
    }

    @Test
    fun matchesPythonOnLargePhotos() {
        val bundle = HuseBundle.load(Golden.bundleDir())
        val expected = Golden.npy("resize_inputs").uint8()
        val size = bundle.preprocessor.height * bundle.preprocessor.width * 3
        for ((i, image) in Golden.rawImages("resize_raw", "resize_shapes").withIndex()) {
            val out = bundle.preprocessor.resize(image.third, image.first, image.second)
            assertArrayEquals("${image.first}x${image.second} photo", expected.copyOfRange(i * size, (i + 1) * size), out)
        }
    }
}
