"""Synthetic DVS gestures on disk: tonic reads the layout, classes are balanced, same seed gives same bytes."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from sources.errors import DataNotFoundError, SourceError
from sources.gesture_data import MANIFEST, generate_dataset, iter_dataset, list_samples, load_events
from sources.gesture_demo import make_demo
from sources.gesture_motions import GESTURE_CLASSES


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory) -> Path:
    """6 subjects x 4 lightings x 11 classes of 80 ms: 132 recordings per split, enough for tonic's check."""
    out = tmp_path_factory.mktemp("gestures")
    generate_dataset(out, 6, seed=3, duration_s=0.08, fps=100, lightings=4, test_fraction=0.5, progress=False)
    return out


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if f.is_file():
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def test_tonic_reads_the_generated_layout_offline(tiny_tree):
    """tonic.datasets.DVSGesture(save_to=DIR) finds both splits without downloading and agrees with our loader."""
    import tonic

    assert tonic.datasets.DVSGesture.classes == list(GESTURE_CLASSES)
    for train in (True, False):
        ds = tonic.datasets.DVSGesture(save_to=str(tiny_tree), train=train)
        assert len(ds) == 132
        ours = list_samples(tiny_tree, "train" if train else "test")
        i = next(i for i, p in enumerate(ds.data) if Path(p) == ours[5].path)
        ev, target = ds[i]
        mine = load_events(ours[5].path)
        assert target == ours[5].label
        np.testing.assert_array_equal(ev["x"], mine["x"])
        np.testing.assert_array_equal(ev["t"], mine["t"])
        assert ev["x"].max() < 128 and ev["y"].max() < 128


def test_classes_are_balanced_and_subjects_split(tiny_tree):
    """Every class has the same number of recordings per split, and no subject is in both splits."""
    train, test = list_samples(tiny_tree, "train"), list_samples(tiny_tree, "test")
    for split in (train, test):
        counts = np.bincount([s.label for s in split], minlength=len(GESTURE_CLASSES))
        assert counts.min() == counts.max() == 12
    assert not {s.user for s in train} & {s.user for s in test}
    assert len({s.lighting for s in train}) == 4


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    """Generating twice with one seed writes identical files, in one process or in two (`--jobs 2`); another
    seed writes different ones."""
    for name, seed, jobs in (("a", 5, 1), ("b", 5, 2), ("c", 6, 1)):
        generate_dataset(tmp_path / name, 2, seed=seed, duration_s=0.1, fps=100, lightings=1, progress=False,
                         jobs=jobs)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    manifests = [json.loads((tmp_path / n / "DVSGesture" / MANIFEST).read_text()) for n in "ab"]
    assert manifests[0] == manifests[1]


def test_recordings_hold_motion_events(tiny_tree):
    """Each recording has events, sorted by time, inside the sensor and inside its duration."""
    for ev, label, _ in list(iter_dataset(tiny_tree, "test"))[:22]:
        assert ev.size > 0 and 0 <= label < 11
        assert np.all(np.diff(ev["t"]) >= 0) and ev["t"].max() <= 80_000


def test_missing_or_bad_data_is_a_clear_error(tmp_path):
    """A folder without the layout, or a malformed .npy, raises the package's error."""
    with pytest.raises(DataNotFoundError):
        list_samples(tmp_path, "test")
    bad = tmp_path / "x.npy"
    np.save(bad, np.zeros((3, 3)))
    with pytest.raises(SourceError):
        load_events(bad)
    with pytest.raises(SourceError):
        generate_dataset(tmp_path, 1, seed=0)


def test_demo_recording_cycles_through_classes():
    """The demo is one time-sorted stream whose spans follow the requested classes back to back."""
    ev, spans = make_demo([1, 8], 0.2, seed=1)
    assert [s["class"] for s in spans] == [1, 8]
    assert spans[1]["t_start_us"] == spans[0]["t_end_us"] == 200_000
    assert np.all(np.diff(ev["t"]) >= 0) and ev["t"].max() < 400_000
    with pytest.raises(SourceError):
        make_demo([11], 0.2, seed=1)
