package com.huseedge.core

/** A tensor's affine quantisation (real = scale * (q - zeroPoint)); scale 0 means not quantised. */
data class QuantParams(val scale: Float, val zeroPoint: Long) {
    val quantised: Boolean get() = scale != 0f

    /** Floats to int8 values as `huse_edge.runtime` does: rint(x / scale + zero point), clipped. */
    fun toInt8(values: FloatArray): ByteArray =
        ByteArray(values.size) { Math.rint((values[it] / scale + zeroPoint).toDouble()).coerceIn(-128.0, 127.0).toInt().toByte() }

    /** Floats to uint8 values (image inputs of full-int8 models). */
    fun toUInt8(values: FloatArray): ByteArray =
        ByteArray(values.size) { Math.rint((values[it] / scale + zeroPoint).toDouble()).coerceIn(0.0, 255.0).toInt().toByte() }

    fun fromInt8(values: ByteArray): FloatArray = FloatArray(values.size) { (values[it] - zeroPoint).toFloat() * scale }

    fun fromUInt8(values: ByteArray): FloatArray =
        FloatArray(values.size) { ((values[it].toInt() and 0xFF) - zeroPoint).toFloat() * scale }
}

/** One signature input or output as the manifest describes it (`variants.<v>.io`): dtype, shape, quantisation. */
data class TensorSpec(val dtype: String, val shape: List<Int>, val quant: QuantParams) {
    /** Real values to the tensor's bytes (int8/uint8 quantised; float32/int32 as little-endian words). */
    fun encode(values: FloatArray): ByteArray = when (dtype) {
        "int8" -> quant.toInt8(values)
        "uint8" -> quant.toUInt8(values)
        "float32" -> java.nio.ByteBuffer.allocate(4 * values.size).order(java.nio.ByteOrder.LITTLE_ENDIAN)
            .also { b -> values.forEach { b.putFloat(it) } }.array()
        else -> throw FormatException("cannot encode real values as $dtype")
    }

    /** The tensor's bytes back to real values. */
    fun decode(bytes: ByteArray): FloatArray = when (dtype) {
        "int8" -> quant.fromInt8(bytes)
        "uint8" -> quant.fromUInt8(bytes)
        "float32" -> FloatArray(bytes.size / 4).also {
            java.nio.ByteBuffer.wrap(bytes).order(java.nio.ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(it)
        }
        else -> throw FormatException("cannot decode $dtype as real values")
    }
}
