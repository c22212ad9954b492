"""`s2 node report --plot`: energy per inference against activity and weight sparsity (matplotlib, imported
here only), chip, dense chip and GPU, the paper's point marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from s2node.errors import S2NodeError


def plot_report(report: dict[str, Any], path: str | Path) -> Path:
    """Two panels from report["sweeps"]; the format follows the file's suffix (.png or .svg)."""
    p = Path(path)
    if p.suffix.lower() not in (".png", ".svg"):
        raise S2NodeError(f"{p}: the plot must be a .png or .svg file")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise S2NodeError("--plot needs matplotlib (pip install matplotlib)") from e
    s, paper = report["sweeps"], report["paper"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, key, what in ((axes[0], "activity", "activity sparsity"), (axes[1], "weights", "weight sparsity")):
        x = s["activity_sparsity" if key == "activity" else "weight_sparsity"]
        ax.semilogy(x, s[f"chip_vs_{key}"], label="chip (event-driven)")
        ax.semilogy(x, s[f"dense_vs_{key}"], "--", label="chip, dense")
        ax.semilogy(x, [s["gpu_j"]] * len(x), ":", label="GPU (batch 1, anchored on the A100)")
        ax.axvline(s["at"]["activity_sparsity" if key == "activity" else "weight_sparsity"], color="grey", lw=0.5)
        ax.plot([paper[f"{'activity' if key == 'activity' else 'weight'}_sparsity"]] * 2,
                [paper["chip"]["energy_j"], paper["gpu"]["energy_j"]], "k*", ms=10,
                label="paper, Table II (chip, A100)")
        ax.set_xlabel(what)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("energy per inference (J)")
    axes[0].legend(fontsize=7)
    name = report.get("preset") or report.get("model", "model")
    fig.suptitle(f"{name}: {report['numerics']}, {report['layout']} layout, "
                 f"{report['clock_hz'] / 1e6:g} MHz / {report['voltage_v']} V", fontsize=9)
    fig.tight_layout()
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p)
    plt.close(fig)
    return p
