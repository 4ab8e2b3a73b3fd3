"""What a reader's browser can learn about a case image besides its pixels, per class (pure: bytes in).

``served_attributes`` lists what every served file shows without looking at the picture: its byte
length (Content-Length), dimensions, format, colour mode, JPEG quantisation tables and chroma
subsampling, and its structure (the sequence of JPEG markers or PNG chunk types). ``parity_report``
puts them side by side for real and synthetic cases and scores each with the best trivial classifier
(one threshold or one lookup table on that attribute alone): every served attribute must stay at the
base rate, or the study measures file formats instead of tissue.

Two properties are reported but not served as such: the entropy-coded data's length and, as its
complement, the padding. They follow from the picture (a blur compresses better) and can be read
only by parsing the file; the report shows how far they would separate the classes.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Iterable, Sequence

from PIL import Image, JpegImagePlugin

SERVED = ("bytes", "width", "height", "format", "mode", "quantization", "subsampling", "structure")
CONTENT = ("coded_bytes",)


def served_attributes(data: bytes) -> dict:
    image = Image.open(io.BytesIO(data))
    attributes = {"bytes": len(data), "width": image.width, "height": image.height, "format": image.format,
                  "mode": image.mode, "quantization": "", "subsampling": ""}
    if image.format == "JPEG":
        attributes["quantization"] = _digest(json.dumps({k: list(v) for k, v in image.quantization.items()}))
        attributes["subsampling"] = str(JpegImagePlugin.get_sampling(image))
        structure, coded = _jpeg_structure(data)
    else:
        structure, coded = _png_structure(data)
    return attributes | {"structure": _digest(" ".join(structure)), "coded_bytes": coded}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _jpeg_structure(data: bytes) -> tuple[list[str], int]:
    """Marker names up to the first scan, and the bytes from the first scan to the end."""
    markers, position = [], 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        markers.append(f"{marker:02X}")
        length = int.from_bytes(data[position + 2:position + 4], "big")
        position += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
    return markers, len(data) - position


def _png_structure(data: bytes) -> tuple[list[str], int]:
    chunks, coded, position = [], 0, 8
    while position + 8 <= len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        kind = data[position + 4:position + 8].decode("latin-1")
        if not chunks or chunks[-1] != kind:
            chunks.append(kind)  # consecutive IDATs are one entry: their count follows the content
        coded += length if kind == "IDAT" else 0
        position += 12 + length
    return chunks, coded


def trivial_accuracy(values: Sequence, labels: Sequence[str]) -> float:
    """The best accuracy of one rule on this attribute alone: a threshold (numbers) or a lookup
    table from value to its commoner class (anything else). A one-level decision stump, written
    out because it is a dozen lines and scikit-learn is not otherwise a dependency."""
    n = len(values)
    if all(isinstance(v, (int, float)) for v in values):
        pairs = sorted(zip(values, labels))
        classes = sorted(set(labels))
        best = max(labels.count(c) for c in classes) / n
        for positive in classes:
            below_pos = below_neg = 0
            total_pos = labels.count(positive)
            for index, (value, label) in enumerate(pairs):
                below_pos += label == positive
                below_neg += label != positive
                if index + 1 < n and pairs[index + 1][0] == value:
                    continue  # a threshold cannot split equal values
                # predict `positive` at or below this value, the other class above (and the reverse)
                above_neg = (n - total_pos) - below_neg
                best = max(best, (below_pos + above_neg) / n, (below_neg + (total_pos - below_pos)) / n)
        return best
    counts: dict = {}
    for value, label in zip(values, labels):
        counts.setdefault(value, {}).setdefault(label, 0)
        counts[value][label] += 1
    return sum(max(per_class.values()) for per_class in counts.values()) / n


def parity_report(entries: Iterable[tuple[str, dict]]) -> dict:
    """``entries``: (truth, served attributes) per case. Per attribute: what each class shows, the
    trivial classifier's accuracy and the base rate; ``separating`` names the served attributes
    that beat the base rate (empty, or the study is compromised)."""
    entries = list(entries)
    labels = [truth for truth, _ in entries]
    base = max(labels.count(c) for c in set(labels)) / len(labels)
    report = {"cases": len(entries), "per_class": {c: labels.count(c) for c in sorted(set(labels))},
              "base_rate": base, "attributes": {}}
    for name in SERVED + CONTENT:
        values = [attributes[name] for _, attributes in entries]
        accuracy = trivial_accuracy(values, labels)
        shown = {c: _summary([v for v, label in zip(values, labels) if label == c]) for c in sorted(set(labels))}
        report["attributes"][name] = {"served": name in SERVED, "per_class": shown, "accuracy": round(accuracy, 4),
                                      "separates": accuracy > base + 1e-9}
    report["separating"] = [n for n, a in report["attributes"].items() if a["served"] and a["separates"]]
    return report


def _summary(values: list) -> dict:
    if all(isinstance(v, (int, float)) for v in values):
        return {"min": min(values), "max": max(values), "mean": round(sum(values) / len(values), 1)}
    distinct = sorted({str(v) for v in values})
    return {"distinct": distinct[:5] + ([f"... {len(distinct) - 5} more"] if len(distinct) > 5 else [])}
