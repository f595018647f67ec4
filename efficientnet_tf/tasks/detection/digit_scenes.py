"""Digit scenes: an offline detection dataset with real pixels, in COCO format.

A stand-in for COCO (Lin et al. 2014, the format EfficientDet trains on, Tan et al. CVPR 2020
section 5) that needs no download: scikit-learn's handwritten digit scans pasted onto crops of
the colour photos of data/samples.py, one to six per scene, at sizes from 24 to 160 px.

  backgrounds  random square crops of the 10 sample photos, resized to image_size and flipped
               at random. Train scenes crop from the first 70% of each photo's long side, eval
               scenes from the last 25% (samples._regions: a 5% gap between), so no eval pixel
               was seen in training.
  objects      sklearn.datasets.load_digits (1,797 8x8 scans, 16 grey levels): train scenes use
               scans 0-1499, eval scenes 1500-1796 (other writers). A scan is upscaled
               (bicubic) to a square of log-uniform side, and its intensity is the alpha of a
               stroke in the colour that differs most in luminance from the pixels under it.
  boxes        the tight box of the ink (alpha > INK_THRESHOLD), not the pasted square; any two
               boxes of a scene overlap with IoU <= MAX_IOU and cover at most MAX_COVER of the
               smaller one (a digit that finds no such place in PLACEMENT_TRIES is left out).
               Classes are COCO-style sparse ids 1..10 named "0".."9"; each annotation also
               records its scan as "digit_index" (COCO readers ignore extra keys).

    python -m efficientnet_tf.tasks.detection.digit_scenes OUTPUT_DIR

writes OUTPUT_DIR/{train,eval}/images/*.png and OUTPUT_DIR/{train,eval}/annotations.json,
then OUTPUT_DIR/scenes.json (settings and counts) last: a second call with the same settings
finds it and reuses the files. Everything follows from `seed`; paths go through tf.io.gfile.
"""

import dataclasses
import io
import json
import sys
import time
from typing import List

import numpy as np
import tensorflow as tf

from efficientnet_tf.data import samples

SPLITS = ("train", "eval")
DIGIT_RANGES = {"train": (0, 1500), "eval": (1500, 1797)}  # scans of other writers for eval
MIN_SIDE, MAX_SIDE = 24, 160  # of the pasted square, pixels; log-uniform, so small is common
MAX_DIGITS = 6
MAX_IOU = 0.3
MAX_COVER = 0.5
PLACEMENT_TRIES = 20
SCAN_MARGIN = 2  # zero pixels around an 8x8 scan before upscaling
INK_THRESHOLD = 0.1  # alpha above which a pixel is ink (inside the box)
COLOUR_CANDIDATES = 6
# Luminance difference (0..255) under the ink below which a random colour is replaced by black
# or white; one of those two always differs by >= 127.5 on average, so every digit shows.
MIN_CONTRAST = 80.0
BACKGROUND_SIDES = (0.3, 0.8)  # crop side as a share of the photo's short side (capped)
CATEGORIES = [{"id": digit + 1, "name": str(digit)} for digit in range(10)]
MARKER = "scenes.json"
VERSION = 1  # of the rendering; a marker of another version is not reused
LUMINANCE = np.array([0.299, 0.587, 0.114])


@dataclasses.dataclass
class Scene:
    background: np.ndarray  # uint8 [size, size, 3], before any digit was pasted
    pixels: np.ndarray  # uint8 [size, size, 3], with the digits
    boxes: List[List[int]]  # [x, y, width, height] of each digit's ink, pixels
    labels: List[int]  # the digit, 0..9
    digit_indices: List[int]  # the scan, index into load_digits()


def digit_alpha(scan, side):
    """Alpha in [0, 1] of an 8x8 scan (values 0..16) upscaled bicubic so that the scan spans
    `side` pixels, inside a margin of a quarter of `side` on every edge: many scans have ink on
    their border rows, which would otherwise end in a straight cut. The ramp from 0.3 to 0.7 of
    full intensity turns the blurred scan into a stroke with soft edges."""
    from PIL import Image

    padded = np.pad(np.asarray(scan, np.float32) / 16.0, SCAN_MARGIN)
    pixels = int(round(side * padded.shape[0] / 8))
    upscaled = np.asarray(Image.fromarray(padded).resize((pixels, pixels), Image.BICUBIC))
    return np.clip((upscaled - 0.3) / 0.4, 0.0, 1.0)


def ink_box(alpha):
    """[x, y, width, height] of the pixels with alpha > INK_THRESHOLD."""
    rows = np.flatnonzero((alpha > INK_THRESHOLD).any(axis=1))
    columns = np.flatnonzero((alpha > INK_THRESHOLD).any(axis=0))
    return [int(columns[0]), int(rows[0]), int(columns[-1] - columns[0] + 1),
            int(rows[-1] - rows[0] + 1)]


def _fitted_digit(scan, side, largest):
    """(alpha, ink box) of a scan at `side`, shrunk until the ink fits in `largest` pixels: the
    blur spreads the ink a pixel or two past the scan's own square."""
    while True:
        alpha = digit_alpha(scan, side)
        box = ink_box(alpha)
        if max(box[2:]) <= largest:
            return alpha, box
        side = min(side - 1, side * largest // max(box[2:]))


def _intersection(a, b):
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(width, 0) * max(height, 0)


def box_iou(a, b):
    """IoU of two [x, y, width, height] boxes."""
    intersection = _intersection(a, b)
    return intersection / (a[2] * a[3] + b[2] * b[3] - intersection)


def _fits(box, others):
    """Whether a box overlaps each of `others` little: IoU <= MAX_IOU, and at most MAX_COVER
    of the smaller box's area (IoU alone lets a small box sit wholly inside a large one)."""
    return all(box_iou(box, other) <= MAX_IOU and _intersection(box, other) <= MAX_COVER * min(
        box[2] * box[3], other[2] * other[3]) for other in others)


def _background(rng, regions, image_size):
    region = regions[rng.randint(len(regions))]
    patch = samples._patches(region, 1, image_size, BACKGROUND_SIDES, min(region.shape[:2]),
                             rng)[0]
    if rng.rand() < 0.5:
        patch = patch[:, ::-1]
    if rng.rand() < 0.5:
        patch = patch[::-1]
    return np.ascontiguousarray(patch)


def _colour(rng, under, alpha):
    """The RGB colour whose luminance differs most from `under` (the canvas below the square),
    weighted by alpha, among random candidates; black or white where none differs enough."""
    luminance = under.astype(np.float64) @ LUMINANCE

    def contrast(colour):
        return float((alpha * np.abs(colour @ LUMINANCE - luminance)).sum() / alpha.sum())

    candidates = rng.randint(0, 256, size=(COLOUR_CANDIDATES, 3)).astype(np.float64)
    best = max(candidates, key=contrast)
    if contrast(best) < MIN_CONTRAST:
        best = max(np.zeros(3), np.full(3, 255.0), key=contrast)
    return best


def _paste(rng, canvas, alpha, left, top):
    """Blends a stroke of alpha (its square at left, top; clipped to the canvas) into canvas."""
    side, size = alpha.shape[0], canvas.shape[0]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + side, size), min(left + side, size)
    alpha = alpha[y0 - top:y1 - top, x0 - left:x1 - left]
    under = canvas[y0:y1, x0:x1]
    colour = _colour(rng, under, alpha)
    blended = alpha[..., None] * colour + (1.0 - alpha[..., None]) * under
    canvas[y0:y1, x0:x1] = np.round(blended).astype(np.uint8)


def _scene(rng, regions, scans, targets, digit_range, image_size):
    background = _background(rng, regions, image_size)
    canvas = background.copy()
    largest = min(MAX_SIDE, image_size)
    count = rng.randint(1, MAX_DIGITS + 1)
    sides = np.exp(rng.uniform(np.log(MIN_SIDE), np.log(largest), size=count))
    scene = Scene(background, canvas, [], [], [])
    # Largest first, so a small digit lands on top of a large one rather than under it.
    for side in sorted(np.round(sides).astype(int), reverse=True):
        index = rng.randint(*digit_range)
        alpha, (ink_x, ink_y, width, height) = _fitted_digit(scans[index], int(side), largest)
        for _ in range(PLACEMENT_TRIES):
            box = [rng.randint(0, image_size - width + 1), rng.randint(0, image_size - height + 1),
                   width, height]
            if _fits(box, scene.boxes):
                _paste(rng, canvas, alpha, box[0] - ink_x, box[1] - ink_y)
                scene.boxes.append(box)
                scene.labels.append(int(targets[index]))
                scene.digit_indices.append(int(index))
                break
    return scene


def render_scenes(split, count, image_size=256, seed=0, photos=None):
    """An iterator over the split's `count` Scenes (arguments checked at once); `photos`
    ({name: RGB array}, samples._photos() when not given) lets a caller that renders both
    splits load them once."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    if image_size < MIN_SIDE:
        raise ValueError(f"image_size is {image_size}; scenes need at least {MIN_SIDE} px")
    from sklearn.datasets import load_digits

    digits = load_digits()
    photos = samples._photos() if photos is None else photos
    regions = [samples._regions(photo)[SPLITS.index(split)] for photo in photos.values()]
    rng = np.random.RandomState([seed, SPLITS.index(split)])
    return (_scene(rng, regions, digits.images, digits.target, DIGIT_RANGES[split], image_size)
            for _ in range(count))


def _encode_png(pixels):
    from PIL import Image

    buffer = io.BytesIO()
    # Level 1: a third of the time of the default level 6 for 10% more bytes, which is what
    # keeps writing both default splits within seconds.
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _write_split(root, split, count, image_size, seed, photos):
    """Writes ROOT/SPLIT/images/*.png and ROOT/SPLIT/annotations.json; returns the box count."""
    tf.io.gfile.makedirs(f"{root}/{split}/images")
    content = {"images": [], "annotations": [], "categories": CATEGORIES}
    for image_id, scene in enumerate(render_scenes(split, count, image_size, seed, photos), 1):
        file_name = f"{image_id:06d}.png"
        with tf.io.gfile.GFile(f"{root}/{split}/images/{file_name}", "wb") as stream:
            stream.write(_encode_png(scene.pixels))
        content["images"].append({"id": image_id, "file_name": file_name, "width": image_size,
                                  "height": image_size})
        for box, label, digit_index in zip(scene.boxes, scene.labels, scene.digit_indices):
            content["annotations"].append({
                "id": len(content["annotations"]) + 1, "image_id": image_id,
                "category_id": label + 1, "bbox": box, "area": box[2] * box[3], "iscrowd": 0,
                "digit_index": digit_index})
    with tf.io.gfile.GFile(f"{root}/{split}/annotations.json", "w") as stream:
        json.dump(content, stream)
    return len(content["annotations"])


def _previous(root, settings):
    """The marker of a complete earlier call with the same settings, or None."""
    marker = f"{root}/{MARKER}"
    if not tf.io.gfile.exists(marker):
        return None
    with tf.io.gfile.GFile(marker) as stream:
        previous = json.load(stream)
    complete = all(tf.io.gfile.exists(f"{root}/{split}/annotations.json") for split in SPLITS)
    return previous if complete and previous.get("settings") == settings else None


def write_digit_scenes(root, image_size=256, train_images=600, eval_images=150, seed=0):
    """Writes the train and eval splits under ROOT (COCO JSON + PNG) unless a complete earlier
    call with the same settings left them there. Returns {split: {"images", "boxes",
    "annotations" (file), "images_dir"}, "seconds", "reused", "settings"}."""
    start = time.time()
    root = root.rstrip("/")
    settings = {"image_size": image_size, "train_images": train_images,
                "eval_images": eval_images, "seed": seed, "version": VERSION}
    counts = _previous(root, settings)
    reused = counts is not None
    if not reused:
        if tf.io.gfile.exists(f"{root}/{MARKER}"):
            tf.io.gfile.remove(f"{root}/{MARKER}")  # stale until this call completes
        photos = samples._photos()
        counts = {"settings": settings}
        for split, count in zip(SPLITS, (train_images, eval_images)):
            counts[split] = {"images": count,
                             "boxes": _write_split(root, split, count, image_size, seed, photos)}
        with tf.io.gfile.GFile(f"{root}/{MARKER}", "w") as stream:
            json.dump(counts, stream)
    summary = {"settings": settings, "reused": reused, "seconds": time.time() - start}
    for split in SPLITS:
        summary[split] = {**counts[split], "annotations": f"{root}/{split}/annotations.json",
                          "images_dir": f"{root}/{split}/images"}
    return summary


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m efficientnet_tf.tasks.detection.digit_scenes OUTPUT_DIR")
    written = write_digit_scenes(sys.argv[1])
    print(f"{'reused' if written['reused'] else 'wrote'} "
          + ", ".join(f"{split}: {written[split]['images']} images, {written[split]['boxes']} "
                      f"boxes" for split in SPLITS)
          + f" in {sys.argv[1]} ({written['seconds']:.1f} s)")
