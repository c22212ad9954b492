"""Training on continuous streams and isolated clips together (`s2 train gesture --continuous --clip-weight`)."""

from __future__ import annotations

import dataclasses

import numpy as np

from s2node import modelfile
from s2node.train_gesture import GestureTrainConfig
from s2node.train_gesture_stream import StreamTrainConfig, train_streams
from sources.binning import InputSpec
from sources.gesture_data import generate_dataset
from sources.gesture_stream import StreamConfig, generate_streams


def test_clip_loss_joins_the_stream_loss(tmp_path):
    """With a clip weight, one epoch on streams also learns from the training clips and scores the test clips;
    the weight and the filter are stored with the model."""
    short = StreamConfig(duration_s=3.0, segment_s=(1.5, 1.5), idle_probability=0.0, fps=100)
    generate_streams(tmp_path, 1, 0, split="train", cfg=short, progress=False)
    generate_streams(tmp_path, 1, 0, split="test", cfg=short, progress=False)
    generate_dataset(tmp_path / "clips", 2, 0, duration_s=0.5, fps=100, lightings=1, progress=False)
    cfg = GestureTrainConfig(arch="egru", hidden=(8,), epochs=1, batch_size=2, window_s=0.4, seed=0)
    spec = InputSpec(denoise_us=5_000)
    out = tmp_path / "m"
    hist = train_streams(tmp_path, out, cfg, StreamTrainConfig(chunk_s=0.5, clip_weight=1.0), spec,
                         progress=False, clips=tmp_path / "clips")
    last = hist["history"][-1]
    assert np.isfinite(last["loss"]) and 0.0 <= last["test_accuracy"] <= 1.0
    config, _ = modelfile.load(out)
    assert config["training"]["continuous"]["clip_weight"] == 1.0 and config["input"]["denoise_us"] == 5_000


def test_sparse_streams_repeat_over_several_epochs(tmp_path):
    """--sparse-below/--sparse-repeat: every epoch of a run goes through the repeated streams (two epochs, so the
    second one's order is drawn from the same per-stream rates), and the settings are stored with the model."""
    short = StreamConfig(duration_s=3.0, segment_s=(1.5, 1.5), idle_probability=0.0, fps=100)
    generate_streams(tmp_path, 2, 0, split="train", cfg=short, progress=False)
    generate_streams(tmp_path, 1, 0, split="test", cfg=short, progress=False)
    cfg = GestureTrainConfig(arch="egru", hidden=(8,), epochs=2, batch_size=2, window_s=0.4, seed=0)
    out = tmp_path / "m"
    scfg = StreamTrainConfig(chunk_s=0.5, sparse_below=1e9, sparse_repeat=2)  # every stream counts as sparse
    hist = train_streams(tmp_path, out, cfg, scfg, InputSpec(), progress=False)
    assert [h["epoch"] for h in hist["history"]] == [1, 2] and all(np.isfinite(h["loss"]) for h in hist["history"])
    stored = modelfile.load(out)[0]["training"]["continuous"]
    assert (stored["sparse_below"], stored["sparse_repeat"]) == (1e9, 2)


def test_stream_training_widens_and_prunes_an_initial_model(tmp_path):
    """--init with a wider --hidden, then --init WIDE --prune P on streams: the model grows, and the second run
    keeps exactly P of each recurrent matrix at zero through training, so that a wider model fits the chip in
    fp32."""
    short = StreamConfig(duration_s=3.0, segment_s=(1.5, 1.5), idle_probability=0.0, fps=100)
    generate_streams(tmp_path, 2, 0, split="train", cfg=short, progress=False)
    generate_streams(tmp_path, 1, 0, split="test", cfg=short, progress=False)
    cfg = GestureTrainConfig(arch="egru", hidden=(8,), epochs=1, batch_size=2, window_s=0.4, seed=0)
    train_streams(tmp_path, tmp_path / "m", cfg, StreamTrainConfig(chunk_s=0.5), InputSpec(), progress=False)
    wide = dataclasses.replace(cfg, hidden=(12,), init_from=str(tmp_path / "m"))
    train_streams(tmp_path, tmp_path / "w", wide, StreamTrainConfig(chunk_s=0.5), InputSpec(), progress=False)
    assert modelfile.load(tmp_path / "w")[1]["rnn.0.weight_hh"].shape == (36, 12)
    pruned = dataclasses.replace(wide, init_from=str(tmp_path / "w"), prune=0.4)
    train_streams(tmp_path, tmp_path / "p", pruned, StreamTrainConfig(chunk_s=0.5), InputSpec(), progress=False)
    _, tensors = modelfile.load(tmp_path / "p")
    for name in ("rnn.0.weight_ih", "rnn.0.weight_hh"):
        assert abs(float(np.mean(tensors[name] == 0)) - 0.4) < 0.01, name
