"""Memorisation audit: do synthetic slides reproduce their training slides?

Modules, pure maths apart from I/O:

- ``lattice``      training crops on a dense lattice (pure)
- ``dihedral``     the 8 flips/quarter turns, and an extractor that embeds all 8 at once
- ``search``       exact chunked k-NN (cosine top-k, Euclidean nearest) on CPU/CUDA, optional faiss (pure maths)
- ``calibration``  copy threshold from held-out slides, copy rate, summaries, authenticity (pure maths)
- ``crop_sets``    which crops: training lattices (tissue cells), random synthetic and held-out crops
- ``verification`` is a crop a copy? correlation search (coarse, then fine, high-passed) in its candidates' slides
- ``scale_audit``  one scale: features streamed from the pyramids, searched, verified, calibrated
- ``report``       JSON-able report, neighbours CSV, montage of the closest pairs
- ``montage``      drawing the pairs
- ``planting``     validation: synthetic slides with planted copies of training regions
- ``audit``        the entry point, ``audit(...)`` (files + report) and ``run_audit(...)`` (arrays)
"""

from evaluation.memorization.audit import REPORT_NAME, audit, run_audit

__all__ = ["REPORT_NAME", "audit", "run_audit"]
