"""The protocol's defaults, in one module that imports nothing: the metrics and the audit use them, and
``urcdm-eval --help`` shows them without loading torch."""

from __future__ import annotations

STANDARD_EXTRACTOR = "inception-v3"  # the FID Inception: the only space whose numbers compare with papers
METRICS = ("fd", "kid", "prc", "cmmd", "dc")

CROPS_PER_SIDE = {"pfid": 50_000, "fixed": 50_000, "whole": 10_000}  # pFID-50k, FID-10k
CROPS_PER_SCALE = 10_000  # `scales` and the memorisation audit

KID_SUBSETS = 100  # torch-fidelity's defaults
KID_SUBSET_SIZE = 1000
PRC_NEIGHBOURHOOD = 3  # Kynkäänniemi et al.
DENSITY_NEIGHBOURHOOD = 5  # Naeem et al.'s recommended k

COPY_QUANTILE = 0.99  # held-out similarity quantile above which a synthetic crop counts as a copy
AUDIT_MIN_TISSUE = 0.5
AUDIT_PAIRS = 16  # closest pairs in each montage
