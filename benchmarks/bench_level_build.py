"""Bringing one level's cascade into memory, as `urcdm sample` does when a level starts: seconds and peak
resident host memory, each way in a fresh process. Prints JSON. Not a test.

- ``fresh``: freshly initialised (``urcdm sample`` without ``--models``) at each precision, built on the
  device: on a GPU no weight passes through the host; on the CPU each unet is cast as it is built.
- ``load``: from checkpoints (``urcdm sample --models``): the unets built on the meta device and given
  the checkpoint's memory-mapped tensors, no random initialisation. The checkpoints are written first
  (EMA weights only, fp32, as training saves them: 12 GB for a paper level) into ``--folder``.

    python benchmarks/bench_level_build.py                          # paper level 1 on this machine
    python benchmarks/bench_level_build.py --config tiny --device cpu
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

import torch

from urcdm.clikit import bounded_int, run_script
from urcdm.config import load_config
from urcdm.imagen_compat import import_imagen
from urcdm.models import CHECKPOINT_FORMAT, build_imagen, load_cascade
from urcdm.sample_cli import fresh_cascade
from urcdm.sampling import held_dtype


def peak_host_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def write_checkpoints(config_name: str, level: int, folder: Path) -> dict[int, Path]:
    """Checkpoints of a fresh level, one unet at a time (never the whole level in memory)."""
    config = load_config(config_name)
    paths = {}
    for index in range(len(config.unets)):
        paths[index] = folder / f"l{level}u{index}.pt"
        if not paths[index].is_file():
            imagen = build_imagen(config, level, only=index, sampling=True)
            torch.save({"format": CHECKPOINT_FORMAT, "config": config.to_dict(), "method": "urcdm", "level": level,
                        "unet": index, "ema_unet": imagen.unets[index].state_dict()}, paths[index])
            del imagen
    return paths


def one_way(config_name: str, level: int, way: str, precision: str, device: str, folder: str) -> dict:
    """Runs in its own process, so that its peak host memory is its own."""
    config, dtype, device = load_config(config_name), held_dtype(precision), torch.device(device)
    import_imagen()  # its import (seconds) is not the build's
    started = time.perf_counter()
    if way == "fresh":
        imagen = fresh_cascade(config, level, "urcdm", 0, device=device, dtype=dtype)
    else:
        paths = {index: Path(folder) / f"l{level}u{index}.pt" for index in range(len(config.unets))}
        imagen = load_cascade(config, level, paths, device=device, dtype=dtype)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    parameters = sum(p.numel() for p in imagen.parameters())
    held = sum(p.numel() * p.element_size() for p in imagen.parameters())
    return {"way": way, "precision": precision, "device": str(device), "seconds": round(seconds, 2),
            "parameters": parameters, "held_gb": round(held / 2 ** 30, 2), "peak_host_gb": round(peak_host_gb(), 2),
            "peak_gpu_gb": round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2) if device.type == "cuda" else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="paper")
    parser.add_argument("--level", type=bounded_int(0, 2), default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--folder", type=Path, help="where the checkpoints are written (default: a temporary folder)")
    parser.add_argument("--one", nargs=2, metavar=("WAY", "PRECISION"), help=argparse.SUPPRESS)  # a child's job
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_way(args.config, args.level, *args.one, args.device, str(args.folder))))
        return 0
    precisions = ("fp32", "bf16")
    with tempfile.TemporaryDirectory(prefix="urcdm-bench-build-") as tmp:
        folder = args.folder or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        write_checkpoints(args.config, args.level, folder)
        written = time.perf_counter() - started
        rows = []
        for way in ("fresh", "load"):
            for precision in precisions:
                child = subprocess.run([sys.executable, __file__, "--config", args.config, "--level", str(args.level),
                                        "--device", args.device, "--folder", str(folder), "--one", way, precision],
                                       capture_output=True, text=True, check=True)
                rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    print(json.dumps({"config": args.config, "level": args.level, "device": args.device, "torch": torch.__version__,
                      "checkpoints_written_seconds": round(written, 1), "ways": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
