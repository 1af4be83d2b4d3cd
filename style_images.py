"""Style images as training sees them: loaded by path or as `builtin:NAME`, named, brought to the scale the stylizer
will use them at, and cut into the random crops the VAE trains on. The VAE (vae_keras.py), its samples' measures
(sample_fidelity.py) and the stylizer's targets (stylizer_data.py) all read styles through here.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

import builtin_images
import image_utilities as iu

BUILTIN_PREFIX = "builtin:"


def style_names(style_specs) -> list[str]:
    names = []
    for spec in style_specs:
        name = spec[len(BUILTIN_PREFIX):] if spec.startswith(BUILTIN_PREFIX) else Path(spec).stem
        while name in names:
            name += "_"
        names.append(name)
    return names


def load_styles(style_specs, size: int, style_size: int = 0) -> list[np.ndarray]:
    """Style images by path (or `builtin:NAME`), resized so their shorter side is `style_size` when given (the
    scale at which the stylizer will see the style); any smaller than the crop is enlarged, with a warning."""
    images = []
    builtins = None
    for spec in style_specs:
        if spec.startswith(BUILTIN_PREFIX):
            builtins = builtins or builtin_images.default_styles(max(512, 2 * size))
            name = spec[len(BUILTIN_PREFIX):]
            if name not in builtins:
                raise iu.ImageError(spec, f"no built-in style of that name (have {', '.join(builtins)})")
            im = builtins[name]
        else:
            im = iu.load_image(spec)
        images.append(at_training_scale(im, size, style_size, name=spec))
    return images


def at_training_scale(image: np.ndarray, size: int, style_size: int = 0, name=None) -> np.ndarray:
    """An image resized the way training sees its styles: shorter side `style_size` when set, and enlarged when
    smaller than the `size` crop (with a warning naming it, when `name` is given)."""
    if style_size:
        image = iu.resize_short_side(image, style_size)
    if min(image.shape[:2]) < size:
        if name is not None:
            warnings.warn(f"{name}: {image.shape[1]}x{image.shape[0]} is smaller than the {size} px crop; "
                          "enlarging it", stacklevel=3)
        image = iu.resize_short_side(image, size)
    return image


def training_crops(style: np.ndarray, config, rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` random crops of one style image cut the way VAE training cuts them (its crop size and scale jitter, flips,
    90-degree rotations): [n, size, size, 3]."""
    return np.stack([iu.random_crop(style, config.size, rng, scale=config.crop_scale, flip=True, rotate90=True)
                     for _ in range(n)])
