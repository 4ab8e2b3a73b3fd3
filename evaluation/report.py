"""Numbers -> what the user reads: one result dict, printed as JSON or as a table."""

from __future__ import annotations

from evaluation.stats import FeatureStats
from urcdm.clikit import print_json, print_table

NOT_COMPARABLE = ("not the standard FID Inception: numbers are comparable between runs with this extractor "
                  "but not with published FIDs")


def side_summary(stats: FeatureStats) -> dict:
    return {"source": stats.source, "n": stats.n, "images": len(stats.images), "skipped": len(stats.skipped),
            "fingerprint": stats.fingerprint, "seed": stats.seed}


SETTING_KEYS = ("prc_k", "dc_k", "cmmd_estimator")


def result_dict(metrics: dict, real: FeatureStats, fake: FeatureStats, extractor_id: str, standard: bool, seconds: float,
                space: str = "inception") -> dict:
    return {
        **metrics,
        "metrics": list(metrics),
        "space": space,
        "n_real": real.n,
        "n_fake": fake.n,
        "protocol_name": real.protocol.name,
        "protocol": real.protocol.as_dict(),
        "protocol_description": real.protocol.describe(),
        "extractor": extractor_id,
        "standard_extractor": standard,
        "real": side_summary(real),
        "fake": side_summary(fake),
        "seconds": round(seconds, 2),
    }


def print_result(result: dict, as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    rows = []
    for key in result["metrics"]:
        value = result[key]
        if key in SETTING_KEYS or key.endswith(("_std", "_subset_size")):
            continue
        if f"{key}_std" in result:
            rows.append((key, f"{value:.6f} ± {result[key + '_std']:.6f} (subsets of {result[key + '_subset_size']})"))
        else:
            rows.append((key, f"{value:.4f}"))
    rows += [
        ("n real / fake", f"{result['n_real']} / {result['n_fake']}"),
        ("protocol", result["protocol_description"]),
        ("extractor", result["extractor"] + ("" if result["standard_extractor"] else "  (non-standard)")),
        ("time", f"{result['seconds']:.1f} s"),
    ]
    print_table(rows)
