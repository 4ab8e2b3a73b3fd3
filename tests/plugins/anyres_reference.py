"""An independent implementation of anyres-gan's patch sampler, for tests and benchmarks only.

Written from the description of chail/anyres-gan at b14422c (``util/patch_util.py``'s
PatchSampler, ``training/dataset.py``'s ImagePatchDataset, StyleGAN's ``InfiniteSampler``) with
Python's ``random`` and PIL, reading every image whole, as the reference does. It shares no code
with ``evaluation``, so agreement between the two means something.

Also the law urcdm-eval used before it followed anyres-gan (crop side uniform, images drawn with
replacement), to show that the comparison can tell the two apart.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image


def load_images(folder: Path) -> list[Image.Image]:
    return [Image.open(path).convert("RGB") for path in sorted(Path(folder).glob("*.png"))]


def infinite_sampler(count: int, seed: int) -> Iterator[int]:
    """StyleGAN's InfiniteSampler: one shuffle, then cycle, swapping within a half-size window."""
    state = np.random.RandomState(seed)
    order = np.arange(count)
    state.shuffle(order)
    window = int(np.rint(count * 0.5))
    index = 0
    while True:
        i = index % count
        yield int(order[i])
        if window >= 2:
            j = (i - state.randint(window)) % count
            order[i], order[j] = order[j], order[i]
        index += 1


def anyres_patches(images: list[Image.Image], patch: int, n: int, seed: int) -> Iterator[Image.Image]:
    """Random square of side S; resized whole to round(U[P, S]) with Lanczos; a P x P cut at a
    uniform integer position (the metric fid-patch{P}-min{P}max0)."""
    rnd, turns = random.Random(seed), infinite_sampler(len(images), seed)
    for _ in range(n):
        image = images[next(turns)]
        width, height = image.size
        side = min(width, height)
        x0, y0 = rnd.randint(0, width - side), rnd.randint(0, height - side)
        square = image.crop((x0, y0, x0 + side, y0 + side))
        size = int(np.round(rnd.uniform(patch, side)))
        resized = square.resize((size, size), Image.LANCZOS)
        x, y = rnd.randint(0, size - patch), rnd.randint(0, size - patch)
        yield resized.crop((x, y, x + patch, y + patch))


def legacy_patches(images: list[Image.Image], patch: int, n: int, seed: int) -> Iterator[Image.Image]:
    """The legacy law: any image (with replacement), crop side uniform in [P, S], resized to P."""
    rnd = random.Random(seed)
    for _ in range(n):
        image = images[rnd.randrange(len(images))]
        width, height = image.size
        side = rnd.randint(patch, min(width, height))
        x, y = rnd.randint(0, width - side), rnd.randint(0, height - side)
        yield image.resize((patch, patch), Image.LANCZOS, box=(x, y, x + side, y + side))
