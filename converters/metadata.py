"""TFLite model metadata for the exported HUSE models, in the standard convention that tooling reads
(tflite-support's `metadata_schema.fbs`, identifier "M001", minimum parser version 1.0.0): a `TFLITE_METADATA`
buffer describing every input and output of every subgraph, and the associated files zipped onto the end of the
flatbuffer, where the convention's readers (tflite-support's MetadataDisplayer, checked) and plain `unzip` find them.

What it carries, per signature tensor (the bundle's own files stay the contract for the app):
- `image`: RGB image properties with the model's input size, NormalizationOptions mean 0 / std 1 (raw pixels
  0..255 go in; the normalisation is inside the model) and pixel stats 0..255.
- `tokens`: the vocabulary file (`vocab.txt`, line = token id) and the tokenizer rules in the description.
- `embedding`: what the L2-normalised embedding is.
- `probabilities`: the labels file (`labels.txt`, line = class index) as TENSOR_AXIS_LABELS.
The metadata schema is written field by field below (its slot numbers follow the .fbs); tflite-support itself
cannot be installed beside TensorFlow 2.21 (it pins protobuf < 4).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import flatbuffers

from converters.flatbuffer import read_model, write_model

METADATA_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
MIN_PARSER_VERSION = "1.0.0"
LABELS_FILE, VOCAB_FILE = "labels.txt", "vocab.txt"

# Enum and union values of metadata_schema.fbs.
_TENSOR_AXIS_LABELS, _VOCABULARY = 2, 5
_FEATURE_PROPERTIES, _IMAGE_PROPERTIES = 1, 2
_NORMALIZATION_OPTIONS = 1
_RGB = 1


@dataclass(frozen=True)
class ModelDescription:
    """What the metadata says about one exported model."""

    name: str
    description: str
    version: str
    image_height: int
    image_width: int
    embedding_dim: int
    num_classes: int
    max_length: int
    tokenizer_rules: str
    labels: bytes  # labels.txt
    vocab: bytes  # vocab.txt


def with_metadata(model: bytes, about: ModelDescription) -> bytes:
    """`model` with a `TFLITE_METADATA` buffer for each of its subgraphs and the labels and vocabulary zipped
    onto its end, re-serialised once by `flatbuffer.write_model` (each distinct quantisation table stored once);
    tensors, scales and weights are unchanged."""
    parsed = read_model(model)
    subgraphs = []
    for index, subgraph in enumerate(parsed.subgraphs):
        signature = next((s for s in parsed.signatureDefs or [] if s.subgraphIndex == index), None)
        names = {t.tensorIndex: t.name.decode() for t in (signature.inputs or []) + (signature.outputs or [])} \
            if signature is not None else {}
        subgraphs.append((signature.signatureKey.decode() if signature is not None else subgraph.name.decode(),
                          [names.get(i, "") for i in subgraph.inputs], [names.get(i, "") for i in subgraph.outputs]))
    out = io.BytesIO(write_model(parsed, {METADATA_NAME: metadata_buffer(about, subgraphs)}))
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a", zipfile.ZIP_STORED) as archive:
        for name, data in ((LABELS_FILE, about.labels), (VOCAB_FILE, about.vocab)):
            archive.writestr(_reproducible_entry(name), data)
    return out.getvalue()


def _reproducible_entry(name: str) -> zipfile.ZipInfo:
    """A zip entry dated like reproducible builds date theirs (the format's earliest date, readable permissions),
    so that the same model exported twice gives the same bytes."""
    entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    entry.external_attr = 0o644 << 16
    return entry


def metadata_buffer(about: ModelDescription, subgraphs: list[tuple[str, list[str], list[str]]]) -> bytes:
    """The ModelMetadata flatbuffer; `subgraphs` gives each subgraph's name and its input and output signature
    names in the subgraph's tensor order, which is the order the convention lists tensor metadata in."""
    writer = _Writer()
    packed = []
    for name, inputs, outputs in subgraphs:
        tensors_in = [_tensor(writer, about, tensor) for tensor in inputs]
        tensors_out = [_tensor(writer, about, tensor) for tensor in outputs]
        fields = [(0, writer.string(name)), (1, writer.string(_SUBGRAPH_DESCRIPTIONS.get(name, ""))),
                  (2, writer.vector(tensors_in)), (3, writer.vector(tensors_out))]
        packed.append(writer.table(fields))
    root = writer.table([(0, writer.string(about.name)), (1, writer.string(about.description)),
                         (2, writer.string(about.version)), (3, writer.vector(packed)),
                         (4, writer.string("huse-edge")), (7, writer.string(MIN_PARSER_VERSION))])
    writer.builder.Finish(root, file_identifier=METADATA_IDENTIFIER)
    return bytes(writer.builder.Output())


_SUBGRAPH_DESCRIPTIONS = {
    "embed_image": "Image tower: product photo -> universal embedding.",
    "embed_text": "Text tower: title token ids -> universal embedding.",
    "classify": "Shared classification layer: universal embedding (of either tower) -> class probabilities.",
    "classify_product": "Photo and title -> late-fused class probabilities (softmax of the weighted mean of the two "
                        "towers' logits).",
}


def _tensor(writer: "_Writer", about: ModelDescription, name: str) -> int:
    """TensorMetadata for one signature input or output."""
    if name == "image":
        size = writer.table([(0, ("uint32", about.image_width)), (1, ("uint32", about.image_height))])
        properties = writer.table([(0, ("int8", _RGB)), (1, size)])
        normalisation = writer.table([(0, writer.floats([0.0])), (1, writer.floats([1.0]))])
        unit = writer.table([(0, ("uint8", _NORMALIZATION_OPTIONS)), (1, normalisation)])
        stats = writer.table([(0, writer.floats([255.0])), (1, writer.floats([0.0]))])
        return _tensor_table(writer, name, f"Product photo, RGB, {about.image_height}x{about.image_width} "
                             "(height x width), pixel values 0..255; the model normalises them itself.",
                             _IMAGE_PROPERTIES, properties, [unit], stats)
    if name == "tokens":
        vocab = _file(writer, VOCAB_FILE, "Token vocabulary: line i is token id i.", _VOCABULARY)
        return _tensor_table(writer, name, f"Title token ids, int32, length {about.max_length}. "
                             + about.tokenizer_rules, files=[vocab])
    if name == "probabilities":
        labels = _file(writer, LABELS_FILE, "Class category paths: line i is class i.", _TENSOR_AXIS_LABELS)
        stats = writer.table([(0, writer.floats([1.0])), (1, writer.floats([0.0]))])
        return _tensor_table(writer, name, f"Probabilities of the {about.num_classes} classes.", stats=stats,
                             files=[labels])
    if name == "embedding":
        return _tensor_table(writer, name, f"L2-normalised {about.embedding_dim}-d universal embedding; image and "
                             "text embeddings share one space (cosine similarity = dot product).")
    return _tensor_table(writer, name, "")


def _tensor_table(writer: "_Writer", name: str, description: str, properties_type: int = _FEATURE_PROPERTIES,
                  properties: int | None = None, units: list[int] = (), stats: int | None = None,
                  files: list[int] = ()) -> int:
    properties = writer.table([]) if properties is None else properties
    content = writer.table([(0, ("uint8", properties_type)), (1, properties)])
    fields = [(0, writer.string(name)), (1, writer.string(description)), (3, content)]
    if units:
        fields.append((4, writer.vector(list(units))))
    if stats is not None:
        fields.append((5, stats))
    if files:
        fields.append((6, writer.vector(list(files))))
    return writer.table(fields)


def _file(writer: "_Writer", name: str, description: str, file_type: int) -> int:
    return writer.table([(0, writer.string(name)), (1, writer.string(description)), (2, ("int8", file_type))])


class _Writer:
    """The few flatbuffer constructs the metadata needs. A field is (slot, offset of a table/string/vector) or
    (slot, (scalar type, value))."""

    def __init__(self):
        self.builder = flatbuffers.Builder(4096)

    def string(self, text: str) -> int:
        return self.builder.CreateString(text)

    def floats(self, values: list[float]) -> int:
        self.builder.StartVector(4, len(values), 4)
        for value in reversed(values):
            self.builder.PrependFloat32(value)
        return self.builder.EndVector()

    def vector(self, offsets: list[int]) -> int:
        self.builder.StartVector(4, len(offsets), 4)
        for offset in reversed(offsets):
            self.builder.PrependUOffsetTRelative(offset)
        return self.builder.EndVector()

    def table(self, fields: list[tuple[int, object]]) -> int:
        builder = self.builder
        builder.StartObject(1 + max((slot for slot, _ in fields), default=-1))
        for slot, value in fields:
            if isinstance(value, tuple):
                kind, number = value
                {"int8": builder.PrependInt8Slot, "uint8": builder.PrependUint8Slot,
                 "uint32": builder.PrependUint32Slot}[kind](slot, number, 0)
            else:
                builder.PrependUOffsetTRelativeSlot(slot, value, 0)
        return builder.EndObject()
