package com.huseedge.core

/**
 * Decoded RGB pixels to the model's input tensor: steps 2-3 of the specification in `huse_edge/transform.py`
 * (bilinear, half-pixel centres, no antialiasing; coordinates in double, interpolation in float, rows first;
 * round half to even, clip, uint8). Decoding (step 1) is the platform's: Android's `Bitmap`, `ImageIO` on the JVM.
 */
class ImagePreprocessor(val height: Int, val width: Int) {

    /** `rgb`: interleaved R, G, B bytes of an `inHeight` x `inWidth` image. Returns height x width x 3 bytes. */
    fun resize(rgb: ByteArray, inHeight: Int, inWidth: Int): ByteArray {
        require(rgb.size == inHeight * inWidth * 3) { "expected ${inHeight * inWidth * 3} RGB bytes, got ${rgb.size}" }
        val ys = AxisWeights(inHeight, height)
        val xs = AxisWeights(inWidth, width)
        val rows = FloatArray(height * inWidth * 3)
        for (y in 0 until height) {
            val w = ys.weight[y]
            val a = ys.low[y] * inWidth * 3
            val b = ys.high[y] * inWidth * 3
            for (i in 0 until inWidth * 3) {
                val top = (rgb[a + i].toInt() and 0xFF).toFloat()
                val bottom = (rgb[b + i].toInt() and 0xFF).toFloat()
                rows[y * inWidth * 3 + i] = top * (1f - w) + bottom * w
            }
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
