"""The paper's Table II on the emulated chip, side by side in one run: presets x weight layouts x operating points.

Prints one JSON object (machine, versions, every configuration's GPU/chip energy and chip/GPU time ratios with
their range over the assumed constants, data bytes per PE, and the seconds each report took) and a table.
`--quick` runs the gesture preset only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from s2node.chip import ChipSpec
from s2node.cost import CostTable
from s2node.node_report import report_preset
from s2node.runtime import limit_blas_threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    limit_blas_threads(1)
    presets = ["paper-gesture"] if args.quick else ["paper-lm", "paper-gesture"]
    rows = []
    for name in presets:
        for op in ("0.5V", "0.8V"):
            for layout in ("csr", "column"):
                t0 = time.perf_counter()
                r = report_preset(name, ChipSpec().at_operating_point(op), CostTable.calibrated(op), layout=layout)
                rows.append({"preset": name, "operating_point": op, "layout": layout, "pes": r["pes_used"],
                             "data_bytes_max": r["placement"]["data_bytes_per_pe"]["max"],
                             "chip_j": r["rows"]["chip"]["energy_j"], "chip_s": r["rows"]["chip"]["time_s"],
                             "gpu_over_chip_energy": r["ratios"]["gpu_over_chip_energy"],
                             "energy_range": r["range_over_assumptions"]["gpu_over_chip_energy"],
                             "chip_over_gpu_time": r["ratios"]["chip_over_gpu_time"],
                             "time_range": r["range_over_assumptions"]["chip_over_gpu_time"],
                             "report_s": time.perf_counter() - t0})
    out = {"bench": "cost", "cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
           "paper": {"gpu_over_chip_energy": 18.3, "chip_over_gpu_time": 8.6}, "rows": rows}
    print(json.dumps(out))
    print(f"{'preset':<14}{'op':<6}{'layout':<8}{'PEs':>5}{'E ratio':>9}{'range':>14}{'T ratio':>9}{'range':>13}")
    for r in rows:
        print(f"{r['preset']:<14}{r['operating_point']:<6}{r['layout']:<8}{r['pes']:>5}"
              f"{r['gpu_over_chip_energy']:>9.1f}{r['energy_range'][0]:>7.1f}-{r['energy_range'][1]:<6.1f}"
              f"{r['chip_over_gpu_time']:>9.2f}{r['time_range'][0]:>6.2f}-{r['time_range'][1]:<6.2f}")


if __name__ == "__main__":
    main()
