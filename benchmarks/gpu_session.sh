#!/usr/bin/env bash
# One run on a bare GPU node (PyTorch installed, no internet) from this source tree: everything
# bench_gpu.py measures, the 24 GB cap included, JSON into $OUT (default: build/gpu).
#
# Prepare here, then carry .whl/ to the node (it is git-ignored; about 48 MB):
#   ../shared/gpu/fetch_wheels.sh .whl/wheels 3.12          # the wheels the node lacks (README of gpu/)
#   benchmarks/gpu_session.sh --pack                         # -> .whl/site.tar.xz (xz: 38 MB, the wheels 56)
#   mkdir -p .whl/slides && cp ../shared/data/slides/{tcga-cr-7395-01a-01-ts1.svs,kidney-48-5.tif,cmu-1-small-region.svs} .whl/slides/
# On the node:
#   bash benchmarks/gpu_session.sh [extra bench_gpu.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
carry=${CARRY:-.whl}  # another folder for a rehearsal with wheels for this machine's Python

if [[ "${1:-}" == "--pack" ]]; then
  # Wheels unpacked (what pip --no-deps --target does for these, none has a .data folder), then xz:
  # the carried tree is capped at 64 MiB and the zipped wheels with the slides would not fit.
  site=$(mktemp -d)
  for wheel in "$carry"/wheels/*.whl; do python3 -m zipfile -e "$wheel" "$site"; done
  tar -C "$site" -cJf "$carry/site.tar.xz" .
  rm -rf "$site"
  ls -la "$carry/site.tar.xz"
  exit 0
fi

out=${OUT:-build/gpu}
mkdir -p "$out"
site=$(mktemp -d)
tar -C "$site" -xJf "$carry/site.tar.xz"
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
# Seconds to learn that a module is missing, not minutes into the run.
python - <<'EOF' 2>&1 | tee "$out/imports.txt"
import importlib
missing = []
# imagen-pytorch as the project imports it (urcdm.imagen_compat): a bare import asks the model hub for
# T5's config and, offline, fails after half a minute of retries.
for name in ("torch", "urcdm.models", "openslide", "zarr", "tifffile", "imagecodecs", "diffusers",
             "torch_fidelity", "yaml", "scipy", "PIL", "urcdm.cli", "evaluation.cli"):
    try:
        importlib.import_module(name)
    except Exception as exc:  # any failure to import is what this check reports
        missing.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
print("\n".join(missing) or "all imports ok")
raise SystemExit(1 if missing else 0)
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.csv" || true
nproc > "$out/cores.txt"
# --out rewrites the report after every part: cut short by LIMIT (seconds), the run keeps what it measured.
status=0
timeout "${LIMIT:-540}" python benchmarks/bench_gpu.py --memory-cap-gb 24 \
  --level0 "$carry/slides/tcga-cr-7395-01a-01-ts1.svs" --slides "$carry/slides" --out "$out/bench_gpu.json" --overwrite "$@" \
  > /dev/null 2> "$out/bench_gpu.err" || status=$?
grep -o 'bench_gpu: .*' "$out/bench_gpu.err" || tail -n 20 "$out/bench_gpu.err"
exit $status
