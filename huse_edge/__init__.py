"""huse-edge: train HUSE multimodal product embeddings, quantise them, ship them to the edge.

Importing this package never imports TensorFlow: the edge path (runtime, bundle, tokenizer, transform) runs with
LiteRT or tflite-runtime, numpy and pillow alone. It only makes sure that, if TensorFlow is imported later,
it picks Keras 2 (`tf_keras`), which tensorflow-model-optimization requires.
"""

import os as _os

_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"
