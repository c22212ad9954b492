"""`s2 node inspect` and `s2 node run` end to end through the s2 command line."""

import json
import subprocess
import sys

import numpy as np
import pytest
from node_models import make_gesture, make_lm, random_counts

from s2node import modelfile
from s2node.errors import S2NodeError
from s2node.models import load_torch_model
from s2node.node_inputs import gesture_samples, lm_token_ids
from s2node.node_run import NodeOptions, run_gesture, run_model
from s2node.runtime import Node


def s2(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], capture_output=True, text=True)


def test_inspect_json_reports_the_placement(tmp_path):
    """`s2 node inspect --json` reports PEs used, SRAM by kind within 128 KB, routing entries and DRAM bytes."""
    path = make_lm(tmp_path / "lm")
    r = s2("node", "inspect", str(path), "--json", "--numerics", "int8")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert 0 < rep["pes_used"] <= 152 and rep["sram_bytes_per_pe"]["max"] <= 131072
    assert rep["sram_bytes_by_kind"]["row_scales"] > 0 and rep["routing_entries"] <= 16384
    assert rep["dram_bytes"] == 0


def test_inspect_with_chip_config_and_too_small_chip_is_one_line(tmp_path):
    """A chip config too small for the model gives exit 1 and one line with the bytes over."""
    path = make_gesture(tmp_path / "g", n_in=2048, hidden=(256,))
    cfg = tmp_path / "chip.json"
    cfg.write_text(json.dumps({"n_pes": 4, "n_qpes": 1}))
    r = s2("node", "inspect", str(path), "--chip-config", str(cfg))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "bytes over" in r.stderr


def test_run_text_reports_quality_agreement_and_costs(tmp_path):
    """`s2 node run --text` scores bits per character, agrees with PyTorch and reports cost figures."""
    path = make_lm(tmp_path / "lm", hidden=(64, 64))
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 8 + "\u00e9")  # é is not in the vocab
    r = s2("node", "run", str(path), "--text", str(text), "--json", "--max-steps", "300")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["steps"] == 300 and out["agreement"] >= 0.999 and out["tokens_dropped"] == 1
    assert abs(out["bpc"] - out["bpc_pytorch"]) < 1e-3 and 0 < out["bpc"] < 20
    assert out["latency_s_p99"] >= out["latency_s_p50"] > 0 and out["energy_j_per_token"] > 0
    assert out["dense_equivalent"]["synops_per_step"] >= out["synops_per_step"]
    assert sum(out["pe_load_histogram"]["pes"]) == out["pes_used"] and out["steps_per_s"] > 0


def test_run_gesture_model_with_text_is_a_user_error(tmp_path):
    """Asking a gesture model to run text is a one-line error, exit 1."""
    path = make_gesture(tmp_path / "g", n_in=512, hidden=(32,))
    text = tmp_path / "t.txt"
    text.write_text("hello")
    r = s2("node", "run", str(path), "--text", str(text))
    assert r.returncode == 1 and "gesture" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_run_gesture_reports_accuracy_and_agreement(tmp_path):
    """run_gesture scores labelled samples, agrees with PyTorch step by step and reports energy per gesture."""
    path = make_gesture(tmp_path / "g", n_in=512, hidden=(64,))
    model, _ = load_torch_model(path)
    rng = np.random.default_rng(0)
    samples = [(random_counts(rng, 30, 512, 0.05), i % 3) for i in range(4)]
    out = run_gesture(Node.load(path), model, samples)
    assert out["samples"] == 4 and out["steps"] == 120 and out["agreement"] >= 0.999
    assert 0.0 <= out["accuracy"] <= 1.0 and out["energy_j_per_gesture"] > 30 * out["energy_j_per_step"] * 0.99


def test_run_data_dir_bins_tonic_layout(tmp_path):
    """`s2 node run --data` reads tonic-layout .npy recordings, bins them and runs them beside PyTorch."""
    path = make_gesture(tmp_path / "g", n_in=2048, hidden=(32,))
    d = tmp_path / "ibmGestureTest" / "user01_led"
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    n = 2000
    ev = np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n),
                   np.sort(rng.integers(0, 500, n))], 1).astype(np.float64)  # x, y, p, t in ms
    np.save(d / "3.npy", ev)
    r = s2("node", "run", str(path), "--data", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["samples"] == 1 and out["agreement"] >= 0.999 and out["accuracy"] in (0.0, 1.0)
    assert out["steps"] == 50  # 500 ms of events in 10 ms bins


def test_run_split_reads_the_corpus_cache(tmp_path):
    """`s2 node run --split test --data-dir D` scores the cached corpus split the model was trained on."""
    from sources.corpora import CORPORA

    path = make_lm(tmp_path / "lm", hidden=(32,))
    folder, pattern = CORPORA["shakespeare"]
    split = tmp_path / "cache" / folder / pattern.format(split="test")
    split.parent.mkdir(parents=True, exist_ok=True)
    split.write_text("to be, or not to be: that is the question.\n" * 10, encoding="utf-8")
    r = s2("node", "run", str(path), "--split", "test", "--data-dir", str(tmp_path / "cache"), "--json",
           "--max-steps", "100")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["steps"] == 100 and out["agreement"] >= 0.999 and out["bpc"] > 0


def test_lm_token_ids_drop_and_count_unknowns_without_unk(tmp_path):
    """A text file for a model without unk: characters outside the vocabulary are dropped and counted."""
    config, _ = modelfile.load(make_lm(tmp_path / "lm", hidden=(16,)))
    text = tmp_path / "t.txt"
    text.write_text("ab\u00e9c\n")
    ids, dropped = lm_token_ids(config, text_path=text)
    assert [config["vocab"][i] for i in ids] == ["a", "b", "c", "\n"] and dropped == 1


def test_run_model_refuses_inputs_of_the_other_task(tmp_path):
    """run_model on a language model with an event file, or on a gesture model with no input, is an S2NodeError."""
    lm = modelfile.load(make_lm(tmp_path / "lm", hidden=(16,)))
    with pytest.raises(S2NodeError, match="language model"):
        run_model(*lm, NodeOptions(), events_path=tmp_path / "x.npy")
    config, _ = modelfile.load(make_gesture(tmp_path / "g", n_in=512, hidden=(16,)))
    with pytest.raises(S2NodeError, match="event file or a DVSGesture folder"):
        gesture_samples(config)
