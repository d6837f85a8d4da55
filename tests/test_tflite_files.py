"""The exported files themselves: quantisation tables stored once without changing a single output, and TFLite
metadata that standard tooling can read (the metadata flatbuffer is walked here by its schema's slot numbers)."""

import zipfile

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from converters.flatbuffer import read_model
from converters.metadata import METADATA_IDENTIFIER, METADATA_NAME
from converters.tflite import SIGNATURES
from huse_edge.bundle import Bundle

pytestmark = pytest.mark.slow


def _outputs(model: bytes, resolver: OpResolverType) -> dict:
    """Every signature's outputs on random inputs drawn from the signature's name (the same feeds in any file)."""
    interpreter = Interpreter(model_content=model, experimental_op_resolver_type=resolver)
    results = {}
    for name in interpreter.get_signature_list():
        rng = np.random.default_rng(list(name.encode()))
        runner = interpreter.get_signature_runner(name)
        feeds = {}
        for key, details in runner.get_input_details().items():
            shape = [3, *details["shape"][1:]]
            if key == "tokens":
                feeds[key] = rng.integers(0, 40, shape).astype(np.int32)
            elif key == "image" or details["dtype"] != np.float32:  # pixels, or a quantised embedding's codes
                feeds[key] = rng.integers(0, 256, shape).astype(details["dtype"])
            else:  # a float embedding: unit rows
                rows = rng.normal(size=shape)
                feeds[key] = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
        results[name] = runner(**feeds)
    return results


@pytest.mark.parametrize("variant", ["int8", "float"])
def test_shared_quantisation_tables_change_no_output(int8_bundle, variant):
    exported = Bundle.load(int8_bundle[0]).model_file(variant).read_bytes()
    model = read_model(exported)
    builder = flatbuffers.Builder(len(exported))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")  # the object API's own, table-per-tensor packing
    expanded = bytes(builder.Output())
    if variant == "int8":
        assert len(expanded) > len(exported) + 10_000  # the image tower's tables were stored twice
    for resolver in (OpResolverType.AUTO, OpResolverType.BUILTIN_REF):
        ours, plain = _outputs(exported, resolver), _outputs(expanded, resolver)
        assert set(ours) == {"embed_image", "embed_text", "classify", "classify_product"}
        for name in ours:
            for key in ours[name]:
                assert np.array_equal(ours[name][key], plain[name][key]), (variant, resolver, name, key)


@pytest.mark.parametrize("variant", ["int8", "float"])
def test_single_signature_files_run_the_multi_signature_subgraphs(int8_bundle, variant):
    bundle = Bundle.load(int8_bundle[0])
    combined = _outputs(bundle.model_file(variant).read_bytes(), OpResolverType.AUTO)
    for name in SIGNATURES:
        single = _outputs(bundle.model_file(variant, name).read_bytes(), OpResolverType.AUTO)
        assert list(single) == [name]
        for key in combined[name]:
            assert np.array_equal(single[name][key], combined[name][key]), (variant, name, key)
    size = {name: bundle.model_file(variant, name).stat().st_size for name in SIGNATURES}
    assert size["embed_text"] < 0.05 * size["embed_image"]  # only the buffers of its own subgraph


def _table(data: bytes, position: int) -> flatbuffers.table.Table:
    return flatbuffers.table.Table(bytearray(data), position)


def _field(table: flatbuffers.table.Table, slot: int) -> int:
    return table.Offset(4 + 2 * slot)


def _string(table, slot):
    offset = _field(table, slot)
    return table.String(offset + table.Pos).decode() if offset else None


def _tables(table, slot):
    offset = _field(table, slot)
    if not offset:
        return []
    start = table.Vector(offset)
    return [_table(table.Bytes, table.Indirect(start + 4 * i)) for i in range(table.VectorLen(offset))]


def _floats(table, slot):
    offset = _field(table, slot)
    start = table.Vector(offset)
    return [flatbuffers.encode.Get(flatbuffers.packer.float32, table.Bytes, start + 4 * i)
            for i in range(table.VectorLen(offset))]


def test_metadata_describes_every_signature_with_labels_and_normalisation(int8_bundle):
    bundle = Bundle.load(int8_bundle[0])
    path = bundle.model_file("int8")
    data = path.read_bytes()
    model = read_model(data)
    entry = next(m for m in model.metadata if m.name.decode() == METADATA_NAME)
    metadata = bytes(model.buffers[entry.buffer].data)
    assert metadata[4:8] == METADATA_IDENTIFIER
    root = _table(metadata, flatbuffers.encode.Get(flatbuffers.packer.uoffset, metadata, 0))
    assert _string(root, 7) == "1.0.0"  # min_parser_version
    subgraphs = {_string(s, 0): s for s in _tables(root, 3)}
    assert set(subgraphs) == {"embed_image", "embed_text", "classify", "classify_product"}
    assert len(subgraphs) == len(model.subgraphs)
    for index, subgraph in enumerate(model.subgraphs):  # tensor metadata follow the subgraph's own tensor order
        signature = next(s for s in model.signatureDefs if s.subgraphIndex == index)
        names = {t.tensorIndex: t.name.decode() for t in signature.inputs + signature.outputs}
        described = subgraphs[signature.signatureKey.decode()]
        assert [_string(t, 0) for t in _tables(described, 2)] == [names[i] for i in subgraph.inputs]
        assert [_string(t, 0) for t in _tables(described, 3)] == [names[i] for i in subgraph.outputs]
    image = _tables(subgraphs["embed_image"], 2)[0]
    content = _table(image.Bytes, image.Indirect(_field(image, 3) + image.Pos))
    assert content.Get(flatbuffers.number_types.Uint8Flags, _field(content, 0) + content.Pos) == 2  # ImageProperties
    normalisation = _tables(image, 4)[0]
    options = _table(normalisation.Bytes, normalisation.Indirect(_field(normalisation, 1) + normalisation.Pos))
    assert (_floats(options, 0), _floats(options, 1)) == ([0.0], [1.0])  # raw pixels in; normalised inside
    probabilities = _tables(subgraphs["classify"], 3)[0]
    labels_file = _tables(probabilities, 6)[0]
    assert _string(labels_file, 0) == "labels.txt"
    with zipfile.ZipFile(path) as archive:  # the associated files travel inside the model
        assert archive.read("labels.txt") == (bundle.path / "labels.txt").read_bytes()
        assert archive.read("vocab.txt") == (bundle.path / "vocab.txt").read_bytes()
    single = read_model(bundle.model_file("int8", "embed_text").read_bytes())
    assert METADATA_NAME in [m.name.decode() for m in single.metadata]
