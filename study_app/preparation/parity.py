"""What a reader's browser can learn about a case image besides its pixels, per class (pure: bytes in).

Every byte of a served file reaches the browser, and a script (or the developer tools) can read and
parse it. ``served_attributes`` lists what a file shows without looking at the picture: its byte
length (Content-Length), dimensions, format, colour mode, JPEG quantisation tables and chroma
subsampling, its structure (the sequence of JPEG markers or PNG chunk types), the length of every
segment or chunk (a padding comment's length among them), and the length of the entropy-coded data.

``parity_report`` puts them side by side for real and synthetic cases, for the whole study and for
each arm (a reader of one arm needs only that arm to leak), and scores each attribute with the best
trivial classifier (one threshold or one lookup table on that attribute alone) and, where it is a
number, the ROC AUC of synthetic against real. An attribute that beats the base rate separates the
classes: the study would measure file formats instead of tissue. A compressed encoding practically
always separates through its coded length; the uncompressed one (``study_app.preparation.encodings``) shows the
same value of every attribute in every file.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Iterable, Sequence

from PIL import Image, JpegImagePlugin
from scipy.stats import mannwhitneyu

FIXED = ("bytes", "width", "height", "format", "mode", "quantization", "subsampling", "structure", "coded_bytes")
POSITIVE = "synthetic"


def served_attributes(data: bytes) -> dict:
    """The attributes of one served file; segment lengths are named ``segment <i> <marker or chunk>``."""
    image = Image.open(io.BytesIO(data))
    attributes = {"bytes": len(data), "width": image.width, "height": image.height, "format": image.format,
                  "mode": image.mode, "quantization": "", "subsampling": ""}
    if image.format == "JPEG":
        attributes["quantization"] = _digest(json.dumps({k: list(v) for k, v in image.quantization.items()}))
        attributes["subsampling"] = str(JpegImagePlugin.get_sampling(image))
        segments, coded = _jpeg_segments(data)
    else:
        segments, coded = _png_chunks(data)
    structure = [name for index, (name, _) in enumerate(segments) if not index or segments[index - 1][0] != name]
    lengths = {f"segment {index} {name}": length for index, (name, length) in enumerate(segments)}
    return attributes | {"structure": _digest(" ".join(structure)), "coded_bytes": coded} | lengths


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _jpeg_segments(data: bytes) -> tuple[list[tuple[str, int]], int]:
    """(marker, length) of every segment up to the first scan, and the bytes from there to the end."""
    segments, position = [], 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        length = int.from_bytes(data[position + 2:position + 4], "big")
        segments.append((f"{marker:02X}", length))
        position += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
    return segments, len(data) - position


def _png_chunks(data: bytes) -> tuple[list[tuple[str, int]], int]:
    """(type, length) of every chunk, and the bytes of image data (IDAT) in all."""
    chunks, coded, position = [], 0, 8
    while position + 8 <= len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        kind = data[position + 4:position + 8].decode("latin-1")
        chunks.append((kind, length))
        coded += length if kind == "IDAT" else 0
        position += 12 + length
    return chunks, coded


def _numeric(values: Sequence) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def trivial_accuracy(values: Sequence, labels: Sequence[str]) -> float:
    """The best accuracy of one rule on this attribute alone: a threshold (numbers) or a lookup
    table from value to its commoner class (anything else). A one-level decision stump, written
    out because it is a dozen lines and scikit-learn is not otherwise a dependency."""
    n = len(values)
    if _numeric(values):
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


def separation_auc(values: Sequence, labels: Sequence[str]) -> float | None:
    """ROC AUC of a numeric attribute as a score for synthetic (0.5: no information; 0 or 1: it
    separates perfectly), from the Mann-Whitney U statistic; None when not numeric or one class is absent."""
    if not _numeric(values):
        return None
    positive = [v for v, label in zip(values, labels) if label == POSITIVE]
    negative = [v for v, label in zip(values, labels) if label != POSITIVE]
    if not positive or not negative:
        return None
    if len(set(values)) == 1:
        return 0.5
    return float(mannwhitneyu(positive, negative).statistic) / (len(positive) * len(negative))


def parity_report(entries: Iterable[tuple[str, dict]], groups: Sequence[str] | None = None) -> dict:
    """``entries``: (truth, served attributes) per case; ``groups``: each case's arm, when the
    study has arms to check one by one. Per attribute: what each class shows, the trivial
    classifier's accuracy, the AUC, and the base rate; ``separating`` names the attributes (with
    their arm) that beat the base rate: empty, or readers could tell the classes without looking."""
    entries = list(entries)
    report = _attribute_table(entries)
    report["separating"] = [name for name, attribute in report["attributes"].items() if attribute["separates"]]
    if groups is not None and len(set(groups)) > 1:
        report["arms"] = {}
        for arm in dict.fromkeys(groups):
            table = _attribute_table([entry for entry, group in zip(entries, groups) if group == arm])
            report["arms"][arm] = table
            report["separating"] += [f"{name} (arm {arm})" for name, attribute in table["attributes"].items()
                                     if attribute["separates"]]
    return report


def _attribute_table(entries: list[tuple[str, dict]]) -> dict:
    labels = [truth for truth, _ in entries]
    base = max(labels.count(c) for c in set(labels)) / len(labels)
    table = {"cases": len(entries), "per_class": {c: labels.count(c) for c in sorted(set(labels))}, "base_rate": base,
             "attributes": {}}
    names = list(dict.fromkeys(name for _, attributes in entries for name in attributes))
    for name in names:
        values = [attributes.get(name) for _, attributes in entries]
        accuracy = trivial_accuracy(values, labels)
        auc = separation_auc(values, labels)
        shown = {c: _summary([v for v, label in zip(values, labels) if label == c]) for c in sorted(set(labels))}
        table["attributes"][name] = {"served": True, "per_class": shown, "accuracy": round(accuracy, 4),
                                     "auc": None if auc is None else round(auc, 4), "constant": len(set(values)) == 1,
                                     "separates": accuracy > base + 1e-9}
    return table


def _summary(values: list) -> dict:
    if _numeric(values):
        return {"min": min(values), "max": max(values), "mean": round(sum(values) / len(values), 1)}
    distinct = sorted({str(v) for v in values})
    return {"distinct": distinct[:5] + ([f"... {len(distinct) - 5} more"] if len(distinct) > 5 else [])}
