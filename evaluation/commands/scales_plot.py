"""The metrics-against-magnification figure: one panel per metric, a line per generator, and the
real-vs-real sampling-noise floor as a grey band, every point with its spread over the splits."""

from __future__ import annotations

from pathlib import Path

from evaluation.scales import REAL_VS_REAL


def plot_scales(rows: list[dict], scales: list[str], extractor: str, paths: list[Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: a cluster node has no display
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(row["metric"] for row in rows))
    sets = list(dict.fromkeys(row["set"] for row in rows if row["set"] != REAL_VS_REAL))
    fig, axes = plt.subplots(1, len(metrics), figsize=(1.2 + 4.4 * len(metrics), 3.8), squeeze=False)
    positions = range(len(scales))
    for ax, metric in zip(axes[0], metrics):
        def series(name):
            chosen = {row["scale"]: row for row in rows if row["metric"] == metric and row["set"] == name}
            return [chosen[s]["mean"] for s in scales], [chosen[s]["std"] for s in scales]

        floor, floor_spread = series(REAL_VS_REAL)
        ax.fill_between(positions, [m - s for m, s in zip(floor, floor_spread)], [m + s for m, s in zip(floor, floor_spread)],
                        color="0.85", label="_band")
        ax.errorbar(positions, floor, yerr=floor_spread, color="0.45", marker="s", linestyle="--", capsize=3,
                    label="real vs real (noise floor)")
        for name in sets:
            means, spreads = series(name)
            ax.errorbar(positions, means, yerr=spreads, marker="o", capsize=3, label=name)
        ax.set_xticks(list(positions), [s.replace(" (", "\n(") for s in scales], fontsize=8)
        ax.set_xlabel("magnification (coarse to fine)" if len(scales) > 1 else "")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} against magnification", fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(f"features: {extractor}; bars: ±1 s.d. over real halvings", fontsize=8, y=0.995)
    fig.tight_layout()
    for path in paths:
        fig.savefig(path, dpi=120)
    plt.close(fig)
