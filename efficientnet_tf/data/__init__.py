"""Task-agnostic input: sources, preprocessing, augmentation, the input skeleton (stream.py)."""

# The pixel cap of serving and of the input pipelines: an image above it is refused before its
# pixels are decoded (a 10000 x 10000 PNG would take 300 MB decoded, and more to resize).
MAX_PIXELS = 40_000_000
