"""Images for tests: real photos shipped with scikit-image, written as class folders."""

import numpy as np
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
