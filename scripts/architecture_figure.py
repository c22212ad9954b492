"""Draw docs/architecture.png from the code's own imports: the four packages as floors, their modules inside, and
the number of module-to-module imports between floors on the arrows (grimp reads the imports; matplotlib draws).

    python scripts/architecture_figure.py [--out docs/architecture.png]
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOORS = ("tui", "stream", "s2node", "sources")  # top to bottom
COLOURS = {"tui": "#d9cff0", "stream": "#cdebd2", "s2node": "#cfe0f0", "sources": "#f3d6de"}


def package_imports() -> tuple[dict[str, list[str]], dict[tuple[str, str], int]]:
    """Modules per package (short names) and the count of direct module imports between packages."""
    import grimp

    graph = grimp.build_graph(*FLOORS)
    modules = {p: sorted(m[len(p) + 1:] for m in graph.modules if m.startswith(p + ".")) for p in FLOORS}
    between: dict[tuple[str, str], int] = {}
    for m in graph.modules:
        for imported in graph.find_modules_directly_imported_by(m):
            a, b = m.split(".")[0], imported.split(".")[0]
            if a != b:
                between[(a, b)] = between.get((a, b), 0) + 1
    return modules, between


def draw(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    modules, between = package_imports()
    fig, ax = plt.subplots(figsize=(11, 8.5))
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.axis("off")
    height, gap = 19.0, 5.0
    tops = {p: 98 - i * (height + gap) for i, p in enumerate(FLOORS)}
    for i, p in enumerate(FLOORS):
        y = tops[p] - height
        ax.add_patch(FancyBboxPatch((2, y), 78, height, boxstyle="round,pad=0.4", fc=COLOURS[p], ec="#555"))
        ax.text(4, tops[p] - 2.5, f"floor {len(FLOORS) - i}   {p}/", fontsize=13, weight="bold", va="top")
        names = ", ".join(m for m in modules[p] if not m.endswith("__init__"))
        ax.text(4, tops[p] - 6.5, "\n".join(textwrap.wrap(names, 100)), fontsize=7.2, va="top", family="monospace")
    skip = 0
    for (a, b), n in sorted(between.items()):
        ia, ib = FLOORS.index(a), FLOORS.index(b)
        if abs(ia - ib) == 1:
            x = 40.0  # to the floor below: between the boxes
        else:  # past a floor: along the right-hand side, outside the boxes
            x, skip = 84.0 + 6 * skip, skip + 1
        up = ib < ia  # an import running back up: drawn red, and tests/test_layering.py fails on it
        ax.annotate("", xy=(x, tops[b] + (0.8 if not up else -height - 0.8)),
                    xytext=(x, tops[a] - height - 0.8 if not up else tops[a] + 0.8),
                    arrowprops={"arrowstyle": "-|>", "color": "#c00" if up else "#333", "lw": 1.2})
        ax.text(x + 0.8, (tops[a] - height + tops[b]) / 2, f"{a}→{b}: {n}", fontsize=7, va="center")
    ax.set_title("s2egru: packages as floors; arrows = module imports between them (counted from the code)",
                 fontsize=11)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print(f"wrote {out}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "architecture.png")
    draw(ap.parse_args().out)


if __name__ == "__main__":
    main()
