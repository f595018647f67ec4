"""Small detection sets cut from photographs that scikit-image ships: real pixels, no download.

What a user's own boxes look like -- tens of images, a few hundred boxes, objects of a few to a
few tens of pixels -- for measuring a detection recipe (scripts/ablate_small_detection.py) and
for the learnability test. Validation always comes from a region of the photo that no training
picture overlaps (data/samples.py's split: 70% of the long side for training, the last 25% for
validation).

  sky    scikit-image's hubble_deep_field (Hubble eXtreme Deep Field, 872 x 1000): its bright
         sources, found on the pixels (luminance smoothed with a Gaussian of sigma 1 above
         SKY_THRESHOLD, at least SKY_MIN_AREA pixels, holes filled), 2 classes by colour ("red"
         where the source's mean red exceeds its mean blue, else "blue"); random size x size
         tiles, flipped and turned. Small objects: a median side of some 8 px.
  coins  the 24 coins of scikit-image's coins photo (COINS, boxes checked by eye), cut out with
         a round mask and pasted at SIDE_RANGE px onto random crops of scikit-image's textures
         and photos: training pastes the coins of rows 1-3, validation the 6 coins of row 4
         (never seen), each on its split's region of the backgrounds. One class.
  coin_photo  the coins photo itself, in its 8 flips and quarter turns at 3 gammas (24 copies,
         boxes moved exactly): the learnability test trains and scores on the same pictures.

Each set is {split: [(uint8 pixels H x W x 3, [(ymin, xmin, ymax, xmax, category id)])]} with
category ids from 1; write_set writes it as COCO JSON + PNG (what a user's folder holds).
"""

import io
import json

import numpy as np
import tensorflow as tf

from efficientnet_tf.data import samples

SPLITS = ("train", "eval")
# (ymin, xmin, ymax, xmax) in the coins photo's pixels, row by row, left to right. From a
# watershed of the photo's Sobel edges (markers: < 30 background, > 150 coin; holes filled;
# regions over 200 pixels), each box checked by eye against the photo.
COINS = (
    (35, 22, 74, 67), (39, 81, 74, 120), (28, 132, 74, 179), (30, 192, 73, 240),
    (34, 255, 72, 297), (16, 305, 72, 365),
    (104, 25, 145, 67), (108, 84, 145, 122), (110, 134, 145, 173), (105, 186, 144, 226),
    (95, 245, 144, 296), (106, 317, 145, 356),
    (179, 26, 217, 63), (175, 80, 217, 124), (179, 135, 217, 174), (170, 189, 217, 237),
    (172, 251, 217, 297), (156, 315, 218, 380),
    (233, 18, 288, 75), (245, 93, 287, 136), (236, 144, 288, 201), (240, 220, 288, 269),
    (239, 276, 289, 326), (248, 336, 289, 382),
)
SKY_THRESHOLD, SKY_MIN_AREA = 0.3, 12
SKY_CATEGORIES = {1: "red", 2: "blue"}
COIN_CATEGORIES = {1: "coin"}
SIDE_RANGE = (16, 48)  # a pasted coin's side, px (log-uniform)
COINS_PER_PICTURE = (3, 9)
MIN_VISIBLE = 0.6  # a tile keeps a box of which at least this share of the area is inside


def _upside_down(pixels, boxes):
    """The picture flipped top to bottom, with its boxes ((ymin, xmin, ymax, xmax, ...))."""
    height = pixels.shape[0]
    return pixels[::-1], [(height - y1, x0, height - y0, x1, *rest)
                          for y0, x0, y1, x1, *rest in boxes]


def _quarter_turn(pixels, boxes):
    """The picture turned counter-clockwise (column x becomes row width - x), with its boxes."""
    width = pixels.shape[1]
    return np.rot90(pixels), [(width - x1, y0, width - x0, y1, *rest)
                              for y0, x0, y1, x1, *rest in boxes]


def _turns(pixels, boxes, rng):
    """A random one of the picture's 8 flips and quarter turns, with its boxes moved."""
    if rng.rand() < 0.5:
        pixels, boxes = _upside_down(pixels, boxes)
    for _ in range(rng.randint(4)):
        pixels, boxes = _quarter_turn(pixels, boxes)
    return np.ascontiguousarray(pixels), boxes


def _clip_to(boxes, top, left, size):
    """The boxes seen through a size x size window at (top, left), clipped to it; a box with
    less than MIN_VISIBLE of its area inside is left out."""
    kept = []
    for y0, x0, y1, x1, category in boxes:
        cy0, cx0 = max(y0, top), max(x0, left)
        cy1, cx1 = min(y1, top + size), min(x1, left + size)
        if cy1 <= cy0 or cx1 <= cx0:
            continue
        if (cy1 - cy0) * (cx1 - cx0) >= MIN_VISIBLE * (y1 - y0) * (x1 - x0):
            kept.append((cy0 - top, cx0 - left, cy1 - top, cx1 - left, category))
    return kept


def sky_sources(pixels):
    """[(ymin, xmin, ymax, xmax, category)] of the bright sources of a deep-field photo."""
    from scipy import ndimage
    from skimage import color, filters, measure

    luminance = filters.gaussian(color.rgb2gray(pixels), 1.0)
    labels = measure.label(ndimage.binary_fill_holes(luminance > SKY_THRESHOLD))
    boxes = []
    for region in measure.regionprops(labels):
        if region.area < SKY_MIN_AREA:
            continue
        y0, x0, y1, x1 = region.bbox
        inside = labels[y0:y1, x0:x1] == region.label
        colours = pixels[y0:y1, x0:x1][inside].astype(np.float64).mean(0)
        boxes.append((y0, x0, y1, x1, 1 if colours[0] > colours[2] else 2))
    return boxes


def sky(train_images=72, eval_images=24, size=128, seed=0):
    """The sky set: tiles of the deep field with the sources inside them (see the module)."""
    import skimage.data

    photo = skimage.data.hubble_deep_field()
    sources = sky_sources(photo)
    width = photo.shape[1]
    train_end = int(width * samples.TRAIN_SHARE)
    eval_start = int(width * (samples.TRAIN_SHARE + samples.GAP_SHARE))
    rng = np.random.RandomState(seed)
    result = {}
    for split, count, (low, high) in (("train", train_images, (0, train_end)),
                                      ("eval", eval_images, (eval_start, width))):
        region = [b for b in sources if b[1] >= low and b[3] <= high]
        pictures = []
        while len(pictures) < count:
            top = rng.randint(0, photo.shape[0] - size + 1)
            left = rng.randint(low, high - size + 1)
            boxes = _clip_to(region, top, left, size)
            if boxes:
                pictures.append(_turns(photo[top:top + size, left:left + size], boxes, rng))
        result[split] = pictures
    return result


def _coin_cutouts():
    """[(gray pixels, round alpha)] of the 24 coins, in COINS's order."""
    import skimage.data

    photo = skimage.data.coins()
    cutouts = []
    for y0, x0, y1, x1 in COINS:
        pixels = photo[y0:y1, x0:x1]
        rows, cols = np.mgrid[0:y1 - y0, 0:x1 - x0]
        distance = (((rows + 0.5 - (y1 - y0) / 2) / ((y1 - y0) / 2)) ** 2
                    + ((cols + 0.5 - (x1 - x0) / 2) / ((x1 - x0) / 2)) ** 2)
        cutouts.append((pixels, np.clip((1.0 - distance) * 8.0, 0.0, 1.0)))
    return cutouts


def _backgrounds():
    import skimage.data

    gray = [skimage.data.brick(), skimage.data.grass(), skimage.data.gravel(),
            skimage.data.camera()]
    colour = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(),
              skimage.data.rocket()]
    return [np.stack([image] * 3, -1) for image in gray] + colour


def _resized(pixels, height, width):
    from PIL import Image

    return np.asarray(Image.fromarray(pixels).resize((width, height), Image.BICUBIC))


def coins(train_images=72, eval_images=24, size=128, seed=0):
    """The pasted-coins set (see the module)."""
    cutouts = _coin_cutouts()
    regions = [samples._regions(image) for image in _backgrounds()]
    rng = np.random.RandomState(seed)
    result = {}
    for split, count, chosen in (("train", train_images, range(18)),
                                 ("eval", eval_images, range(18, 24))):
        pictures = []
        for _ in range(count):
            region = regions[rng.randint(len(regions))][SPLITS.index(split)]
            side = min(region.shape[0], region.shape[1], int(rng.uniform(size, 3 * size)))
            top = rng.randint(region.shape[0] - side + 1)
            left = rng.randint(region.shape[1] - side + 1)
            canvas = _resized(region[top:top + side, left:left + side], size, size)
            canvas = canvas.astype(np.float64)
            boxes = []
            for _ in range(rng.randint(*COINS_PER_PICTURE)):
                pixels, alpha = cutouts[rng.choice(list(chosen))]
                side = int(np.exp(rng.uniform(*np.log(SIDE_RANGE))))
                scale = side / max(pixels.shape)
                height = max(4, int(round(pixels.shape[0] * scale)))
                width = max(4, int(round(pixels.shape[1] * scale)))
                y, x = rng.randint(size - height + 1), rng.randint(size - width + 1)
                box = (y, x, y + height, x + width, 1)
                if any(_iou(box, other) > 0.1 for other in boxes):
                    continue
                coin = _resized(pixels, height, width).astype(np.float64)[..., None]
                weight = _resized((alpha * 255).astype(np.uint8), height, width)[..., None] / 255
                patch = canvas[y:y + height, x:x + width]
                canvas[y:y + height, x:x + width] = weight * coin + (1 - weight) * patch
                boxes.append(box)
            pictures.append((canvas.round().astype(np.uint8), boxes))
        result[split] = pictures
    return result


def _iou(a, b):
    height = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    width = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = height * width
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def turned_copies(pixels, boxes):
    """A picture (H x W x 3) in its 8 flips and quarter turns at gamma 0.7, 1 and 1.4 (24
    copies; the original among them), with its boxes ((ymin, xmin, ymax, xmax, ...)) moved
    exactly: each quarter turn, then the same upside down."""
    copies = []
    for gamma in (0.7, 1.0, 1.4):
        image = (255.0 * (pixels / 255.0) ** gamma).round().astype(np.uint8)
        turned = list(boxes)
        for _ in range(4):
            copies.append((image, turned))
            flipped, moved = _upside_down(image, turned)
            copies.append((flipped.copy(), moved))
            image, turned = _quarter_turn(image, turned)
            image = image.copy()
    return copies


def coin_photo():
    """The coins photo's turned_copies, as train and as eval: for fitting, not generalising."""
    import skimage.data

    pictures = turned_copies(np.stack([skimage.data.coins()] * 3, -1),
                             [(*box, 1) for box in COINS])
    return {"train": pictures, "eval": pictures}


SETS = {"sky": (sky, SKY_CATEGORIES), "coins": (coins, COIN_CATEGORIES),
        "coin_photo": (coin_photo, COIN_CATEGORIES)}


def write_set(pictures, categories, root):
    """Writes {split: pictures} as ROOT/SPLIT/images/*.png and ROOT/SPLIT/annotations.json
    (COCO boxes [x, y, width, height]); returns {split: (annotations, images folder)}."""
    from PIL import Image

    written = {}
    for split, items in pictures.items():
        tf.io.gfile.makedirs(f"{root}/{split}/images")
        content = {"images": [], "annotations": [],
                   "categories": [{"id": key, "name": name} for key, name in categories.items()]}
        for image_id, (pixels, boxes) in enumerate(items, 1):
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
            name = f"{image_id:05d}.png"
            with tf.io.gfile.GFile(f"{root}/{split}/images/{name}", "wb") as stream:
                stream.write(buffer.getvalue())
            content["images"].append({"id": image_id, "file_name": name,
                                      "height": pixels.shape[0], "width": pixels.shape[1]})
            for y0, x0, y1, x1, category in boxes:
                content["annotations"].append({
                    "id": len(content["annotations"]) + 1, "image_id": image_id,
                    "category_id": int(category),
                    "bbox": [int(x0), int(y0), int(x1 - x0), int(y1 - y0)],
                    "area": int((x1 - x0) * (y1 - y0)), "iscrowd": 0})
        with tf.io.gfile.GFile(f"{root}/{split}/annotations.json", "w") as stream:
            json.dump(content, stream)
        written[split] = (f"{root}/{split}/annotations.json", f"{root}/{split}/images")
    return written


def make(name, root, **options):
    """Builds set `name` (SETS) with `options` and writes it under ROOT (write_set)."""
    if name not in SETS:
        raise ValueError(f"unknown detection set {name!r}; choose from {sorted(SETS)}")
    build, categories = SETS[name]
    return write_set(build(**options), categories, root)
