"""A real micrograph to run the toolkit on without any download.

scikit-image ships an immunohistochemistry image (human colon, 512 x 512, DAB and haematoxylin)
inside its wheel. ``immunohistochemistry_micrograph`` is that image as it is (the reader study's
demo shows it, as tissue a pathologist would accept); ``immunohistochemistry_mosaic`` mirrors it into
a larger mosaic so the evaluation demo has several pyramid levels (recognisably artificial up close).

    python -m urcdm.sample_data OUT.tif [--repeat 4]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import tifffile
from skimage import data as skimage_data


def immunohistochemistry_micrograph() -> np.ndarray:
    """The IHC micrograph as it is: 512 x 512 RGB uint8, no region mirrored or repeated."""
    return np.ascontiguousarray(skimage_data.immunohistochemistry()[..., :3], dtype=np.uint8)


def immunohistochemistry_mosaic(repeat: int = 4) -> np.ndarray:
    """The IHC image mirrored into a seamless ``repeat`` x ``repeat`` mosaic (RGB uint8)."""
    base = skimage_data.immunohistochemistry()
    pair = np.concatenate([base, base[:, ::-1]], axis=1)
    quad = np.concatenate([pair, pair[::-1]], axis=0)
    reps = -(-repeat // 2)
    return np.ascontiguousarray(np.tile(quad, (reps, reps, 1))[: repeat * 512, : repeat * 512])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path)
    parser.add_argument("--repeat", type=int, default=4)
    args = parser.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    # Plain (untiled) TIFF on purpose: OpenSlide refuses it, so the demo exercises the fallback reader.
    tifffile.imwrite(args.output, immunohistochemistry_mosaic(args.repeat))
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
