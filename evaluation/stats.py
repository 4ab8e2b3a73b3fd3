"""Features -> statistics, saved with everything needed to trust and reproduce them.

A ``.npz`` holds the mean and covariance (float64), N, optionally the features themselves (KID and
precision/recall need them), the crop list, and a JSON header: crop protocol, extractor id, input
fingerprint, image list and seed. Statistics are only ever compared under the same protocol and
extractor; anything else is refused with the differences spelled out.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evaluation.crops import SAMPLING, CropProtocol
from urcdm import __version__
from urcdm.errors import UserError
from urcdm.pyramid import atomic_output

FORMAT = "urcdm-eval-stats/1"


@dataclass
class FeatureStats:
    mean: np.ndarray
    cov: np.ndarray
    n: int
    protocol: CropProtocol
    extractor: str
    fingerprint: str
    seed: int
    images: list[str]
    crops: np.ndarray
    features: np.ndarray | None = None
    skipped: list[str] = field(default_factory=list)
    source: str = ""  # where these came from, for messages

    @classmethod
    def from_features(cls, features: np.ndarray, **meta) -> "FeatureStats":
        if features.ndim != 2 or features.shape[0] < 2:
            raise UserError(f"need at least 2 feature vectors for a covariance, got {features.shape[0]}")
        bad = ~np.isfinite(features).all(axis=1)
        if bad.any():
            raise UserError(f"the extractor produced NaN/inf features for {int(bad.sum())} of {len(features)} crops "
                            f"(first: crop {int(np.argmax(bad))})")
        # The estimator torch-fidelity and clean-fid use (np.cov, N - 1), with the mean in float64 too.
        # anyres-gan (StyleGAN's metric code) divides by N: its covariances are (N - 1) / N of ours,
        # a relative difference of 2e-5 at 50k crops (see the README's Evaluation section).
        mean = features.mean(axis=0, dtype=np.float64)
        cov = np.atleast_2d(np.cov(features, rowvar=False))
        return cls(mean=mean, cov=cov, n=len(features), features=features, **meta)

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def header(self) -> dict:
        return {
            "format": FORMAT, "n": self.n, "dim": self.dim, "protocol_name": self.protocol.name,
            "protocol": self.protocol.as_dict(),
            "extractor": self.extractor, "fingerprint": self.fingerprint, "seed": self.seed,
            "images": self.images, "skipped": self.skipped, "has_features": self.features is not None,
            "urcdm_version": __version__,
        }

    def save(self, path: Path, overwrite: bool = False, keep_features: bool = True) -> None:
        path = Path(path)
        if path.suffix != ".npz":
            raise UserError(f"{path}: statistics files end in .npz")
        arrays = {"mean": self.mean, "cov": self.cov, "crops": self.crops,
                  "header": np.array(json.dumps(self.header() | {"has_features": keep_features and self.features is not None}))}
        if keep_features and self.features is not None:
            arrays["features"] = self.features.astype(np.float32)
        with atomic_output(path, overwrite) as temp:
            with open(temp, "wb") as handle:
                np.savez(handle, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "FeatureStats":
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: no such statistics file")
        if not zipfile.is_zipfile(path):
            raise UserError(f"{path}: not a urcdm-eval statistics file (not an .npz archive)")
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                if header.get("format") != FORMAT:
                    raise ValueError(f"format {header.get('format')!r}")
                features = data["features"] if "features" in data.files else None
                return cls(mean=data["mean"], cov=data["cov"], n=int(header["n"]),
                           protocol=CropProtocol.from_dict(header["protocol"]), extractor=header["extractor"],
                           fingerprint=header["fingerprint"], seed=int(header["seed"]), images=list(header["images"]),
                           crops=data["crops"], features=features, skipped=list(header.get("skipped", [])), source=str(path))
        except UserError:
            raise
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            raise UserError(f"{path}: not a urcdm-eval statistics file ({str(exc).splitlines()[0]})") from None

    def check_comparable(self, protocol: CropProtocol, extractor: str) -> None:
        """Refuse statistics computed under another protocol or extractor than this run's."""
        name = self.source or "statistics"
        if self.protocol.sampling != protocol.sampling:
            raise UserError(f"{name}: made by an earlier urcdm-eval under the crop law {self.protocol.sampling!r} (its pFIDs "
                            f"were 1.6-2.6x below anyres-gan's); this version samples as {SAMPLING} (resized-image side "
                            f"uniform in [min, max], images in balanced turns, whole images as clean-fid resizes); "
                            f"recompute the statistics")
        # The extractor first: another network has another input size, which is not the user's crop options.
        if self.extractor != extractor:
            raise UserError(f"{name}: computed with extractor {self.extractor}, this run uses {extractor}; pass the same "
                            f"--extractor or recompute the statistics")
        differences = protocol.differences(self.protocol)
        if differences:
            which = (f"crop protocol {self.protocol.name} differs from this run's {protocol.name}"
                     if self.protocol.name != protocol.name else f"crop protocol {protocol.name} has other settings")
            raise UserError(f"{name}: {which} ({'; '.join(differences)}; stats vs run); "
                            f"pass the same crop options or recompute the statistics")

    def subset(self, rows: np.ndarray) -> "FeatureStats":
        """The statistics of some of these crops (a real-vs-real split), recomputed from their features."""
        features = self.require_features("a split of one side")
        return FeatureStats.from_features(features[rows], protocol=self.protocol, extractor=self.extractor,
                                          fingerprint=self.fingerprint, seed=self.seed, images=self.images,
                                          crops=self.crops[rows], skipped=self.skipped, source=self.source)

    def require_features(self, metric: str) -> np.ndarray:
        if self.features is None:
            raise UserError(f"{self.source or 'statistics'}: holds only mean and covariance, but {metric} needs the "
                            f"features; recompute with `urcdm-eval stats` without --no-features")
        return self.features
