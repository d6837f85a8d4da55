package com.huseedge.core

/**
 * Decoded RGB pixels to the model's input tensor: steps 2-4 of the specification (version [SPEC_VERSION]) in
 * `huse_edge/transform.py`: a photo at least twice the input size on both axes is first averaged over k x k blocks
 * (exact integer sums divided by the pixel count in float, the last blocks narrower), then resized bilinearly
 * (half-pixel centres, no antialiasing; coordinates in double, interpolation in float, rows first), rounded half to
 * even, clipped, uint8. Decoding (step 1) is the platform's: Android's `Bitmap`, `ImageIO` on the JVM.
 */
class ImagePreprocessor(val height: Int, val width: Int) {

    /** `rgb`: interleaved R, G, B bytes of an `inHeight` x `inWidth` image. Returns height x width x 3 bytes. */
    fun resize(rgb: ByteArray, inHeight: Int, inWidth: Int): ByteArray {
        require(rgb.size == inHeight * inWidth * 3) { "expected ${inHeight * inWidth * 3} RGB bytes, got ${rgb.size}" }
        val factor = minOf(inHeight / height, inWidth / width)
        if (factor < 2) return bilinear(FloatArray(rgb.size) { (rgb[it].toInt() and 0xFF).toFloat() }, inHeight, inWidth)
        val reducedHeight = (inHeight + factor - 1) / factor
        val reducedWidth = (inWidth + factor - 1) / factor
        return bilinear(reduce(rgb, inHeight, inWidth, factor, reducedHeight, reducedWidth), reducedHeight, reducedWidth)
    }

    /** Step 2: the mean of each `factor` x `factor` block, the last row and column of blocks narrower. */
    private fun reduce(rgb: ByteArray, inHeight: Int, inWidth: Int, factor: Int, outHeight: Int, outWidth: Int): FloatArray {
        val sums = IntArray(outHeight * outWidth * 3)
        val blockOfColumn = IntArray(inWidth) { (it / factor) * 3 }
        for (y in 0 until inHeight) {
            val row = (y / factor) * outWidth * 3
            val pixel = y * inWidth * 3
            for (x in 0 until inWidth) {
                val block = row + blockOfColumn[x]
                for (c in 0 until 3) sums[block + c] += rgb[pixel + x * 3 + c].toInt() and 0xFF
            }
        }
        val out = FloatArray(sums.size)
        for (by in 0 until outHeight) {
            val rows = minOf(factor, inHeight - by * factor)
            for (bx in 0 until outWidth) {
                val count = (rows * minOf(factor, inWidth - bx * factor)).toFloat()
                for (c in 0 until 3) {
                    val i = (by * outWidth + bx) * 3 + c
                    out[i] = sums[i].toFloat() / count
                }
            }
        }
        return out
    }

    /** Steps 3-4 on float source values. */
    private fun bilinear(source: FloatArray, inHeight: Int, inWidth: Int): ByteArray {
        val ys = AxisWeights(inHeight, height)
        val xs = AxisWeights(inWidth, width)
        val rows = FloatArray(height * inWidth * 3)
        for (y in 0 until height) {
            val w = ys.weight[y]
            val a = ys.low[y] * inWidth * 3
            val b = ys.high[y] * inWidth * 3
            for (i in 0 until inWidth * 3) rows[y * inWidth * 3 + i] = source[a + i] * (1f - w) + source[b + i] * w
        }
        val out = ByteArray(height * width * 3)
        for (y in 0 until height) {
            for (x in 0 until width) {
                val w = xs.weight[x]
                for (c in 0 until 3) {
                    val left = rows[(y * inWidth + xs.low[x]) * 3 + c]
                    val right = rows[(y * inWidth + xs.high[x]) * 3 + c]
                    val value = Math.rint((left * (1f - w) + right * w).toDouble()).coerceIn(0.0, 255.0)
                    out[(y * width + x) * 3 + c] = value.toInt().toByte()
                }
            }
        }
        return out
    }

    /** Model input pixels (0..255) as floats, for float models; int8 models take the bytes through [Quantization]. */
    fun toFloats(pixels: ByteArray): FloatArray = FloatArray(pixels.size) { (pixels[it].toInt() and 0xFF).toFloat() }

    private class AxisWeights(inSize: Int, outSize: Int) {
        val low = IntArray(outSize)
        val high = IntArray(outSize)
        val weight = FloatArray(outSize)

        init {
            val ratio = inSize.toDouble() / outSize
            for (i in 0 until outSize) {
                val coord = ((i + 0.5) * ratio - 0.5).coerceIn(0.0, (inSize - 1).toDouble())
                low[i] = Math.floor(coord).toInt()
                high[i] = minOf(low[i] + 1, inSize - 1)
                weight[i] = (coord - low[i]).toFloat()
            }
        }
    }

    companion object {
        /** The version of the preprocessing specification this class implements (`preprocessing.json`'s "version"). */
        const val SPEC_VERSION = 2

        /** ARGB ints (Android `Bitmap.getPixels`, `BufferedImage.getRGB`) to interleaved RGB; alpha over white. */
        fun argbToRgb(argb: IntArray): ByteArray {
            val out = ByteArray(argb.size * 3)
            for ((i, p) in argb.withIndex()) {
                val alpha = p ushr 24
                for (c in 0 until 3) {
                    val channel = (p shr (16 - 8 * c)) and 0xFF
                    out[i * 3 + c] = (if (alpha == 255) channel else (channel * alpha + 255 * (255 - alpha) + 127) / 255).toByte()
                }
            }
            return out
        }
    }
}
