"""`s2 data gestures` and `s2 data gesture-demo`: synthetic DVS128-Gesture-style data (heavy imports inside)."""

from __future__ import annotations

import argparse


def register_gestures(dsub: argparse._SubParsersAction) -> None:
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
    g.set_defaults(func=_gestures)
    d = dsub.add_parser(
        "gesture-demo",
        help="write a short synthetic recording cycling through gestures (event file + .json of spans)",
        description="One subject performing several gestures in a row, written as an event file (format by "
        "extension: .aedat4, .npy, .raw, ...) and a sidecar JSON listing each gesture's class and time span.",
    )
    d.add_argument("--out", default="models/demo-gestures.aedat4",
                   help="output event file (default models/demo-gestures.aedat4)")
    d.add_argument("--classes", default="1,3,8,0,9,6", help="class indices in order (default 1,3,8,0,9,6)")
    d.add_argument("--segment-s", type=float, default=3.0, help="seconds per gesture (default 3)")
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--subject", type=int, default=99, help="subject number drawn from the seed (default 99)")
    d.set_defaults(func=_demo)


def _gestures(args: argparse.Namespace) -> int:
    from sources.gesture_data import default_gesture_dir, generate_dataset

    out = args.out or default_gesture_dir()
    m = generate_dataset(out, args.subjects, args.seed, duration_s=args.duration_s, fps=args.fps,
                         lightings=args.lightings, aedat=args.aedat, resume=args.resume)
    print(f"wrote {m['clips']} recordings ({len(m['train_users'])} train / {len(m['test_users'])} test subjects, "
          f"{m['events_mean']:.0f} events each on average) to {out}/DVSGesture")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from sources.errors import SourceError
    from sources.gesture_demo import write_demo

    try:
        classes = [int(c) for c in args.classes.split(",") if c.strip()]
    except ValueError as e:
        raise SourceError(f"--classes must be comma-separated class indices, not {args.classes!r}") from e
    npy, side = write_demo(args.out, classes, args.segment_s, args.seed, args.subject)
    print(f"wrote {npy} and {side}")
    return 0
