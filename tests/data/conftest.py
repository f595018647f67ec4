"""Image folders written by the tests: real photos and broken files."""

import pytest
from PIL import Image

from imagedata import photo, write_folder


@pytest.fixture
def image_folder(tmp_path):
    return write_folder(tmp_path / "images")


@pytest.fixture
def messy_folder(tmp_path):
    """Good images in every supported format and color model, plus three broken files."""
    root = write_folder(tmp_path / "messy", per_class=2, classes=("astronaut", "coffee"))
    gray = Image.fromarray(photo("coffee", (60, 40))).convert("L")
    gray.save(root / "coffee" / "gray.png")
    Image.fromarray(photo("astronaut", (60, 40))).convert("CMYK").save(
        root / "astronaut" / "cmyk.jpg")
    Image.fromarray(photo("coffee", (60, 40))).save(root / "coffee" / "frame.gif")
    Image.fromarray(photo("astronaut", (60, 40))).save(root / "astronaut" / "bitmap.bmp")
    Image.fromarray(photo("coffee", (60, 40))).convert("RGBA").save(root / "coffee" / "alpha.png")
    (root / "coffee" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"not a jpeg" * 20)
    (root / "astronaut" / "empty.png").write_bytes(b"")
    good = (root / "coffee" / "0.jpg").read_bytes()
    (root / "astronaut" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "astronaut" / "notes.txt").write_text("not an image, not listed")
    return root
