"""The embedded default data: scikit-learn's bundled handwritten digits, written as image files.

1,797 grayscale 8x8 scans of the digits 0-9 (UCI optdigits test set, shipped inside
scikit-learn, so nothing is downloaded). They are written as PNG files in one folder per class
and then read like any user's image folder, through the project's own decoding and cropping.

    python -m efficientnet_tf.data.digits OUTPUT_DIR [--size=32]
"""

import io
import sys

import numpy as np
import tensorflow as tf

CLASS_NAMES = [str(digit) for digit in range(10)]


def write_digits(root, size=32):
    """Writes ROOT/<digit>/<index>.png (upscaled to size x size, bicubic); returns the count.

    Does nothing if ROOT already holds all of them, so a second run reuses the files.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = root.rstrip("/")
    if tf.io.gfile.exists(f"{root}/9") and sum(
            len(tf.io.gfile.listdir(f"{root}/{name}")) for name in CLASS_NAMES
            if tf.io.gfile.exists(f"{root}/{name}")) == len(digits.images):
        return len(digits.images)
    for name in CLASS_NAMES:
        tf.io.gfile.makedirs(f"{root}/{name}")
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        pixels = np.clip(image * (255.0 / 16.0), 0, 255).astype(np.uint8)  # values are 0..16
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="L").resize((size, size), Image.BICUBIC).save(
            buffer, format="PNG")
        with tf.io.gfile.GFile(f"{root}/{label}/{index:04d}.png", "wb") as stream:
            stream.write(buffer.getvalue())
    return len(digits.images)


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if not a.startswith("--")]
    sizes = [int(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--size=")]
    if len(arguments) != 1:
        sys.exit("usage: python -m efficientnet_tf.data.digits OUTPUT_DIR [--size=32]")
    print(f"wrote {write_digits(arguments[0], *sizes)} digit images to {arguments[0]}")
