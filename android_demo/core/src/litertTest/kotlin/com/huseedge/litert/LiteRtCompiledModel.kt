package com.huseedge.litert

import com.huseedge.core.QuantParams
import com.sun.jna.Memory
import com.sun.jna.Native
import com.sun.jna.Pointer
import com.sun.jna.ptr.IntByReference
import com.sun.jna.ptr.LongByReference
import com.sun.jna.ptr.PointerByReference
import java.io.Closeable

/** A signature input or output: its name, element type (LiteRtElementType), batch-1 shape and quantisation. */
class TensorInfo(val name: String, val elementType: Int, val shape: IntArray, val quant: QuantParams, internal val type: Memory) {
    val elements: Int get() = shape.fold(1) { a, b -> a * b }
    val bytes: Long get() = elements.toLong() * ELEMENT_BYTES.getValue(elementType)

    companion object {
        const val FLOAT32 = 1
        const val INT32 = 2
        const val UINT8 = 3
        const val INT8 = 9
        val ELEMENT_BYTES = mapOf(FLOAT32 to 4, INT32 to 4, UINT8 to 1, INT8 to 1)
    }
}

/**
 * One `.tflite` file compiled by LiteRT's CompiledModel (CPU) through the C API: the same library the app's LiteRT
 * runtime is built from, fed with raw tensor bytes. Batch 1 (dynamic batch dimensions are set to 1).
 */
class LiteRtCompiledModel(libraryPath: String, modelPath: String) : Closeable {
    private val lib: LiteRtNative = Native.load(libraryPath, LiteRtNative::class.java)
    private val environment = create { lib.LiteRtCreateEnvironment(0, null, it) }
    private val model = create { lib.LiteRtCreateModelFromFile(environment, modelPath, it) }
    private val options = create { lib.LiteRtCreateOptions(it) }
    private val compiled: Pointer
    val signatures: Map<String, Int>
    private val handles = HashMap<String, Pointer>()

    init {
        check(lib.LiteRtSetOptionsHardwareAccelerators(options, LiteRtNative.HW_ACCELERATOR_CPU), "set CPU accelerator")
        compiled = create { lib.LiteRtCreateCompiledModel(environment, model, options, it) }
        val count = LongByReference().also { check(lib.LiteRtGetNumModelSignatures(model, it), "count signatures") }.value
        signatures = (0 until count).associate { i ->
            val signature = create { lib.LiteRtGetModelSignature(model, i, it) }
            val key = PointerByReference().also { check(lib.LiteRtGetSignatureKey(signature, it), "signature key") }.value.getString(0)
            handles[key] = signature
            key to i.toInt()
        }
    }

    fun inputs(signature: String): List<TensorInfo> = tensors(signature, input = true)
    fun outputs(signature: String): List<TensorInfo> = tensors(signature, input = false)

    /** Runs a signature on raw input bytes (by input name); returns raw output bytes by output name. */
    fun run(signature: String, inputs: Map<String, ByteArray>): Map<String, ByteArray> {
        val inInfo = inputs(signature)
        val outInfo = outputs(signature)
        val memories = ArrayList<Memory>()
        fun buffer(info: TensorInfo, data: ByteArray?): Pointer {
            val memory = Memory(info.bytes + LiteRtNative.HOST_MEMORY_ALIGNMENT).also { memories.add(it) }
            val aligned = memory.align(LiteRtNative.HOST_MEMORY_ALIGNMENT)
            if (data != null) {
                require(data.size.toLong() == info.bytes) { "${info.name}: ${data.size} bytes given, ${info.bytes} expected" }
                aligned.write(0, data, 0, data.size)
            }
            return create { lib.LiteRtCreateTensorBufferFromHostMemory(info.type, aligned, info.bytes, null, it) }
        }
        val inBuffers = inInfo.map { buffer(it, inputs[it.name] ?: throw IllegalArgumentException("missing input ${it.name}")) }
        val outBuffers = outInfo.map { buffer(it, null) }
        try {
            check(lib.LiteRtRunCompiledModel(compiled, signatures.getValue(signature).toLong(), inBuffers.size.toLong(),
                pointerArray(inBuffers), outBuffers.size.toLong(), pointerArray(outBuffers)), "run $signature")
            return outInfo.withIndex().associate { (i, info) ->
                info.name to memories[inBuffers.size + i].align(LiteRtNative.HOST_MEMORY_ALIGNMENT).getByteArray(0, info.bytes.toInt())
            }
        } finally {
            (inBuffers + outBuffers).forEach { lib.LiteRtDestroyTensorBuffer(it) }
        }
    }

    private fun tensors(signature: String, input: Boolean): List<TensorInfo> {
        val handle = handles[signature] ?: throw IllegalArgumentException("no signature '$signature' (the model has ${signatures.keys})")
        val count = LongByReference().also {
            check(if (input) lib.LiteRtGetNumSignatureInputs(handle, it) else lib.LiteRtGetNumSignatureOutputs(handle, it), "count tensors")
        }.value
        return (0 until count).map { i ->
            val name = PointerByReference().also {
                check(if (input) lib.LiteRtGetSignatureInputName(handle, i, it) else lib.LiteRtGetSignatureOutputName(handle, i, it), "tensor name")
            }.value.getString(0)
            val tensor = create { if (input) lib.LiteRtGetSignatureInputTensorByIndex(handle, i, it) else lib.LiteRtGetSignatureOutputTensorByIndex(handle, i, it) }
            val type = Memory(LiteRtNative.RANKED_TENSOR_TYPE_BYTES).also { it.clear() }
            check(lib.LiteRtGetRankedTensorType(tensor, type), "tensor type of $name")
            val rank = type.getByte(4).toInt() and 0x7F
            val shape = IntArray(rank) { d -> maxOf(type.getInt(8L + 4 * d), 1) }
            shape.forEachIndexed { d, size -> type.setInt(8L + 4 * d, size) }  // batch 1
            val quantisation = IntByReference().also { check(lib.LiteRtGetQuantizationTypeId(tensor, it), "quantisation of $name") }.value
            val quant = if (quantisation == LiteRtNative.QUANTIZATION_PER_TENSOR) {
                val q = Memory(16).also { check(lib.LiteRtGetPerTensorQuantization(tensor, it), "scale of $name") }
                QuantParams(q.getFloat(0), q.getLong(8))
            } else QuantParams(0f, 0)
            TensorInfo(name, type.getInt(0), shape, quant, type)
        }
    }

    private fun pointerArray(pointers: List<Pointer>): Pointer =
        Memory(8L * pointers.size).also { memory -> pointers.forEachIndexed { i, p -> memory.setPointer(8L * i, p) } }

    private fun create(call: (PointerByReference) -> Int): Pointer {
        val out = PointerByReference()
        check(call(out), "LiteRT call")
        return out.value
    }

    private fun check(status: Int, what: String) {
        if (status != 0) throw IllegalStateException("LiteRT C API: $what failed with status $status")
    }

    override fun close() {
        lib.LiteRtDestroyCompiledModel(compiled)
        lib.LiteRtDestroyModel(model)
        lib.LiteRtDestroyEnvironment(environment)
    }
}
