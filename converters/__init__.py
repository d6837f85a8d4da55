"""Keras -> TFLite: quantization-aware training of the HUSE graph, representative datasets, multi-signature
conversion to float / fp16 / dynamic-range / full-int8 models, and the export job that writes a bundle."""
