"""Run the fixed list of evaluations and benchmarks, store their JSON in results/, render docs/results.md.

    python scripts/results.py --run            # run every entry (about an hour on 2 cores), then render
    python scripts/results.py --run NAME ...   # run only these entries, then render
    python scripts/results.py                  # render docs/results.md and the README's table from results/*.json
    python scripts/results.py --check          # exit 1 if docs/results.md or the README table is out of date

Each results/<name>.json holds {"name", "command", "wall_s", "stamp": {date, machine, python, torch, commit},
"result": <the command's JSON>}. Tables are rendered only from those files, never typed by hand; each table
says which date, machine and commit its figures come from.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
DOC = ROOT / "docs" / "results.md"
README = ROOT / "README.md"
BEGIN, END = "<!-- results:begin (scripts/results.py renders this table) -->", "<!-- results:end -->"


@dataclass(frozen=True)
class Entry:
    name: str
    argv: tuple[str, ...]  # "s2" stands for `python -m stream.cli`, "python" for this interpreter
    timeout_s: int
    runs: int = 1  # benchmarks run RUNS times on the machine as it is; their tables show each figure's range


def _s2(*a: str) -> tuple[str, ...]:
    return ("s2", *a)


DEMO = "models/demo-gestures.aedat4"
BENCH_RUNS = 3
ENTRIES: tuple[Entry, ...] = (
    Entry("eval-ptb-egru", _s2("eval", "models/ptb-egru", "--split", "test", "--baseline", "ngram:5", "--json"), 600),
    Entry("eval-shakespeare-egru", _s2("eval", "models/shakespeare-egru", "--split", "test", "--baseline", "ngram:6",
                                       "--json"), 900),
    # the equal-size LSTM trained on the same batches as the character EGRU (docs/language-models.md)
    Entry("eval-shakespeare-lstm", _s2("eval", "models/shakespeare-lstm", "--split", "test", "--baseline", "ngram:6",
                                       "--json"), 900),
    Entry("node-ptb-egru-fp32", _s2("node", "run", "models/ptb-egru", "--split", "test", "--max-steps", "2000",
                                    "--json"), 600),
    Entry("node-ptb-egru-int8", _s2("node", "run", "models/ptb-egru", "--split", "test", "--max-steps", "2000",
                                    "--numerics", "int8", "--json"), 600),
    Entry("node-shakespeare-egru-fp32", _s2("node", "run", "models/shakespeare-egru", "--split", "test",
                                            "--max-steps", "20000", "--json"), 600),
    Entry("node-shakespeare-egru-int8", _s2("node", "run", "models/shakespeare-egru", "--split", "test",
                                            "--max-steps", "20000", "--numerics", "int8", "--json"), 600),
    # the paper's Table II on the emulated chip: its configuration and the shipped models (docs/chip-and-cost-model.md)
    Entry("report-paper-lm", _s2("node", "report", "--preset", "paper-lm", "--json"), 300),
    Entry("report-paper-gesture", _s2("node", "report", "--preset", "paper-gesture", "--json"), 300),
    Entry("report-ptb-egru", _s2("node", "report", "models/ptb-egru", "--max-steps", "2000", "--json"), 600),
    Entry("report-shakespeare-egru", _s2("node", "report", "models/shakespeare-egru", "--max-steps", "20000",
                                         "--json"), 600),
    Entry("report-gesture-egru", _s2("node", "report", "models/gesture-egru", "--events", DEMO, "--json"), 300),
    Entry("node-gesture-egru-fp32", _s2("node", "run", "models/gesture-egru", "--events", DEMO, "--json"), 300),
    Entry("node-gesture-egru-int8", _s2("node", "run", "models/gesture-egru", "--events", DEMO,
                                        "--numerics", "int8", "--json"), 300),
    # the isolated clips' held-out test split in $S2_DATA_DIR/gestures (`s2 data gestures`, docs/gestures.md)
    Entry("eval-gesture-egru", _s2("eval", "models/gesture-egru", "--json"), 900),
    # continuous streams of held-out subjects: 96 (seed 6) for the README; the 24 of seed 5 (docs/gestures.md)
    Entry("eval-gesture-stream", _s2("eval", "models/gesture-egru", "--stream", "--generate", "96", "--seed", "6",
                                     "--jobs", "2", "--json"), 3600),
    Entry("eval-gesture-stream-seed5", _s2("eval", "models/gesture-egru", "--stream", "--generate", "24", "--seed",
                                           "5", "--json"), 1800),
    Entry("inspect-ptb-egru", _s2("node", "inspect", "models/ptb-egru", "--json"), 120),
    Entry("inspect-shakespeare-egru", _s2("node", "inspect", "models/shakespeare-egru", "--json"), 120),
    Entry("inspect-gesture-egru", _s2("node", "inspect", "models/gesture-egru", "--json"), 120),
    Entry("bench-node", ("python", "bench/bench_node.py", "--quick"), 600, BENCH_RUNS),
    Entry("bench-lm", ("python", "bench/bench_lm.py"), 600, BENCH_RUNS),
    Entry("bench-binning", ("python", "bench/bench_binning.py"), 600, BENCH_RUNS),
    Entry("bench-denoise", ("python", "bench/bench_denoise.py"), 600, BENCH_RUNS),
    Entry("bench-decode", ("python", "bench/bench_decode.py", "--events", "300000", "--repeat", "3"), 600, BENCH_RUNS),
    Entry("bench-dvs-sim", ("python", "bench/bench_dvs_sim.py"), 600, BENCH_RUNS),
    Entry("bench-cost", ("python", "bench/bench_cost.py"), 600),
    Entry("bench-e2e", ("python", "bench/bench_e2e.py", "--no-ladder"), 600, BENCH_RUNS),
    Entry("bench-e2e-nagle", ("python", "bench/bench_e2e.py", "--no-ladder", "--nagle"), 900, BENCH_RUNS),
    # a fleet: streams stepped together, text workers sharing a group, the UI's fleet view (docs/fleet.md)
    Entry("bench-streams", ("python", "bench/bench_streams.py", "--quick"), 600, BENCH_RUNS),
    Entry("bench-serve", ("python", "bench/bench_serve.py"), 600, BENCH_RUNS),
    Entry("bench-fleet", ("python", "bench/bench_fleet.py", "--nodes", "1000", "--ticks", "30"), 600, BENCH_RUNS),
    # continuation decoders on the shipped language models (deterministic: one run)
    Entry("bench-continuations", ("python", "bench/bench_continuations.py"), 900),
)


# ---------------------------------------------------------------- running


def machine() -> str:
    """CPU model and core count, no host name."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    model = " ".join(model.split())
    return f"{model}, {os.cpu_count()} cores"


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "absent"


def commit() -> str:
    def git(*a: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True)

    h = git("rev-parse", "--short", "HEAD").stdout.strip() or "unknown"
    code = ("sources", "s2node", "stream", "tui", "bench", "models", "pyproject.toml")
    dirty = git("status", "--porcelain", "--", *code).stdout.strip()
    return h + ("+dirty" if dirty else "")


def stamp() -> dict[str, str]:
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%MZ"),
        "machine": machine(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "commit": commit(),
    }


def _argv(e: Entry) -> list[str]:
    head = {"s2": [sys.executable, "-m", "stream.cli"], "python": [sys.executable]}[e.argv[0]]
    return [*head, *e.argv[1:]]


def _last_json(out: str) -> Any:
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        pass
    for line in reversed(out.strip().splitlines()):  # a command that also printed a table: its JSON line
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    raise ValueError("no JSON in the output")


def _run_once(e: Entry) -> tuple[Any, float] | None:
    t0 = time.monotonic()
    try:
        p = subprocess.run(_argv(e), cwd=ROOT, capture_output=True, text=True, timeout=e.timeout_s,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    except subprocess.TimeoutExpired:
        print(f"results: {e.name}: timed out after {e.timeout_s} s (previous result kept)", file=sys.stderr)
        return None
    wall = time.monotonic() - t0
    if p.returncode != 0:
        err = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f"results: {e.name}: exit {p.returncode}: {err} (previous result kept)", file=sys.stderr)
        return None
    try:
        result = _last_json(p.stdout)
    except ValueError:
        print(f"results: {e.name}: printed no JSON (previous result kept)", file=sys.stderr)
        return None
    return json.loads(json.dumps(result).replace(str(ROOT) + "/", "")), wall  # repository paths, not this checkout's


def run_entry(e: Entry, st: dict[str, str]) -> bool:
    print(f"results: {e.name}: {' '.join(e.argv)}" + (f" ({e.runs} runs)" if e.runs > 1 else ""), file=sys.stderr,
          flush=True)
    runs = []
    for _ in range(e.runs):
        r = _run_once(e)
        if r is None:
            return False
        runs.append(r)
    wall = sum(w for _, w in runs)
    doc = {"name": e.name, "command": shlex.join(e.argv), "wall_s": round(wall, 1), "stamp": st,
           "result": runs[0][0]}
    if e.runs > 1:
        doc["runs"] = [r for r, _ in runs]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{e.name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"results: {e.name}: {wall:.1f} s", file=sys.stderr, flush=True)
    return True


# ---------------------------------------------------------------- rendering


def load_results() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}


def _f(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}"
    return str(v)


def _si(v: float | None, unit: str) -> str:
    if v is None:
        return "–"
    for scale, prefix in ((1, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n")):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {prefix}{unit}"
    return f"{v:.3g} {unit}"


def _stamp_line(docs: list[dict[str, Any]]) -> str:
    seen = []
    for d in docs:
        s = d["stamp"]
        line = f"{s['date']}, {s['machine']}, Python {s['python']}, torch {s['torch']}, commit {s['commit']}"
        if line not in seen:
            seen.append(line)
    return "*Measured " + "; ".join(seen) + ".*" if seen else ""


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _pick(res: dict[str, dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [d for n, d in res.items() if n.startswith(prefix)]


def _model(d: dict[str, Any]) -> str:
    m = re.search(r"models/([\w.-]+)", d["command"])
    return m.group(1) if m else d["name"]


def section_eval(res: dict[str, dict[str, Any]]) -> list[str]:
    docs = _pick(res, "eval-")
    rows = []
    for d in docs:
        r = d["result"]
        base = f"{_f(r['baseline_value'], 5)} ({r['baseline']})" if "baseline_value" in r else "–"
        rows.append([f"`{_model(d)}`", r.get("data", "–"), _f(r.get("steps")), r["metric"], _f(r["value"], 5), base,
                     _f(r.get("activity_sparsity")), _f(r.get("synops_per_step")),
                     _f(r.get("dense_ops_per_step")), _f(r.get("params"))])
    head = ["model", "data", "steps", "metric", "value", "n-gram baseline (same tokens)", "activity sparsity",
            "synops / step", "dense ops / step", "params"]
    return ["## Models with the PyTorch reference (`s2 eval`)", "",
            "One stream, batch 1, state carried; synops: NeuroBench effective synaptic operations of the "
            "recurrent layers (decoder not counted).", "", *_table(head, rows), "", _stamp_line(docs), ""]


def _node_row(d: dict[str, Any]) -> list[str]:
    r = d["result"]
    if r["task"] == "lm":
        metric = "perplexity" if "perplexity" in r else "bpc"
        quality = f"{_f(r[metric], 5)} {metric} ({_f(r.get(metric + '_pytorch'), 5)})"
        energy = _si(r.get("energy_j_per_token"), "J") + " / token"
        src = re.search(r"--split (\w+)", d["command"])
        inp = f"{src.group(1) if src else '?'} split, {r['steps']:,} steps"
    else:
        acc = r.get("accuracy")
        quality = f"{_f(acc)} accuracy" if acc is not None else "– (no labels)"
        energy = _si(r.get("energy_j_per_step"), "J") + " / step"
        inp = f"demo recording, {r['steps']:,} steps"
    dense = r.get("dense_equivalent", {})
    gpu = r.get("gpu_estimate", {})
    numerics = r["numerics"] + (", costs from the chip's measured power" if "--cost-table" in d["command"] else "")
    return [f"`{_model(d)}`", numerics, inp, quality, _f(r.get("agreement")), _f(r.get("activity_sparsity")),
            f"{_f(r.get('synops_per_step'))} ({_f(dense.get('synops_per_step'))})", _f(r.get("pes_used")),
            f"{_si(r.get('latency_s_p50'), 's')} / {_si(r.get('latency_s_p99'), 's')}", energy,
            f"{_f(dense.get('energy_gain'))}x", f"{_f(gpu.get('gpu_over_node_energy'))}x", _f(r.get("steps_per_s"))]


NODE_HEAD = ["model", "numerics", "input", "quality (PyTorch)", "agreement", "activity sparsity",
             "synops / step (dense)", "PEs", "latency p50 / p99", "energy (estimate)", "energy vs dense",
             "GPU estimate / node", "emulator steps/s"]


def section_node(res: dict[str, dict[str, Any]]) -> list[str]:
    docs = _pick(res, "node-")
    return ["## The shipped models on the emulated node (`s2 node run`)", "",
            "Quality beside the PyTorch model's on the same steps; agreement = fraction of steps where node and "
            "PyTorch predict the same token or class. Latency and energy come from the cost model, calibrated on "
            "the chip's published power measurements and bounded by stated intervals where none exist (see "
            "[the chip and cost model](chip-and-cost-model.md)).", "",
            *_table(NODE_HEAD, [_node_row(d) for d in docs]), "", _stamp_line(docs), ""]


def section_inspect(res: dict[str, dict[str, Any]]) -> list[str]:
    docs = _pick(res, "inspect-")
    rows = []
    for d in docs:
        r = d["result"]
        sram = r["sram_bytes_per_pe"]
        groups = ", ".join(f"{g['name']} {g['pes']}" for g in r["groups"])
        rows.append([f"`{_model(d)}`", r["numerics"], f"{r['pes_used']} of {r['pes_available']}", groups,
                     _f(r["nonzero_weights"]), f"{_f(sram['max'])} / {_f(sram['limit'])}",
                     f"{_f(r['routing_entries'])} / {_f(r['routing_entries_limit'])}", _f(r["dram_bytes"])])
    head = ["model", "numerics", "PEs used", "PEs per group", "non-zero weights", "SRAM bytes, fullest PE / limit",
            "routing entries / limit", "DRAM bytes"]
    return ["## Placement on the chip (`s2 node inspect`)", "", *_table(head, rows), "", _stamp_line(docs), ""]


def _is_scalar(v: Any) -> bool:
    if isinstance(v, dict):
        return False
    return not isinstance(v, list) or (len(v) <= 8 and all(isinstance(x, int | float | str) for x in v))


def _cell(v: Any) -> str:
    return ", ".join(_f(x) for x in v) if isinstance(v, list) else _f(v)


SKIP_KEYS = {"versions", "python", "machine", "cpu_count", "torch", "numpy", "note", "bench", "platform",
             "tonic_version", "aiomqtt"}


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    return cols


def _bench_tables(d: dict[str, Any], title: str) -> list[str]:
    """One JSON object -> markdown tables: its scalars as field/value rows, sibling objects of scalars (and lists of
    them) as one table each with a row per object, deeper objects recursively under their own heading."""
    kv = [(k, v) for k, v in d.items() if k not in SKIP_KEYS and _is_scalar(v)]
    groups = {k: v for k, v in d.items() if k not in SKIP_KEYS and isinstance(v, dict) and v
              and all(_is_scalar(x) for x in v.values())}
    done = {k for k, _ in kv}
    if len(groups) == 1:  # a single object of scalars reads better as field/value rows
        (gk, gv), groups = next(iter(groups.items())), {}
        kv += [(f"{gk}.{k}", v) for k, v in gv.items()]
        done.add(gk)
    out: list[str] = []
    if kv:
        out += [f"**{title}**", "", *_table(["field", "value"], [[f"`{k}`", _cell(v)] for k, v in kv]), ""]
    if groups:
        cols = _columns(list(groups.values()))
        rows = [[f"`{k}`", *(_cell(g.get(c)) for c in cols)] for k, g in groups.items()]
        out += [f"**{title}**", "", *_table(["", *cols], rows), ""]
    for k, v in d.items():
        if k in SKIP_KEYS or k in groups or k in done:
            continue
        if isinstance(v, dict):
            out += _bench_tables(v, f"{title}.{k}")
        elif isinstance(v, list) and v and all(isinstance(x, dict) and all(map(_is_scalar, x.values())) for x in v):
            cols = _columns(v)
            out += [f"**{title}.{k}**", "", *_table(cols, [[_cell(x.get(c)) for c in cols] for x in v]), ""]
    return out


def _ranges(runs: list[Any]) -> Any:
    """Several runs of one benchmark -> one object whose numbers read "min–max" (or the number, when all agree)."""
    first = runs[0]
    if isinstance(first, dict):
        return {k: _ranges([r[k] for r in runs]) for k in first if all(isinstance(r, dict) and k in r for r in runs)}
    if isinstance(first, list):
        if all(isinstance(r, list) and len(r) == len(first) for r in runs):
            return [_ranges(list(col)) for col in zip(*runs, strict=True)]
        return first
    nums = [r for r in runs if isinstance(r, int | float) and not isinstance(r, bool)]
    if len(nums) == len(runs) and len(runs) > 1:
        lo, hi = min(nums), max(nums)
        return lo if lo == hi else f"{_f(lo)}–{_f(hi)}"
    return first


def section_bench(res: dict[str, dict[str, Any]]) -> list[str]:
    out = ["## Benchmarks (`bench/`)", "",
           "Each benchmark compares alternatives side by side in one run: compare the ratios, not absolute "
           "figures across machines or loads. [Benchmarks](benchmarks.md) says what each one measures.", ""]
    for d in _pick(res, "bench-"):
        runs = d.get("runs") or [d["result"]]
        note = f"Range over {len(runs)} runs (min–max)." if len(runs) > 1 else "One run."
        out += [f"### `{d['command']}`", "", note, "", *_bench_tables(_ranges(runs), d["name"]), _stamp_line([d]),
                ""]
    return out


SECTIONS: tuple[Callable[[dict[str, dict[str, Any]]], list[str]], ...] = (
    section_eval, section_node, section_inspect, section_bench)


def render_doc(res: dict[str, dict[str, Any]]) -> str:
    lines = ["# Results", "",
             "Generated by `scripts/results.py` from `results/*.json`; do not edit by hand. `make results` runs "
             "the evaluations and benchmarks again on this machine (about an hour on 2 cores) and re-renders this "
             "page; `make results-render` only re-renders it.", ""]
    for sec in SECTIONS:
        lines += sec(res)
    return "\n".join(lines).rstrip() + "\n"


def render_readme_table(res: dict[str, dict[str, Any]]) -> str:
    """The README's one table: each shipped model's quality and its figures on the emulated node (fp32)."""
    rows = []
    for name in ("ptb-egru", "shakespeare-egru", "gesture-egru"):
        ev, node = res.get(f"eval-{name}"), res.get(f"node-{name}-fp32")
        if node is None:
            continue
        r = node["result"]
        if ev is not None:
            e = ev["result"]
            quality = f"{_f(e['value'], 4)} {e['metric']} ({e['data'].split(':')[-1]} split)"
            if "baseline_value" in e:
                quality += f"; {e['baseline']}: {_f(e['baseline_value'], 4)}"
            lstm = res.get(f"eval-{name.replace('-egru', '-lstm')}")
            if lstm is not None:  # the equal-size LSTM trained on the same batches
                quality += f"; LSTM of equal size: {_f(lstm['result']['value'], 4)}"
            sparsity = _f(e["activity_sparsity"])
        else:  # no labelled gesture data offline: the test accuracy the model file's training record holds
            hist = json.loads((ROOT / "models" / f"{name}.json").read_text()).get("training", {}).get("history", [])
            acc = hist[-1].get("test_accuracy") if hist else None
            quality = (f"{acc:.1%} accuracy ([synthetic test split](docs/gestures.md), training record)"
                       if acc is not None else "–")
            sparsity = _f(r.get("activity_sparsity"))
        stream = res.get("eval-gesture-stream") if name == "gesture-egru" else None
        if stream is not None:  # beside the isolated clips: continuous streams, as the model is served
            st = stream["result"]
            lat = st.get("latency_p50_s")
            quality += (f"; {st['value']:.1%} on [continuous streams](docs/gestures.md) of {st['streams']} held-out "
                        f"subjects (worst class "
                        f"{st['worst_class']:.1%}, latency p50 {'–' if lat is None else f'{lat:g} s'})")
        dense = r.get("dense_equivalent", {})
        unit = "token" if r["task"] == "lm" else "step"
        rows.append([f"`models/{name}`", quality, sparsity,
                     f"{_f(dense.get('synops_gain'))}x", _f(r.get("pes_used")),
                     _si(r.get("latency_s_p50"), "s"), _si(r.get(f"energy_j_per_{unit}"), "J") + f" / {unit}",
                     f"{_f(dense.get('energy_gain'))}x"])
    head = ["model", "quality (PyTorch)", "activity sparsity", "fewer synops than dense", "PEs",
            "latency p50 (est.)", "energy (est.)", "energy vs dense"]
    docs = [d for n, d in res.items()
            if n.startswith(("eval-", "node-")) and n.endswith(("egru", "lstm", "fp32", "stream"))]
    return "\n".join([BEGIN, *_table(head, rows), "", _stamp_line(docs), END])


def render_readme(text: str, res: dict[str, dict[str, Any]]) -> str:
    i, j = text.find(BEGIN), text.find(END)
    if i < 0 or j < 0:
        return text
    return text[:i] + render_readme_table(res) + text[j + len(END):]


def render(check: bool = False) -> bool:
    """Write (or, with check, compare) docs/results.md and the README's table; True when they were up to date."""
    res = load_results()
    doc, readme_old = render_doc(res), README.read_text()
    readme = render_readme(readme_old, res)
    fresh = DOC.is_file() and DOC.read_text() == doc and readme == readme_old
    if not check:
        DOC.write_text(doc)
        README.write_text(readme)
    return fresh


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", nargs="*", metavar="NAME", help="run the entries (all, or these) before rendering")
    ap.add_argument("--check", action="store_true", help="only check that the rendered files are up to date")
    ap.add_argument("--list", action="store_true", help="list the entries and exit")
    a = ap.parse_args()
    if a.list:
        for e in ENTRIES:
            print(f"{e.name:28} {' '.join(e.argv)}  (timeout {e.timeout_s} s)")
        return
    if a.check:
        sys.exit(0 if render(check=True) else 1)
    failed: list[str] = []
    if a.run is not None:
        names = {e.name for e in ENTRIES}
        unknown = [n for n in a.run if n not in names]
        if unknown:
            sys.exit(f"results: unknown entry {unknown[0]!r}; see --list")
        st, t0 = stamp(), time.monotonic()
        for e in ENTRIES:
            if (not a.run or e.name in a.run) and not run_entry(e, st):
                failed.append(e.name)
        print(f"results: ran in {time.monotonic() - t0:.0f} s" + (f"; failed: {', '.join(failed)}" if failed else ""),
              file=sys.stderr)
    render()
    print(f"results: rendered {DOC.relative_to(ROOT)} and the README's table", file=sys.stderr)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
