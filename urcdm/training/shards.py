"""Training pairs written once into zarr shards (``urcdm prepare-pairs``) and read back by training.

At paper scale a level-2 pair decodes a 6500^2 context window and a level-1 pair a 40000^2 one: a
loader that reads slides directly makes a few pairs per second, and a GPU training the 1024-px unet
waits on it. Written once, the windows come back at disk speed.

Why zarr and not WebDataset tars: training draws the pairs of step s at random positions
(``windows.batch_codes``), so a resumed run reads exactly the batches an uninterrupted one did.
Reading those from tars, which stream in order, would need a different (shuffle-buffer) batch law;
zarr reads any position at once. Why lossless (Blosc-LZ4, no shuffle): the pairs must equal the direct
reader's bit for bit, and JPEG would re-compress what the scanner already compressed; LZ4 decodes
3-4x faster than zstd here for about 10 % more disk (benchmarks/RESULTS.md).

Layout of one level's folder (``pairs_folder``): a zarr v3 group with ``positions`` (N, 3) int64
(slide, x, y), ``targets`` and, for levels with context, ``contexts`` (N, 3, P, P) uint8 at
``patch_px`` (channel planes: the layout the model takes, so reading makes one plain copy), one
chunk per window and ``SHARD`` windows per shard file, and ``written`` (one flag per shard). The
windows are stored untransformed; the dihedral transform is applied when read (``pairs.Pairs.pair``).
Attributes record the geometry, the slide list and its digest.

Writing streams: DataLoader workers read the windows, one shard's worth is held at a time, then
written and flagged. An interrupted run resumes at the first unflagged shard.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import zarr
from torch.utils.data import DataLoader
from tqdm import tqdm
from zarr.codecs import BloscCodec

from urcdm.config import PRESETS
from urcdm.errors import OutputExistsError, UserError
from urcdm.interrupts import ignore_interrupts
from urcdm.training.index import build_index, data_digest, list_slides, slides_mpp
from urcdm.training.pairs import LevelWindows, Pairs, SlidePairs

FORMAT = "urcdm-pairs/1"
SHARD = 16  # windows per shard file: 100 MB of buffer at paper scale, and 16x fewer files than chunks


MPP = "slides_mpp"  # the slides' microns per pixel, kept beside the identity of the pairs


def pairs_folder(root: Path, method: str, level: int) -> Path:
    return Path(root) / (f"level{level}.zarr" if method == "urcdm" else f"{method}-level{level}.zarr")


def _identity(windows: LevelWindows, white_threshold: float, method: str, level: int, slides: Sequence[str], digest: str) -> dict:
    return {"format": FORMAT, "method": method, "level": level, "windows": asdict(windows),
            "white_threshold": white_threshold, "slides": [Path(p).name for p in slides], "data_digest": digest}


def _describe_mismatch(found: dict, expected: dict) -> str:
    return ", ".join(f"{key} {found.get(key)!r} (expected {expected[key]!r})"
                     for key in expected if key != "slides" and _normalised(found.get(key)) != _normalised(expected[key]))


def _normalised(value):
    """JSON attributes come back with lists where we wrote tuples."""
    if isinstance(value, dict):
        return {k: _normalised(v) for k, v in value.items()}
    return list(value) if isinstance(value, tuple) else value


def _create(folder: Path, identity: dict, positions: np.ndarray, windows: LevelWindows) -> zarr.Group:
    group = zarr.open_group(folder, mode="w-")
    group.attrs.update(identity)
    group.create_array("positions", data=positions)
    p = windows.patch_px
    image = dict(shape=(len(positions), 3, p, p), dtype="uint8", chunks=(1, 3, p, p), shards=(SHARD, 3, p, p),
                 compressors=[BloscCodec(cname="lz4", clevel=5, shuffle="noshuffle")])
    group.create_array("targets", **image)
    if windows.context_span is not None:
        group.create_array("contexts", **image)
    group.create_array("written", shape=(-(-len(positions) // SHARD),), dtype="bool", fill_value=False)
    return group


def _open_for_writing(folder: Path, identity: dict, positions: np.ndarray, windows: LevelWindows) -> zarr.Group:
    """A new group, or the one an interrupted run left, checked to hold these very pairs."""
    if not folder.exists():
        return _create(folder, identity, positions, windows)
    try:
        group = zarr.open_group(folder, mode="r+")
        found = dict(group.attrs)
    except Exception:  # noqa: BLE001 - whatever is there, it is not our shards, and it is not ours to delete
        raise OutputExistsError(f"{folder}: exists and is not a pairs folder; choose another --out") from None
    found.pop(MPP, None)  # not part of what the pairs are (and absent from folders of earlier versions)
    if found.get("format") != FORMAT or _normalised(found) != _normalised(identity):
        differences = _describe_mismatch(found, identity) or "another slide list"
        raise OutputExistsError(f"{folder}: holds other pairs ({differences}); choose another --out")
    if not np.array_equal(group["positions"][:], positions):
        raise OutputExistsError(f"{folder}: holds other windows of these slides (the tissue index changed); choose another --out")
    return group


def prepare_pairs(config, level: int, method: str, data: Path, out: Path, workers: int = 0, progress: bool = True) -> dict:
    """Write (or finish writing) one level's pairs into ``pairs_folder(out, method, level)``."""
    if Path(out).exists() and not Path(out).is_dir():
        raise OutputExistsError(f"{out}: exists and is not a folder; --out names the folder the pairs go into")
    windows = LevelWindows.of(config, level, method)
    paths, positions = build_index(list_slides(data), windows.span, config.white_threshold)
    identity = _identity(windows, config.white_threshold, method, level, paths, data_digest(paths))
    folder = pairs_folder(out, method, level)
    folder.parent.mkdir(parents=True, exist_ok=True)
    group = _open_for_writing(folder, identity, positions, windows)
    group.attrs[MPP] = slides_mpp(paths)
    flags = group["written"]
    written = flags[:]
    todo = [shard for shard in range(len(written)) if not written[shard]]
    rows = [row for shard in todo for row in range(shard * SHARD, min((shard + 1) * SHARD, len(positions)))]

    source = SlidePairs(paths, positions, windows)
    # One window pair per item, in order; workers read ahead by at most 2 items each (bounded memory).
    loader = DataLoader(_Rows(source, rows), batch_size=None, num_workers=workers, collate_fn=_as_is,
                        worker_init_fn=ignore_interrupts)
    targets, contexts = group["targets"], (group["contexts"] if windows.context_span is not None else None)
    started, block, block_start = time.perf_counter(), [], None
    bar = tqdm(total=len(positions), initial=len(positions) - len(rows), desc=f"pairs level {level}", unit="pair",
               disable=not progress)
    for row, (target, context) in zip(rows, loader):
        if not block:
            block_start = row
        block.append((target, context))
        if row + 1 == len(positions) or (row + 1) % SHARD == 0:
            targets[block_start:row + 1] = np.stack([t.transpose(2, 0, 1) for t, _ in block])
            if contexts is not None:
                contexts[block_start:row + 1] = np.stack([c.transpose(2, 0, 1) for _, c in block])
            flags[block_start // SHARD] = True  # only after the shard's data is on disk
            block = []
        bar.update(1)
    bar.close()
    seconds = time.perf_counter() - started
    return {"level": level, "method": method, "folder": str(folder), "pairs": len(positions), "written_now": len(rows),
            "shards": len(written), "slides": len(paths), "seconds": round(seconds, 2),
            "pairs_per_s": round(len(rows) / seconds, 2) if rows and seconds > 0 else None,
            "bytes": sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())}


class _Rows:
    """The untransformed windows of the given rows, as a map-style dataset for the DataLoader."""

    def __init__(self, source: SlidePairs, rows: list[int]):
        self.source, self.rows = source, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        return self.source.windows_at(self.rows[i])


def _as_is(item):
    return item


class ShardPairs(Pairs):
    """Pairs read from a folder ``prepare_pairs`` wrote; the same (target, context) per code as
    ``SlidePairs`` over the same slides. The group is opened lazily, once per DataLoader worker."""

    def __init__(self, folder: Path, rows: np.ndarray | None = None):
        self.folder = Path(folder)
        group = zarr.open_group(self.folder, mode="r")
        self.attrs = dict(group.attrs)
        all_positions = group["positions"][:]
        self.rows = np.arange(len(all_positions)) if rows is None else np.asarray(rows)
        self.positions = all_positions[self.rows]
        self.has_context = "contexts" in group
        self._arrays: tuple | None = None

    @classmethod
    def open(cls, root: Path, config, level: int, method: str) -> "ShardPairs":
        """The level's pairs under ``root``, checked to be complete and made for this geometry."""
        folder = pairs_folder(root, method, level)
        if Path(root).is_file():
            raise UserError(f"{root}: is a file; --pairs names the folder `urcdm prepare-pairs --out` wrote")
        if not (folder / "zarr.json").exists():
            preset = config.name if config.name in PRESETS else "CONFIG"  # a YAML's name is not a --config value
            method_option = "" if method == "urcdm" else f" --method {method}"
            raise UserError(f"{folder}: no pairs for level {level} here; make them with `urcdm prepare-pairs "
                            f"--config {preset}{method_option} --level {level} --data SLIDES --out {root}`")
        try:
            group = zarr.open_group(folder, mode="r")
            attrs, written = dict(group.attrs), group["written"][:]
        except Exception as exc:  # noqa: BLE001 - a damaged folder is the user's to see, in one line
            raise UserError(f"{folder}: not a readable pairs folder ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
        expected = {"format": FORMAT, "method": method, "level": level,
                    "windows": asdict(LevelWindows.of(config, level, method)), "white_threshold": config.white_threshold}
        if any(_normalised(attrs.get(k)) != _normalised(v) for k, v in expected.items()):
            raise UserError(f"{folder}: made for another geometry: {_describe_mismatch(attrs, expected)}")
        if not written.all():
            raise UserError(f"{folder}: incomplete ({int(written.sum())} of {len(written)} shards); run the same "
                            "`urcdm prepare-pairs` again to finish it")
        return cls(folder)

    @property
    def slides(self) -> list[str]:
        return list(self.attrs["slides"])

    @property
    def data_digest(self) -> str:
        return self.attrs["data_digest"]

    @property
    def mpp(self) -> float | None:
        return self.attrs.get(MPP)  # None for pairs prepared before it was recorded

    def subset(self, keep: np.ndarray) -> "ShardPairs":
        return ShardPairs(self.folder, self.rows[keep])

    def __getstate__(self):
        return {**self.__dict__, "_arrays": None}  # each worker opens its own

    def windows_at(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        if self._arrays is None:  # opened once: every lookup by name re-reads the array's metadata
            group = zarr.open_group(self.folder, mode="r")
            self._arrays = (group["targets"], group["contexts"] if self.has_context else None)
        targets, contexts = self._arrays
        row = int(self.rows[index])
        as_stored = lambda planes: planes.transpose(1, 2, 0)  # noqa: E731 - HWC as a view of the CHW planes
        return as_stored(targets[row]), (as_stored(contexts[row]) if contexts is not None else None)
