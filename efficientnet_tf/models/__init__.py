"""Keras 3 layers, blocks and the EfficientNet builder."""
