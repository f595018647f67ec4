"""Image folders written by the tests: real photos shipped with scikit-image, and broken files."""

import numpy as np
import pytest
import skimage.data
from PIL import Image

PHOTOS = {"astronaut": skimage.data.astronaut, "coffee": skimage.data.coffee,
          "chelsea": skimage.data.chelsea, "rocket": skimage.data.rocket}


def photo(name="astronaut", size=None):
    image = PHOTOS[name]()
    if size:
        image = np.asarray(Image.fromarray(image).resize(size))
    return image


def write_folder(root, per_class=6, classes=("astronaut", "coffee", "chelsea"), size=(96, 72)):
    """root/CLASS/i.jpg: crops of each class's photo, so classes are tellable apart."""
    rng = np.random.RandomState(0)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        base = photo(name)
        for i in range(per_class):
            top, left = rng.randint(0, base.shape[0] // 4), rng.randint(0, base.shape[1] // 4)
            crop = base[top: top + base.shape[0] * 3 // 4, left: left + base.shape[1] * 3 // 4]
            Image.fromarray(crop).resize(size).save(root / name / f"{i}.jpg", quality=90)
    return root


@pytest.fixture
def image_folder(tmp_path):
    return write_folder(tmp_path / "images")


@pytest.fixture
def messy_folder(tmp_path):
    """Good images in every supported format and color model, plus three broken files."""
    root = write_folder(tmp_path / "messy", per_class=2, classes=("astronaut", "coffee"))
    gray = Image.fromarray(photo("coffee", (60, 40))).convert("L")
    gray.save(root / "coffee" / "gray.png")
    Image.fromarray(photo("astronaut", (60, 40))).convert("CMYK").save(root / "astronaut" / "cmyk.jpg")
    Image.fromarray(photo("coffee", (60, 40))).save(root / "coffee" / "frame.gif")
    Image.fromarray(photo("astronaut", (60, 40))).save(root / "astronaut" / "bitmap.bmp")
    Image.fromarray(photo("coffee", (60, 40))).convert("RGBA").save(root / "coffee" / "alpha.png")
    (root / "coffee" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"not a jpeg" * 20)
    (root / "astronaut" / "empty.png").write_bytes(b"")
    good = (root / "coffee" / "0.jpg").read_bytes()
    (root / "astronaut" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "astronaut" / "notes.txt").write_text("not an image, not listed")
    return root
