package com.huseedge.litert

import com.sun.jna.Library
import com.sun.jna.Pointer
import com.sun.jna.ptr.IntByReference
import com.sun.jna.ptr.LongByReference
import com.sun.jna.ptr.PointerByReference

/**
 * The part of the LiteRT C API (the `litert/c` headers, as exported by `libLiteRt.so` in the ai-edge-litert 2.3 wheel)
 * that runs a compiled model's signatures on host-memory tensor buffers. Every call returns a `LiteRtStatus`
 * (0 = ok). `size_t`/`LiteRtParamIndex` are passed as Long (64-bit platforms only).
 */
@Suppress("FunctionName")
interface LiteRtNative : Library {
    fun LiteRtCreateEnvironment(numOptions: Int, options: Pointer?, environment: PointerByReference): Int
    fun LiteRtDestroyEnvironment(environment: Pointer)
    fun LiteRtCreateModelFromFile(environment: Pointer, filename: String, model: PointerByReference): Int
    fun LiteRtDestroyModel(model: Pointer)
    fun LiteRtCreateOptions(options: PointerByReference): Int
    fun LiteRtSetOptionsHardwareAccelerators(options: Pointer, accelerators: Int): Int
    fun LiteRtCreateCompiledModel(environment: Pointer, model: Pointer, options: Pointer, compiled: PointerByReference): Int
    fun LiteRtDestroyCompiledModel(compiled: Pointer)
    fun LiteRtGetNumModelSignatures(model: Pointer, count: LongByReference): Int
    fun LiteRtGetModelSignature(model: Pointer, index: Long, signature: PointerByReference): Int
    fun LiteRtGetSignatureKey(signature: Pointer, key: PointerByReference): Int
    fun LiteRtGetNumSignatureInputs(signature: Pointer, count: LongByReference): Int
    fun LiteRtGetNumSignatureOutputs(signature: Pointer, count: LongByReference): Int
    fun LiteRtGetSignatureInputName(signature: Pointer, index: Long, name: PointerByReference): Int
    fun LiteRtGetSignatureOutputName(signature: Pointer, index: Long, name: PointerByReference): Int
    fun LiteRtGetSignatureInputTensorByIndex(signature: Pointer, index: Long, tensor: PointerByReference): Int
    fun LiteRtGetSignatureOutputTensorByIndex(signature: Pointer, index: Long, tensor: PointerByReference): Int
    /** Fills a 72-byte LiteRtRankedTensorType: element type (int32), rank (low 7 bits of byte 4), dims at 8. */
    fun LiteRtGetRankedTensorType(tensor: Pointer, type: Pointer): Int
    fun LiteRtGetQuantizationTypeId(tensor: Pointer, type: IntByReference): Int
    /** Fills a 16-byte LiteRtQuantizationPerTensor: float scale at 0, int64 zero point at 8. */
    fun LiteRtGetPerTensorQuantization(tensor: Pointer, quantization: Pointer): Int
    fun LiteRtCreateTensorBufferFromHostMemory(type: Pointer, hostMemory: Pointer, size: Long, deallocator: Pointer?,
                                               buffer: PointerByReference): Int
    fun LiteRtDestroyTensorBuffer(buffer: Pointer)
    fun LiteRtRunCompiledModel(compiled: Pointer, signature: Long, numInputs: Long, inputs: Pointer, numOutputs: Long,
                               outputs: Pointer): Int

    companion object {
        const val HW_ACCELERATOR_CPU = 1
        const val QUANTIZATION_PER_TENSOR = 1
        const val RANKED_TENSOR_TYPE_BYTES = 72L
        const val HOST_MEMORY_ALIGNMENT = 64
    }
}
