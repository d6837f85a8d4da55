"""The edge bundle: the only contract between the Python side and the apps.

A directory holding
- one `.tflite` per variant (`float`, `fp16`, `dynamic`, `ptq_int8`, `int8`) with the signatures `embed_image`
  (image -> embedding), `embed_text` (tokens -> embedding), `classify` (embedding -> class probabilities) and
  `classify_product` (image + tokens -> fused probabilities), plus each signature as its own file under
  `<variant>/` for runtimes without signature support;
- `labels.txt` (class id = line number, full hierarchy path), `vocab.txt` + `tokenizer.json` (see `tokenizer`),
  `preprocessing.json` (input size, and the version and text of the resize/colour spec of `transform`);
- `manifest.json`: format version, the sha256 of every other file, versions used, and the parity measured at
  export time.
Loading checks the format version and every hash before anything is run. Nothing in a bundle is executed
except TFLite graphs by a TFLite interpreter.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from huse_edge.hierarchy import LabelHierarchy
from huse_edge.tokenizer import Tokenizer, TokenizerError
from huse_edge.transform import SPEC_VERSION as PREPROCESSING_VERSION

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SIGNATURES = ("embed_image", "embed_text", "classify", "classify_product")
VARIANTS = ("float", "fp16", "dynamic", "ptq_int8", "int8")


class BundleError(ValueError):
    """A bundle that is incomplete, tampered with, or from an incompatible version."""


def _check_manifest(path: Path, manifest: dict) -> None:
    """The fields loading and running rely on have the documented types, and every model file is hash-covered."""
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) and len(v) == 64
                                              for k, v in files.items()):
        raise BundleError(f"{path}: manifest 'files' must map file names to sha256 hex digests")
    for name in files:
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BundleError(f"{path}: manifest names a file outside the bundle: {name}")
    variants = manifest.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise BundleError(f"{path}: manifest lists no model variants")
    for variant, entry in variants.items():
        signatures = entry.get("signatures") if isinstance(entry, dict) else None
        if not isinstance(signatures, dict) or not isinstance(entry.get("model"), str):
            raise BundleError(f"{path}: manifest entry of variant {variant!r} is malformed")
        for model in (entry["model"], *signatures.values()):
            if model not in files:
                raise BundleError(f"{path}: {variant} model file {model!r} is not covered by a sha256")
    dim, weight = manifest.get("embedding_dim"), manifest.get("fusion_image_weight", 0.5)
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise BundleError(f"{path}: manifest embedding_dim must be a positive integer")
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not 0 <= weight <= 1:
        raise BundleError(f"{path}: manifest fusion_image_weight must be a number in [0, 1]")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Bundle:
    path: Path
    manifest: dict
    hierarchy: LabelHierarchy
    tokenizer: Tokenizer
    image_height: int
    image_width: int

    @property
    def fusion_image_weight(self) -> float:
        """Late-fusion weight of the image probabilities (and of the image embedding in a fused embedding)."""
        return float(self.manifest.get("fusion_image_weight", 0.5))

    @property
    def variants(self) -> list[str]:
        return list(self.manifest["variants"])

    def model_file(self, variant: str, signature: str | None = None) -> Path:
        """The multi-signature model of a variant, or one signature's own file."""
        if variant not in self.manifest["variants"]:
            raise BundleError(f"{self.path}: no {variant!r} model; the bundle has {', '.join(self.variants)}")
        entry = self.manifest["variants"][variant]
        return self.path / (entry["signatures"][signature] if signature else entry["model"])

    @classmethod
    def load(cls, path: str | Path, verify: bool = True) -> "Bundle":
        path = Path(path)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise BundleError(f"{path}: not a bundle (no {MANIFEST})")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise BundleError(f"{manifest_path}: unreadable manifest ({error})") from None
        if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
            found = manifest.get("format_version") if isinstance(manifest, dict) else None
            raise BundleError(f"{path}: bundle format version {found!r}; this huse-edge reads {FORMAT_VERSION}")
        _check_manifest(path, manifest)
        files = manifest["files"]
        if verify:
            for name, expected in files.items():
                file = path / name
                if not file.is_file():
                    raise BundleError(f"{path}: {name} is listed in the manifest but missing")
                if sha256_of(file) != expected:
                    raise BundleError(f"{path}: {name} does not match its sha256 in the manifest "
                                      "(corrupted or modified)")
        try:
            hierarchy = LabelHierarchy.load(path / "labels.txt")
            tokenizer = Tokenizer.load(path)
            preprocessing = json.loads((path / "preprocessing.json").read_text(encoding="utf-8"))
            height, width = int(preprocessing["height"]), int(preprocessing["width"])
            # bundles exported before the spec had a version follow version 1, which version 2 extends
            preprocessing_version = int(preprocessing.get("version", 1))
        except (OSError, ValueError, KeyError, TokenizerError) as error:
            raise BundleError(f"{path}: incomplete bundle ({error})") from None
        if preprocessing_version > PREPROCESSING_VERSION:
            raise BundleError(f"{path}: preprocessing spec version {preprocessing_version}; this huse-edge implements "
                              f"{PREPROCESSING_VERSION}")
        if manifest.get("num_classes") != len(hierarchy) or manifest.get("vocab_size") != len(tokenizer):
            raise BundleError(f"{path}: labels.txt/vocab.txt do not match the manifest "
                              f"({len(hierarchy)} classes, {len(tokenizer)} tokens)")
        return cls(path, manifest, hierarchy, tokenizer, height, width)
