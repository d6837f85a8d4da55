"""The error types a user can act on; the CLI prints them as one line instead of a traceback."""

from huse_edge.ann import AnnUnavailable
from huse_edge.atomic import ArtifactPathError
from huse_edge.bundle import BundleError
from huse_edge.index import IndexFileError
from huse_edge.catalogue import CatalogueError
from huse_edge.hierarchy import ClassEmbeddingsError
from huse_edge.reference import ReferenceFileError
from huse_edge.tokenizer import TokenizerError
from huse_edge.torch_checkpoint import CheckpointError
from huse_edge.runtime import BackendUnavailable, InputError
from huse_edge.transform import ImageError


class BackboneError(ValueError):
    """A backbone option that does not fit the chosen backbone (its name, or a block count it does not have)."""


class ModelDirError(ValueError):
    """A model directory that is incomplete or inconsistent."""


class InterruptedRunError(ValueError):
    """An interrupted training run in the output directory that the given settings cannot resume."""


class ClusterConfigError(ValueError):
    """A distributed run without a usable cluster description (TF_CONFIG)."""


USER_ERRORS: tuple[type[Exception], ...] = (BackboneError, CatalogueError, TokenizerError, CheckpointError,
                                            ImageError, BundleError, ModelDirError, BackendUnavailable, InputError,
                                            IndexFileError, AnnUnavailable, ClusterConfigError, ReferenceFileError,
                                            ArtifactPathError, InterruptedRunError, ClassEmbeddingsError,
                                            FileNotFoundError)
