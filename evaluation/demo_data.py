"""Data for ``make demo``: a real micrograph and degraded "synthetic" versions, as pyramids.

Real: scikit-image's bundled IHC micrograph (human colon), mirrored into a 4096^2 mosaic.
Fake: the same tissue blurred (what an under-resolved generator produces), with a stain shift,
and as JPEG q5 blocks. Prints the best extractor available here on stdout: the standard FID
Inception when its weights can be found, else its randomly initialised twin (labelled as such).

    python -m evaluation.demo_data build/demo
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from urcdm.errors import UserError
from urcdm.pyramid import ArraySource, write_pyramid
from urcdm.sample_data import immunohistochemistry_mosaic


def degraded_versions(real: np.ndarray) -> dict[str, np.ndarray]:
    blurred = ndimage.gaussian_filter(real, sigma=(2.5, 2.5, 0))
    shifted = np.clip(real.astype(np.int16) + np.array([25, -15, 10], dtype=np.int16), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(real).save(buffer, format="JPEG", quality=5)
    blocky = np.asarray(Image.open(buffer).convert("RGB"))
    return {"blurred": blurred, "stain-shift": shifted, "jpeg-q5": blocky}


def best_extractor() -> str:
    from evaluation.extractors.weights import find_inception_weights

    try:
        find_inception_weights()
        return "inception-v3"
    except UserError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        print("demo: falling back to inception-v3-random (random weights): the numbers rank the fakes "
              "but are NOT comparable to published FIDs", file=sys.stderr)
        return "inception-v3-random"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--repeat", type=int, default=8, help="mosaic side in 512-px tiles (default 8: 4096^2)")
    args = parser.parse_args(argv)
    real = immunohistochemistry_mosaic(args.repeat)
    images = {"real": real, **degraded_versions(real)}
    for name, pixels in images.items():
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        write_pyramid(ArraySource(pixels), folder / f"ihc-{name}.tiff", tile=256, quality=95, mpp=0.5, overwrite=True)
    print(best_extractor())
    return 0


if __name__ == "__main__":
    sys.exit(main())
