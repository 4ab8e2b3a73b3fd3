"""20 simulated concurrent readers answering through the study's answer store (SQLite, WAL,
synchronous=FULL). Streamlit serves sessions as threads of one process, so readers are threads
here. Prints JSON: answers/s, write latency percentiles, answers lost (must be 0). Not a test.

    python benchmarks/bench_store.py [--readers 20] [--answers 200]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from study_app.store.database import AnswerStore
from urcdm.clikit import positive_int, run_script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", type=positive_int, default=20)
    parser.add_argument("--answers", type=positive_int, default=200, help="answers per reader")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="urcdm-bench-store-") as tmp:
        path = Path(tmp) / "answers.sqlite"
        store = AnswerStore(path)
        latencies: list[float] = []
        lock = threading.Lock()

        def reader(index: int) -> None:
            mine = []
            for case in range(args.answers):
                now = time.time()
                started = time.perf_counter()
                store.record(f"r{index}", f"c{case}", "URCDM", "real", "synthetic", 3, now - 5, now, f"img{case}")
                mine.append(time.perf_counter() - started)
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(args.readers)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        expected = args.readers * args.answers
        stored = len(AnswerStore(path).all_answers())
        ms = np.array(latencies) * 1000
        print(json.dumps({
            "readers": args.readers, "answers_per_reader": args.answers, "seconds": round(seconds, 2),
            "answers_per_s": round(expected / seconds, 1),
            "latency_ms": {"p50": round(float(np.percentile(ms, 50)), 2), "p95": round(float(np.percentile(ms, 95)), 2),
                           "max": round(float(ms.max()), 2)},
            "answers_lost": expected - stored, "journal": "wal", "synchronous": "full",
        }, indent=2))


if __name__ == "__main__":
    sys.exit(run_script(main))
