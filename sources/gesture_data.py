"""DVS128 Gesture data on disk in tonic's layout: the synthetic generator, and one loader for synthetic and real data.

Layout (what `tonic.datasets.DVSGesture(save_to=ROOT)` reads, tonic 1.7):

    ROOT/DVSGesture/ibmGestureTrain.tar.gz          # tonic only checks that the archive file exists ...
    ROOT/DVSGesture/ibmGestureTest.tar.gz
    ROOT/DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<class>.npy   # ... and that >= 100 .npy lie below
    ROOT/DVSGesture/ibmGestureTest/user<NN>_<lighting>/<class>.npy

Each .npy is an N x 4 integer array of columns (x, y, p, t) with t in MILLISECONDS (tonic multiplies by
1000 on read). The synthetic archives are empty placeholders; `s2egru-synthetic.json` records how the tree
was made. Real data: extract tonic's two archives (figshare, linked from tonic.datasets.DVSGesture) into
ROOT/DVSGesture/ and the same loader reads them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sources.errors import DataNotFoundError, SourceError
from sources.events import EVENT_DTYPE
from sources.gesture_motions import GESTURE_CLASSES
from sources.gesture_render import LIGHTINGS, draw_subject, render_gesture_events, with_lighting
from sources.parallel import run_jobs

SPLITS = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}
MANIFEST = "s2egru-synthetic.json"


def default_gesture_dir() -> Path:
    """$S2_DATA_DIR/gestures (default ~/.cache/s2egru/gestures): where `s2 data gestures` writes by default."""
    base = os.environ.get("S2_DATA_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "s2egru")
    return Path(base) / "gestures"


@dataclass(frozen=True)
class GestureSample:
    path: Path
    label: int
    user: int
    lighting: str


def clip_rng(seed: int, user: int, light: int, label: int) -> np.random.Generator:
    # one independent stream per clip: the bytes do not depend on order or on the number of workers
    return np.random.default_rng(np.random.SeedSequence([seed, user, light, label]))


def split_users(n_subjects: int, test_fraction: float = 0.2) -> tuple[list[int], list[int]]:
    """Users 1..N; the last ones are the test subjects (as in the original: users 24-29 of 29 are test)."""
    n_test = max(1, round(n_subjects * test_fraction)) if n_subjects > 1 else 0
    users = list(range(1, n_subjects + 1))
    return users[: n_subjects - n_test], users[n_subjects - n_test:]


def _to_tonic_rows(events: np.ndarray) -> np.ndarray:
    rows = np.empty((events.size, 4), dtype=np.int32)
    rows[:, 0], rows[:, 1], rows[:, 2] = events["x"], events["y"], events["p"] > 0
    rows[:, 3] = events["t"] // 1000  # tonic's preprocessed DVS Gesture keeps milliseconds
    return rows


def _recording_jobs(subjects: int, seed: int, lightings: int) -> list[tuple[int, int, str]]:
    jobs = []
    for user in range(1, subjects + 1):
        order = clip_rng(seed, user, 999, 999).permutation(len(LIGHTINGS))
        for j in range(min(lightings, len(LIGHTINGS))):
            jobs.append((user, j, LIGHTINGS[order[j]]))
    return jobs


def render_recording(seed: int, user: int, light_index: int, lighting: str, label: int, duration_s: float,
                     fps: float) -> np.ndarray:
    """Events of one clip: the same subject (body, clothes, room) for every lighting and class of that user."""
    person = draw_subject(clip_rng(seed, user, 0, 1000), lighting)
    subject = with_lighting(person, lighting, clip_rng(seed, user, light_index, 1001))
    return render_gesture_events(label, subject, duration_s, clip_rng(seed, user, light_index, label), fps=fps)


def generate_dataset(
    out: str | Path, subjects: int, seed: int, *, duration_s: float = 6.0, fps: float = 250.0,
    lightings: int = 2, test_fraction: float = 0.2, aedat: bool = False, progress: bool = True,
    resume: bool = False, users: list[int] | None = None, jobs: int = 1,
) -> dict:
    """Write the synthetic dataset under out/DVSGesture; return the manifest.

    `resume` keeps recordings already on disk (each clip has its own seed stream, so they are the bytes this
    call would write); `users` restricts the work to those subjects; `jobs` processes render clips side by side
    (the same bytes: each clip depends only on its own seed stream).
    """
    if subjects < 2:
        raise SourceError(f"--subjects must be at least 2 (one train, one test subject), not {subjects}")
    if not 1 <= lightings <= len(LIGHTINGS):
        raise SourceError(f"--lightings must be 1..{len(LIGHTINGS)}, not {lightings}")
    if duration_s <= 0 or fps <= 0:
        raise SourceError("--duration-s and the render rate must be positive")
    if jobs < 1:
        raise SourceError(f"--jobs must be at least 1, not {jobs}")
    if aedat:
        try:
            from sources.files import write_aedat4  # noqa: F401 (checked here, used by `_write_clip`)
        except ImportError as e:
            raise SourceError("--aedat needs the AEDAT4 writer sources.files.write_aedat4, not installed") from e
    root = Path(out) / "DVSGesture"
    train_users, test_users = split_users(subjects, test_fraction)
    clips = [(u, j, light, c) for u, j, light in _recording_jobs(subjects, seed, lightings)
             for c in range(len(GESTURE_CLASSES))]
    from tqdm import tqdm

    if users is not None:
        clips = [clip for clip in clips if clip[0] in users]
    tasks = [(Path(out), seed, user, j, light, label, "test" if user in test_users else "train", duration_s, fps,
              aedat, resume) for user, j, light, label in clips]

    def remove_partial() -> None:  # a worker stopped while writing leaves no partial file
        for tmp in root.glob("*/*/*.tmp.npy"):
            tmp.unlink(missing_ok=True)

    counts = []
    with tqdm(total=len(tasks), desc="gestures", unit="clip", disable=not progress) as bar:
        for n in run_jobs(_write_clip, tasks, jobs, cleanup=remove_partial):
            counts.append(n)
            bar.update()
    for name in SPLITS.values():
        (root / f"{name}.tar.gz").touch()  # placeholder: tonic then skips its download
    manifest = {
        "generator": "s2egru synthetic DVS gestures", "seed": seed, "subjects": subjects,
        "train_users": train_users, "test_users": test_users, "lightings_per_subject": lightings,
        "duration_s": duration_s, "render_fps": fps, "classes": list(GESTURE_CLASSES),
        "clips": len(clips), "events_mean": float(np.mean(counts)) if counts else 0.0,
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _write_clip(out: Path, seed: int, user: int, j: int, light: str, label: int, split: str, duration_s: float,
                fps: float, aedat: bool, resume: bool) -> int:
    """Render and write one recording (atomically; with `aedat` its AEDAT4 copy too): its number of events."""
    folder = out / "DVSGesture" / SPLITS[split] / f"user{user:02d}_{light}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{label}.npy"
    if resume and path.is_file() and not aedat:
        try:
            return int(np.load(path, mmap_mode="r").shape[0])
        except (OSError, ValueError):
            pass  # a clip cut short by an interrupted run: render it again
    ev = render_recording(seed, user, j, light, label, duration_s, fps)
    tmp = path.with_suffix(".tmp.npy")
    try:
        np.save(tmp, _to_tonic_rows(ev))
        tmp.replace(path)  # atomic: an interrupted run never leaves a truncated recording
    except BaseException:  # Ctrl-C or SIGTERM halfway through: no partial file left behind
        tmp.unlink(missing_ok=True)
        raise
    if aedat:
        from sources.events import DVS128
        from sources.files import write_aedat4

        apath = out / "aedat4" / SPLITS[split] / f"user{user:02d}_{light}" / f"{label}.aedat4"
        apath.parent.mkdir(parents=True, exist_ok=True)
        write_aedat4(apath, ev, DVS128)
    return int(ev.size)


def find_split_dir(data: str | Path, split: str) -> Path:
    """DIR, DIR/DVSGesture or DIR/DVSGesture/ibmGesture<Split> -> the split folder; a clear error if absent."""
    if split not in SPLITS:
        raise SourceError(f"split must be one of {list(SPLITS)}, not {split!r}")
    p = Path(data).expanduser()
    for cand in (p / "DVSGesture" / SPLITS[split], p / SPLITS[split], p):
        if cand.is_dir() and cand.name == SPLITS[split]:
            return cand
    raise DataNotFoundError(
        f"no {SPLITS[split]} folder under {p} (make one with `s2 data gestures --out {p}`, "
        "or extract the real DVS128 Gesture archives into DIR/DVSGesture/)"
    )


def list_samples(data: str | Path, split: str = "test") -> list[GestureSample]:
    """Every recording of a split, sorted by (user, lighting, label)."""
    folder = find_split_dir(data, split)
    out = []
    for sub in sorted(folder.iterdir()):
        if not sub.is_dir() or not sub.name.startswith("user") or "_" not in sub.name:
            continue
        user_s, lighting = sub.name.split("_", 1)
        try:
            user = int(user_s[4:])
        except ValueError:
            continue
        for f in sorted(sub.glob("*.npy"), key=lambda q: q.stem):
            if f.stem.isdigit() and int(f.stem) < len(GESTURE_CLASSES):
                out.append(GestureSample(f, int(f.stem), user, lighting))
    if not out:
        raise DataNotFoundError(f"{folder}: no user<NN>_<lighting>/<class>.npy recordings")
    return out


def load_events(path: str | Path) -> np.ndarray:
    """One tonic-layout .npy (N x 4: x, y, p, t in ms) -> EVENT_DTYPE sorted by t (µs)."""
    try:
        rows = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise SourceError(f"{path}: not a readable .npy event array ({e})") from e
    if rows.ndim != 2 or rows.shape[1] != 4:
        raise SourceError(f"{path}: expected an N x 4 array (x, y, p, t_ms), got shape {rows.shape}")
    ev = np.empty(rows.shape[0], EVENT_DTYPE)
    ev["x"], ev["y"] = rows[:, 0], rows[:, 1]
    ev["p"] = rows[:, 2] > 0
    ev["t"] = np.rint(rows[:, 3].astype(np.float64) * 1000.0).astype(np.int64)
    return ev[np.argsort(ev["t"], kind="stable")]


def iter_dataset(data: str | Path, split: str = "test") -> Iterator[tuple[np.ndarray, int, GestureSample]]:
    """(events, label, sample) for each recording of a split, synthetic or real."""
    for s in list_samples(data, split):
        yield load_events(s.path), s.label, s
