"""Anchor boxes of a detector's feature levels (EfficientDet §3, after RetinaNet §4).

Each level l of [min_level, max_level] sees the image at stride ~2^l (the feature map's size is
the image's halved l times, rounding up, as the backbone's SAME convolutions do). At every
location of a level there are num_scales x len(aspect_ratios) anchors, centred on the cell:
side anchor_scale * stride * 2^(i / num_scales) for scale i, stretched to the aspect ratio
(width / height) with the area kept. Boxes are [ymin, xmin, ymax, xmax] in input pixels, ordered
level by level, then row by row, column by column, then scale-major over (scale, aspect).
Numbers (google/automl efficientdet anchors.py / hparams_config.py): 3 scales, aspect ratios
1, 2, 0.5, anchor scale 4; D0 at 512 x 512 over levels 3-7 has 49,104 anchors.
"""

import dataclasses
import math
from typing import Dict, List, Tuple

import numpy as np
import tensorflow as tf

from efficientnet_tf.specs import registry


@dataclasses.dataclass(frozen=True)
class AnchorSettings:
    min_level: int = 3
    max_level: int = 7
    num_scales: int = 3
    aspect_ratios: Tuple[float, ...] = (1.0, 2.0, 0.5)  # width / height
    anchor_scale: float = 4.0

    def __post_init__(self):
        if not 1 <= self.min_level <= self.max_level:
            raise ValueError(f"levels {self.min_level}-{self.max_level}: need 1 <= min_level "
                             "<= max_level")
        if self.num_scales < 1 or not self.aspect_ratios or min(self.aspect_ratios) <= 0:
            raise ValueError(f"num_scales {self.num_scales} and aspect ratios "
                             f"{self.aspect_ratios} must be positive")

    @property
    def levels(self):
        return list(range(self.min_level, self.max_level + 1))

    @property
    def per_location(self):
        """Anchors at each location of a level."""
        return self.num_scales * len(self.aspect_ratios)


def settings_of(spec):
    """The anchors of a detection row (registry.DetectionSpec) or its name."""
    spec = registry.get(spec)
    return AnchorSettings(min_level=spec.min_level, max_level=spec.max_level,
                          num_scales=spec.num_scales, aspect_ratios=tuple(spec.aspect_ratios),
                          anchor_scale=spec.anchor_scale)


def feature_sizes(image_size, max_level):
    """{level: (height, width)} for levels 0..max_level of an (height, width) input: each level
    halves the one before, rounding up (a stride-2 SAME convolution or pooling)."""
    height, width = image_size
    sizes = {0: (height, width)}
    for level in range(1, max_level + 1):
        height, width = (height - 1) // 2 + 1, (width - 1) // 2 + 1
        sizes[level] = (height, width)
    return sizes


def level_shapes(image_size, settings):
    """{level: (height, width, anchors per location)} of the levels the settings use."""
    sizes = feature_sizes(image_size, settings.max_level)
    return {level: (*sizes[level], settings.per_location) for level in settings.levels}


def generate(image_size, settings=AnchorSettings()):
    """All anchors of an (height, width) input: float32 [N, 4] (ymin, xmin, ymax, xmax)."""
    sizes = feature_sizes(image_size, settings.max_level)
    per_level: List[np.ndarray] = []
    for level in settings.levels:
        height, width = sizes[level]
        stride_y, stride_x = image_size[0] / height, image_size[1] / width
        centre_y = (np.arange(height) + 0.5) * stride_y
        centre_x = (np.arange(width) + 0.5) * stride_x
        centre_x, centre_y = np.meshgrid(centre_x, centre_y)  # [height, width]
        shapes = []
        for scale in range(settings.num_scales):
            octave = 2.0 ** (scale / settings.num_scales)
            for aspect in settings.aspect_ratios:
                half_height = settings.anchor_scale * stride_y * octave / math.sqrt(aspect) / 2
                half_width = settings.anchor_scale * stride_x * octave * math.sqrt(aspect) / 2
                shapes.append((half_height, half_width))
        half = np.asarray(shapes)  # [A, 2]
        boxes = np.stack([centre_y[..., None] - half[:, 0], centre_x[..., None] - half[:, 1],
                          centre_y[..., None] + half[:, 0], centre_x[..., None] + half[:, 1]],
                         axis=-1)  # [height, width, A, 4]
        per_level.append(boxes.reshape(-1, 4))
    return np.concatenate(per_level).astype(np.float32)


def count(image_size, settings=AnchorSettings()):
    return sum(h * w * a for h, w, a in level_shapes(image_size, settings).values())


def split_by_level(values, image_size, settings) -> Dict[int, object]:
    """{level: values[start:end] reshaped to [height, width, anchors * K]} of per-anchor values
    [N, K] (or [N]: then [height, width, anchors]), in generate()'s order."""
    result, start = {}, 0
    for level, (height, width, per_location) in level_shapes(image_size, settings).items():
        end = start + height * width * per_location
        piece = values[start:end]
        trailing = piece.shape[1] if len(piece.shape) > 1 else 1
        result[level] = tf.reshape(piece, [height, width, per_location * trailing])
        start = end
    return result
