"""Single place where the training side imports TensorFlow and Keras 2.

TFMOT only understands Keras 2, so every model is built with `tf_keras`; `TF_USE_LEGACY_KERAS` is set by the
package before TensorFlow is imported so that `tf.keras` and `tf_keras` are the same objects.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["tf", "keras"]
