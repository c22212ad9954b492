"""Event-frame payload size and cost: the compact form (stream.schema.EventFrame: zlib'd counts in base64) beside
the plain form (two JSON lists of width x height counts), on the same frames of a real recording, JSON out.
The compact encode time includes making the frame and sizing it against the byte budget (FrameMaker.take); the
compact decode time includes schema v1's checks, the plain one is json.loads alone.

Frames are made as the node makes them (stream.pipeline.FrameMaker: 200 ms of events each, as 5 frames/s of a
replay at speed 1), from the demo recording unless a file is given. Prints bytes per frame (mean, p95, max) of
both forms and their ratio, the encode and decode time per frame, and how many frames the byte budget coarsened.

    python bench/bench_frames.py [FILE] [--window-ms 200] [--max-bytes 4096]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sources.files import iter_events
from stream.defaults import DEFAULT_RECORDING
from stream.pipeline import FrameLimits, FrameMaker
from stream.schema import SCHEMA_VERSION, decode


def plain_json(f) -> bytes:
    """The frame as two JSON lists of counts (the form the compact one replaces)."""
    return json.dumps({"v": SCHEMA_VERSION, **asdict(f)}, separators=(",", ":")).encode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", nargs="?", default=str(Path(__file__).resolve().parents[1] / DEFAULT_RECORDING))
    ap.add_argument("--window-ms", type=float, default=200.0, help="event time per frame (default 200: 5 frames/s)")
    ap.add_argument("--max-bytes", type=int, default=FrameLimits().max_bytes, help="the frame byte budget")
    args = ap.parse_args()

    chunks = iter_events(args.file, int(args.window_ms * 1000))
    sensor = chunks.sensor
    fm = FrameMaker(None, sensor.width, sensor.height, FrameLimits(per_s=1e-9, max_bytes=args.max_bytes))  # type: ignore[arg-type]
    plain, compact, enc_s, dec_s, events = [], [], 0.0, 0.0, 0
    plain_enc_s = plain_dec_s = 0.0
    for ev in chunks:
        fm.add(ev)
        events += len(ev)
        t0 = time.perf_counter()
        f = fm.take(len(ev) / (args.window_ms / 1000))
        raw = f.to_json()
        t1 = time.perf_counter()
        back = decode("frame", raw)
        t2 = time.perf_counter()
        enc_s, dec_s = enc_s + t1 - t0, dec_s + t2 - t1
        if (back.width, back.height) == (fm.w, fm.h):  # lossless unless coarsened to fit the budget
            assert back.on == f.on and back.off == f.off
        t3 = time.perf_counter()
        p = plain_json(f)
        t4 = time.perf_counter()
        json.loads(p)
        plain_enc_s, plain_dec_s = plain_enc_s + t4 - t3, plain_dec_s + time.perf_counter() - t4
        plain.append(len(p))
        compact.append(len(raw))
    n = len(compact)
    if n == 0:
        raise SystemExit(f"{args.file}: no events")

    def stats(sizes: list[int]) -> dict:
        a = np.asarray(sizes)
        return {"mean": round(float(a.mean()), 1), "p95": float(np.percentile(a, 95)), "max": int(a.max())}

    result = {
        "bench": "frames", "file": Path(args.file).name, "sensor": f"{sensor.width}x{sensor.height}",
        "frame": f"{fm.w}x{fm.h}", "frames": n, "events": events, "window_ms": args.window_ms,
        "plain_bytes": stats(plain), "compact_bytes": stats(compact),
        "size_ratio_plain_over_compact": round(float(np.mean(plain) / np.mean(compact)), 1),
        "bytes_per_s_at_5_per_s": {"plain": round(5 * float(np.mean(plain))),
                                   "compact": round(5 * float(np.mean(compact)))},
        "encode_ms_per_frame": {"plain": round(1000 * plain_enc_s / n, 3), "compact": round(1000 * enc_s / n, 3)},
        "decode_ms_per_frame": {"plain_json_only": round(1000 * plain_dec_s / n, 3),
                                "compact_checked": round(1000 * dec_s / n, 3)},
        "max_bytes": args.max_bytes, "coarsened": fm.coarsened,
        "cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(), "numpy": np.__version__,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
