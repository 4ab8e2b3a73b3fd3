"""The sampler at paper scale with ``--backend upsample``: the full geometry, scheduling and I/O path of
one 41344^2 slide. Prints JSON: wall time, peak RSS of the sampling process, model calls, waves per
scheduler, output size. Not a test.

    python benchmarks/bench_sampler.py [--scheduler checkerboard] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from urcdm.clikit import positive_int, run_script
from urcdm.config import paper
from urcdm.sampling.geometry import LevelGrid
from urcdm.sampling.schedule import SCHEDULERS, waves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scheduler", choices=SCHEDULERS, default="checkerboard")
    parser.add_argument("--batch-size", type=positive_int, default=4)
    parser.add_argument("--level0", type=Path, help="take level 0 from this slide's tissue layout (e.g. the TCGA slide)")
    args = parser.parse_args()
    config = paper()
    result = {"waves": {f"level{level}": {s: len(waves(LevelGrid.of(config, level), s)) for s in SCHEDULERS}
                        for level in (1, 2)}}
    with tempfile.TemporaryDirectory(prefix="urcdm-bench-sampler-") as tmp:
        out = Path(tmp) / "slide.tiff"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "urcdm.cli", "sample", "--config", "paper", "--backend", "upsample",
                        "--out", str(out), "--scheduler", args.scheduler, "--batch-size", str(args.batch_size), "--json",
                        *(["--level0", str(args.level0)] if args.level0 else [])],
                       check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        manifest = json.loads(out.with_suffix(".json").read_text())
        result.update({
            "scheduler": args.scheduler, "batch_size": args.batch_size, "wall_s": round(wall, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
            "size": manifest["pyramid"]["width"], "pyramid_levels": len(manifest["pyramid"]["level_dimensions"]),
            "file_mb": round(out.stat().st_size / 1e6, 1), "model_calls": manifest["model_calls"],
            "seconds_per_level": {entry["level"]: entry.get("seconds") for entry in manifest["levels"]},
            "level2_patches_diffused": manifest["levels"][2]["patches_diffused"],
            "level2_patches_skipped_as_glass": manifest["levels"][2]["patches_skipped"],
            # every diffused patch runs each of the level's unets once; level 0 and level 1 are never skipped
            "unet_runs_with_white_skip": len(config.unets) * (1 + manifest["levels"][1]["patches"]
                                                             + manifest["levels"][2]["patches_diffused"]),
            "unet_runs_without_white_skip": len(config.unets) * (1 + manifest["levels"][1]["patches"]
                                                                + manifest["levels"][2]["patches"]),
            "level0": str(args.level0) if args.level0 else "seeded texture",
        })
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    sys.exit(run_script(main))
