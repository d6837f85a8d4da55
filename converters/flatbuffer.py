"""Lossless re-serialisation of converted TFLite models, through the runtime's own schema object API.

Why: a multi-signature file holds the image tower twice (`embed_image` and `classify_product`). The converter
shares the weight buffers between the two subgraphs, but every subgraph writes its own quantisation tables: for
full-int8 EfficientNet-Lite0 that is 21k per-channel float scales and int64 zero points per copy (0.5 MB), which
alone put the int8 file over 30% of the float one. A flatbuffer table may be referenced from any number of
places, so `write_model` stores each distinct table once; the interpreter reads exactly the same tensors, scales
and weights (tests compare every signature's outputs byte for byte). Weight buffers keep the converter's 16-byte
alignment, and named metadata buffers (`TFLITE_METADATA`, see `converters.metadata`) can be added on the way.

`signature_model` cuts one signature out of a multi-signature model, so that each variant is converted once and
its single-signature files run exactly the subgraph, weights and scales of the multi-signature file.
"""

from __future__ import annotations

import copy

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

FILE_IDENTIFIER = b"TFL3"
BUFFER_ALIGNMENT = 16


def read_model(model: bytes) -> schema.ModelT:
    return schema.ModelT.InitFromPackedBuf(bytearray(model), 0)


def write_model(model: schema.ModelT, metadata: dict[str, bytes] | None = None) -> bytes:
    """`model` as flatbuffer bytes with shared quantisation tables, plus `metadata` as named buffers (an entry of
    the same name is replaced). `model` itself is left as it was."""
    tables: dict[tuple, int] = {}
    buffers = [_AlignedBuffer(b.data, b.offset, b.size) for b in model.buffers or []]
    entries = [m for m in model.metadata or [] if m.name is None or m.name.decode() not in (metadata or {})]
    for name, data in (metadata or {}).items():
        entry = schema.MetadataT()
        entry.name, entry.buffer = name.encode(), len(buffers)
        buffers.append(_AlignedBuffer(np.frombuffer(data, np.uint8)))
        entries.append(entry)
    originals = [(t, t.quantization) for g in model.subgraphs or [] for t in g.tensors or []]
    saved = model.buffers, model.metadata
    try:
        for tensor, quantization in originals:
            if quantization is not None and quantization.details is None:
                tensor.quantization = _SharedTable(quantization, tables)
        model.buffers, model.metadata = buffers, entries
        builder = flatbuffers.Builder(sum(len(b) for b in buffers) + (1 << 20))
        builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
        return bytes(builder.Output())
    finally:
        model.buffers, model.metadata = saved
        for tensor, quantization in originals:
            tensor.quantization = quantization


# Operators whose options name other subgraphs: a subgraph that uses them cannot stand alone.
_CONTROL_FLOW = {schema.BuiltinOperator.IF, schema.BuiltinOperator.WHILE, schema.BuiltinOperator.CALL_ONCE}


def signature_model(model: schema.ModelT, signature: str) -> schema.ModelT:
    """The model of one signature alone: its subgraph, the buffers and operator codes that subgraph uses, and the
    model's metadata. `model` itself is left as it was."""
    definition = next((s for s in model.signatureDefs or [] if s.signatureKey.decode() == signature), None)
    if definition is None:
        raise KeyError(f"the model has no signature {signature!r}")
    source = model.subgraphs[definition.subgraphIndex]
    buffers, buffer_index = [schema.BufferT()], {0: 0}  # buffer 0 stays the empty sentinel

    def keep_buffer(index: int) -> int:
        if index not in buffer_index:
            buffer_index[index] = len(buffers)
            buffers.append(model.buffers[index])
        return buffer_index[index]

    codes, code_index = [], {}
    operators = []
    for operator in source.operators or []:
        code = model.operatorCodes[operator.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) in _CONTROL_FLOW:
            raise ValueError(f"signature {signature!r} calls other subgraphs; it cannot be cut out on its own")
        if operator.opcodeIndex not in code_index:
            code_index[operator.opcodeIndex] = len(codes)
            codes.append(code)
        operators.append(copy.copy(operator))
        operators[-1].opcodeIndex = code_index[operator.opcodeIndex]
    tensors = []
    for tensor in source.tensors or []:
        tensors.append(copy.copy(tensor))
        tensors[-1].buffer = keep_buffer(tensor.buffer)
    metadata = []
    for entry in model.metadata or []:
        metadata.append(copy.copy(entry))
        metadata[-1].buffer = keep_buffer(entry.buffer)
    single = copy.copy(model)
    single.subgraphs = [copy.copy(source)]
    single.subgraphs[0].tensors, single.subgraphs[0].operators = tensors, operators
    single.signatureDefs = [copy.copy(definition)]
    single.signatureDefs[0].subgraphIndex = 0
    single.operatorCodes, single.buffers, single.metadata, single.metadataBuffer = codes, buffers, metadata, None
    return single


class _SharedTable:
    """Packs a quantisation table once per distinct content and hands the same offset to every later tensor."""

    def __init__(self, table: schema.QuantizationParametersT, packed: dict[tuple, int]):
        self.table, self.packed = table, packed

    def key(self) -> tuple:
        q = self.table
        return (np.asarray(q.scale if q.scale is not None else [], np.float32).tobytes(),
                np.asarray(q.zeroPoint if q.zeroPoint is not None else [], np.int64).tobytes(),
                np.asarray(q.min if q.min is not None else [], np.float32).tobytes(),
                np.asarray(q.max if q.max is not None else [], np.float32).tobytes(),
                q.quantizedDimension, q.detailsType)

    def Pack(self, builder: flatbuffers.Builder) -> int:  # noqa: N802 (the object API's name)
        key = self.key()
        if key not in self.packed:
            self.packed[key] = self.table.Pack(builder)
        return self.packed[key]


class _AlignedBuffer:
    """A model buffer whose data starts on a 16-byte boundary, as the TFLite converter writes it (the generated
    `BufferT.Pack` aligns to 1 byte)."""

    def __init__(self, data, offset: int = 0, size: int = 0):
        self.data = None if data is None else np.asarray(data, np.uint8).tobytes()
        self.offset, self.size = offset, size

    def __len__(self) -> int:
        return len(self.data or b"")

    def Pack(self, builder: flatbuffers.Builder) -> int:  # noqa: N802
        data = None
        if self.data:
            builder.StartVector(1, len(self.data), BUFFER_ALIGNMENT)
            builder.head -= len(self.data)
            builder.Bytes[builder.head: builder.head + len(self.data)] = self.data
            builder.vectorNumElems = len(self.data)
            data = builder.EndVector()
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        schema.BufferAddOffset(builder, self.offset)
        schema.BufferAddSize(builder, self.size)
        return schema.BufferEnd(builder)
