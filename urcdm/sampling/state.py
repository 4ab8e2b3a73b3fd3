"""What a sampling run has finished, kept on disk so that ``kill -9`` loses at most one batch.

    .SLIDE.tiff.work/
      run.json            the settings that decide the pixels; a rerun must match them to resume
      level0.png          the level-0 image
      level{L}.canvas     each level >= 1 on a disk canvas
      journal             one line per finished batch: "level index index ...", its patches' grid indices
      pending.npz         a batch computed but perhaps not fully written to its canvas

The journal names patches, not batches, and a patch's pixels depend on its own seed only, so a rerun
may cut the remaining work into other batches (another ``--batch-size``, another number of ranks).

A batch is written ahead (``pending.npz``), then to its canvas, then journaled, then the pending file
goes. A rerun re-applies a pending batch (overwriting is idempotent) and skips journaled ones, so an
interrupted slide finishes pixel-identical to an uninterrupted one. Writes go through the page cache,
which outlives a killed process; fsync comes at the end of each level (``run.json`` and the level-0
image at once), because syncing gigabytes per batch made a paper slide six times slower. A power cut
mid-level can therefore cost that level's unsynced batches, never a mixed slide: delete the work
folder and rerun.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from urcdm.errors import UserError

Finished = tuple[int, int]  # (level, patch index in the level's grid)
NOISE = "per-patch"  # run.json's "noise": older versions seeded a batch from its first patch


def _write_atomically(path: Path, write, sync: bool = True) -> None:
    temp = path.with_name(f".{path.name}.partial")
    with open(temp, "wb") as handle:
        write(handle)
        handle.flush()
        if sync:
            os.fsync(handle.fileno())
    os.replace(temp, path)


class SampleState:
    def __init__(self, workdir: Path):
        self.workdir = workdir

    @staticmethod
    def workdir_for(out: Path) -> Path:
        return out.with_name(f".{out.name}.work")

    @classmethod
    def open(cls, out: Path, settings: dict) -> "SampleState":
        """The work folder for ``out``: resumed when its settings match, new otherwise."""
        workdir = cls.workdir_for(out)
        run = workdir / "run.json"
        if run.exists():
            saved, now = json.loads(run.read_text()), json.loads(json.dumps(settings))
            if saved.get("noise") != now.get("noise"):
                raise UserError(f"{workdir}: an interrupted run from an older version, whose pixels depended on its "
                                f"batch size; finish it with that version, or delete the folder to start afresh")
            if saved != now:
                differing = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
                # Name what changed and how: "precision fp32, now bf16". The config is known only by its
                # digest, which --steps changes too, so it is named only when the steps do not explain it.
                named = [f"{key} {_shown(saved.get(key))}, now {_shown(now.get(key))}" for key in differing
                         if key != "config"]
                if "config" in differing and "steps" not in differing:
                    named.insert(0, "the config file's settings")
                raise UserError(f"{workdir}: an interrupted run with other settings ({'; '.join(named)}); rerun it "
                                f"with the same options to finish it, or delete the folder to start afresh")
        else:
            workdir.mkdir(parents=True, exist_ok=True)
            _write_atomically(run, lambda h: h.write(json.dumps(settings, indent=1).encode()))
        return cls(workdir)

    @property
    def resumed(self) -> bool:
        return (self.workdir / "journal").exists() or (self.workdir / "level0.png").exists()

    def canvas_path(self, level: int) -> Path:
        return self.workdir / f"level{level}.canvas"

    def level0_path(self) -> Path:
        return self.workdir / "level0.png"

    def finished(self) -> set[Finished]:
        journal = self.workdir / "journal"
        if not journal.exists():
            return set()
        done = set()
        # Only whole lines: a crash mid-write leaves a torn last line ("2 5 1" of "2 5 17"), not finished;
        # its batch is still in pending.npz and is journaled again when that is re-applied.
        for line in journal.read_text().split("\n")[:-1]:
            level, *indices = (int(p) for p in line.split())
            done.update((level, index) for index in indices)
        return done

    def write_pending(self, level: int, indices: list[int], boxes: list[tuple[int, int]], blocks: np.ndarray) -> None:
        _write_atomically(self.workdir / "pending.npz",
                          lambda h: np.savez(h, level=level, indices=np.array(indices), boxes=np.array(boxes),
                                             blocks=blocks), sync=False)

    def pending(self) -> tuple[int, list[int], list[tuple[int, int]], np.ndarray] | None:
        """(level, patch indices, boxes, blocks) of a batch that was being written when the run died."""
        path = self.workdir / "pending.npz"
        if not path.exists():
            return None
        with np.load(path) as data:
            return (int(data["level"]), [int(i) for i in data["indices"]],
                    [tuple(int(v) for v in b) for b in data["boxes"]], data["blocks"])

    def journal(self, level: int, indices: list[int]) -> None:
        with open(self.workdir / "journal", "a") as handle:
            handle.write(" ".join(map(str, (level, *indices))) + "\n")
        (self.workdir / "pending.npz").unlink(missing_ok=True)

    def sync(self) -> None:
        """Make the journal durable (after the level's canvas has been)."""
        journal = self.workdir / "journal"
        if journal.exists():
            with open(journal, "rb+") as handle:
                os.fsync(handle.fileno())

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def _shown(value) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)
