"""What the served bytes of a study tell about the class, attribute by attribute. Prints JSON. Not a test.

For each attribute a reader's browser can read from a served case image (total length, every segment
or chunk length, the entropy-coded length, format, tables, structure), the ROC AUC of synthetic
against real (0.5: nothing; 0 or 1: perfect separation) and the best one-rule accuracy, over the
whole study and per arm, from the files in the study's ``static/`` folder as they are served
(``study_app.preparation.parity``). By default it builds the embedded demo (``urcdm-study demo``) in each
encoding; ``--workdir`` analyses any prepared study folder instead (one prepared by an older
version, say), and ``--formats`` picks the encodings.

    python benchmarks/bench_study_parity.py [--formats raw,jpeg,png] [--workdir STUDY_FOLDER]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import yaml

from study_app.preparation.demo import build_demo
from study_app.preparation.parity import parity_report, served_attributes
from study_app.preparation.prepare import MANIFEST, STATIC, prepare
from study_app.preparation.study import load_study
from urcdm.clikit import run_script


def analyse(workdir: Path) -> dict:
    manifest = json.loads((workdir / MANIFEST).read_text())
    cases = [case for case in manifest["cases"] if not case.get("whole_slide")]
    files = {path.stem: path for path in (workdir / STATIC).iterdir() if path.is_file()}
    served = [(case, files[case["id"]].read_bytes()) for case in cases]
    report = parity_report([(case["truth"], served_attributes(data)) for case, data in served],
                           groups=[case["arm"] for case, _ in served])
    tables = {"all": report, **report.get("arms", {})}
    return {"format": manifest.get("display_format", "jpeg (older version)"), "cases": len(served),
            "bytes_per_case": sorted({len(data) for _, data in served}),
            "separating": report["separating"],
            "auc": {group: {name: a["auc"] for name, a in table["attributes"].items() if a["auc"] is not None}
                    for group, table in tables.items()},
            "accuracy": {group: {name: a["accuracy"] for name, a in table["attributes"].items()}
                         for group, table in tables.items()}}


def demo_in(image_format: str, root: Path) -> Path:
    study_file, _ = build_demo(root / image_format)
    values = yaml.safe_load(study_file.read_text())
    values["display"] |= {"format": image_format, "parity": "warn"}  # measured, not refused
    study_file.write_text(yaml.safe_dump(values, sort_keys=False))
    return prepare(load_study(study_file), progress=False).workdir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formats", default="raw,jpeg,png", help="encodings of the demo to measure")
    parser.add_argument("--workdir", type=Path, help="a prepared study folder to analyse instead of the demo")
    args = parser.parse_args()
    if args.workdir:
        results = {str(args.workdir): analyse(args.workdir)}
    else:
        with tempfile.TemporaryDirectory(prefix="urcdm-bench-parity-") as tmp:
            results = {f"demo, {name}": analyse(demo_in(name, Path(tmp))) for name in args.formats.split(",")}
    json.dump(results, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    sys.exit(run_script(main))
