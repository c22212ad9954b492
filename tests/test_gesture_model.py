"""Gesture training and evaluation on a tiny DVSGesture-layout tree: the loss falls, eval prints its fields."""

import json
from pathlib import Path

import numpy as np
import pytest

from s2node import modelfile
from s2node.errors import S2NodeError
from s2node.train_gesture import GestureTrainConfig, train
from sources.binning import InputSpec
from stream.cli import main


@pytest.fixture(scope="module")
def toy_tree(tmp_path_factory) -> Path:
    """Per class, events in its own horizontal stripe of the sensor: easy, but real files in tonic's layout."""
    root = tmp_path_factory.mktemp("toy") / "DVSGesture"
    rng = np.random.default_rng(0)
    for split, users in (("ibmGestureTrain", (1, 2, 3)), ("ibmGestureTest", (4,))):
        for u in users:
            d = root / split / f"user{u:02d}_lab"
            d.mkdir(parents=True)
            for c in range(11):
                n = 600
                t = np.sort(rng.integers(0, 400, n))
                y = 8 + 10 * c + rng.integers(0, 8, n)
                rows = np.stack([rng.integers(0, 128, n), y, rng.integers(0, 2, n), t], 1).astype(np.int32)
                np.save(d / f"{c}.npy", rows)
    return root.parent


def test_tiny_training_lowers_the_loss_and_saves_a_valid_model(toy_tree, tmp_path):
    """A few epochs on the toy tree lower the training loss and write a model file with classes and input spec."""
    spec = InputSpec(128, 128, downsample=8, bin_us=20_000, scale=0.25)
    cfg = GestureTrainConfig(arch="egru", hidden=(24,), epochs=8, batch_size=11, lr=3e-2, window_s=0.3,
                             warmup_steps=5, threshold_init=0.1, shift_cells=0, activity_reg=0.0, seed=0)
    out = tmp_path / "g"
    hist = train(toy_tree, out, cfg, spec, progress=False)["history"]
    assert hist[-1]["loss"] < 0.85 * hist[0]["loss"]
    config, tensors = modelfile.load(out)
    assert config["task"] == "gesture" and len(config["classes"]) == 11
    assert InputSpec.from_config(config["input"]) == spec
    assert tensors["rnn.0.weight_ih"].shape == (72, spec.size)


def test_prune_finetune_keeps_the_mask(toy_tree, tmp_path):
    """--init + --prune 0.8 fine-tunes a trained gesture model with 80 % of each recurrent matrix zero."""
    import dataclasses

    import numpy as np

    spec = InputSpec(128, 128, downsample=8, bin_us=20_000, scale=0.25)
    cfg = GestureTrainConfig(arch="egru", hidden=(16,), epochs=1, batch_size=11, window_s=0.3, warmup_steps=5)
    train(toy_tree, tmp_path / "m", cfg, spec, progress=False)
    tuned = dataclasses.replace(cfg, init_from=str(tmp_path / "m"), prune=0.8)
    train(toy_tree, tmp_path / "p", tuned, spec, progress=False)
    _, tensors = modelfile.load(tmp_path / "p")
    for name in ("rnn.0.weight_ih", "rnn.0.weight_hh"):
        assert abs(float(np.mean(tensors[name] == 0)) - 0.8) < 0.01, name


@pytest.mark.parametrize("arch", ["egru", "lstm"])
def test_init_into_wider_layers_keeps_the_logits_and_trains_the_new_units(toy_tree, tmp_path, arch):
    """--init with a larger --hidden widens a trained model: the old units keep their weights, the new ones
    start with nothing to say (the same logits, two layers deep), and fine-tuning gives them weights."""
    import dataclasses

    import torch

    from s2node.models import build_torch_model
    from s2node.train_gesture import build_model, load_weights

    spec = InputSpec(128, 128, downsample=8, bin_us=20_000, scale=0.25)
    cfg = GestureTrainConfig(arch=arch, hidden=(12, 10), epochs=1, batch_size=11, window_s=0.3, warmup_steps=5)
    train(toy_tree, tmp_path / "m", cfg, spec, progress=False)
    wide_cfg = dataclasses.replace(cfg, hidden=(20, 16), init_from=str(tmp_path / "m"))
    wide = build_model(wide_cfg, spec)
    load_weights(wide, str(tmp_path / "m"))
    narrow = build_torch_model(*modelfile.load(tmp_path / "m"))
    x = torch.from_numpy(np.random.default_rng(1).poisson(1.0, (2, 40, spec.size)).astype(np.float32) * 0.25)
    wide.eval()
    narrow.eval()
    with torch.no_grad():
        a, b = wide(x)[0], narrow(x)[0]
    assert a.shape == b.shape and float((a - b).abs().max()) < 1e-5
    train(toy_tree, tmp_path / "w", wide_cfg, spec, progress=False)
    _, tensors = modelfile.load(tmp_path / "w")
    assert tensors["decoder.weight"].shape == (11, 16) and np.abs(tensors["decoder.weight"][:, 10:]).max() > 0
    with pytest.raises(S2NodeError, match="widened"):
        load_weights(build_model(dataclasses.replace(cfg, hidden=(8, 10)), spec), str(tmp_path / "m"))


@pytest.mark.parametrize("arch", ["egru", "lstm"])
def test_eval_json_has_the_documented_fields(toy_tree, tmp_path, capsys, arch):
    """`s2 eval MODEL --data DIR --json` prints accuracy and the NeuroBench-style counters."""
    spec = InputSpec(128, 128, downsample=8, bin_us=20_000, scale=0.25)
    cfg = GestureTrainConfig(arch=arch, hidden=(16,), epochs=1, batch_size=11, window_s=0.3, warmup_steps=5)
    train(toy_tree, tmp_path / "m", cfg, spec, progress=False)
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "m"), "--data", str(toy_tree), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["metric"] == "accuracy" and 0.0 <= r["value"] <= 1.0 and r["samples"] == 11
    assert 0.0 <= r["activity_sparsity"] <= 1.0 and r["steps"] == sum(1 for _ in range(11)) * 20
    assert 0 < r["synops_per_step"] <= r["dense_ops_per_step"] * 1.0 + 1
    assert r["params"] == sum(t.size for t in modelfile.load(tmp_path / "m")[1].values())


def test_eval_without_data_is_one_line_error(tmp_path, capsys):
    """Evaluating on a folder without the layout exits 1 with a one-line message."""
    spec = InputSpec(128, 128, downsample=8, bin_us=20_000, scale=0.25)
    from s2node.train_gesture import build_model, save

    cfg = GestureTrainConfig(hidden=(8,))
    save(build_model(cfg, spec), tmp_path / "m", cfg, spec, [], "")
    assert main(["eval", str(tmp_path / "m"), "--data", str(tmp_path / "nothing")]) == 1
    assert "ibmGestureTest" in capsys.readouterr().err


def test_augmentations_move_and_rescale_counts():
    """Shift moves counts by whole cells without losing them; stretch shortens the sequence and scales counts."""
    from s2node.train_gesture import shift_cells, stretch_bins

    spec = InputSpec(128, 128, downsample=16, bin_us=20_000, scale=1.0)
    x = np.zeros((3, spec.size), np.float32)
    x[:, 1 * 8 * 8 + 3 * 8 + 4] = 2.0  # ON channel, y = 3, x = 4
    moved = shift_cells(x, spec, dx=2, dy=-1)
    assert moved[:, 1 * 64 + 2 * 8 + 6].tolist() == [2.0, 2.0, 2.0] and moved.sum() == x.sum()
    assert shift_cells(x, spec, dx=8, dy=0).sum() == 0
    fast = stretch_bins(np.ones((30, 4), np.float32), 1.5)
    assert len(fast) == 20 and np.allclose(fast, 1.5)


def test_zoom_and_thinning_shrink_a_subject_and_drop_events():
    """zoom_cells moves every cell toward the centre without losing a count (a factor of 1 changes nothing);
    thin_counts keeps about the drawn fraction of events, none at 0 and all at 1."""
    from s2node.train_gesture import thin_counts, zoom_cells

    spec = InputSpec(128, 128, downsample=4, bin_us=20_000, scale=1.0)
    gw, gh = spec.grid
    rng = np.random.default_rng(0)
    x = rng.poisson(0.3, (5, spec.size)).astype(np.int16)
    assert zoom_cells(x, spec, 1.0) is x
    small = zoom_cells(x, spec, 0.5)
    assert small.sum() == x.sum() and (small.sum(0) >= 0).all()

    def spread(a):  # the mean distance of the counts from the grid's centre, in cells
        g = a.reshape(len(a), 2, gh, gw).sum((0, 1))
        ys, xs = np.mgrid[0:gh, 0:gw]
        return float((g * np.hypot(ys - (gh - 1) / 2, xs - (gw - 1) / 2)).sum() / g.sum())

    assert abs(spread(small) - 0.5 * spread(x)) < 1.0
    on_only = np.zeros((1, spec.size), np.int16)
    on_only[0, gh * gw + 0] = 3  # the OFF half stays the OFF half
    assert zoom_cells(on_only, spec, 0.5)[0, gh * gw:].sum() == 3
    assert thin_counts(x, 1.0, rng) is x and thin_counts(x, 0.0, rng).sum() == 0
    kept = thin_counts(x, 0.5, rng)
    assert (kept <= x).all() and abs(kept.sum() / x.sum() - 0.5) < 0.02


def test_sparse_streams_come_more_often_in_an_epoch():
    """epoch_order: every stream once, those below the rate `repeat` times, in a random order; bad values are one
    line from the CLI's config."""
    from s2node.errors import S2NodeError
    from s2node.train_gesture_stream import StreamTrainConfig, epoch_order

    rates = np.array([500.0, 12.0, 300.0, 40.0, 80.0])
    order = epoch_order(rates, 60.0, 3, np.random.default_rng(0))
    assert np.bincount(order, minlength=5).tolist() == [1, 3, 1, 3, 1]
    assert sorted(epoch_order(rates, 0.0, 3, np.random.default_rng(0)).tolist()) == [0, 1, 2, 3, 4]
    assert order.tolist() != sorted(order.tolist())
    with pytest.raises(S2NodeError, match="--sparse-repeat"):
        StreamTrainConfig(sparse_repeat=0)


def test_background_adds_even_noise_at_the_drawn_rate():
    """add_background adds Poisson counts spread evenly over the inputs, about the drawn number per bin, and
    keeps every count already there; a rate of 0 changes nothing."""
    from s2node.train_gesture import add_background

    rng = np.random.default_rng(0)
    x = np.zeros((400, 2048), np.int16)
    x[:, 100] = 7
    assert add_background(x, 0.0, rng) is x
    y = add_background(x, 150.0, rng)
    extra = y.astype(np.int64) - x
    assert y.dtype == x.dtype and (extra >= 0).all()
    assert abs(float(extra.sum(1).mean()) - 150.0) < 3.0  # per bin
    per_input = extra.sum(0)
    assert per_input.min() > 0 and per_input.max() < 3 * per_input.mean()  # everywhere, evenly


def test_init_onto_a_coarser_grid_pools_the_input_weights(toy_tree, tmp_path):
    """--init with a larger --downsample pools the first layer's input weights onto the coarser grid: input
    that is even within each coarse cell gives the same logits as on the fine grid; a downsample that is
    not a whole multiple is a one-line error."""
    import dataclasses

    import torch

    from s2node.models import build_torch_model
    from s2node.train_gesture import build_model, load_weights

    fine = InputSpec(128, 128, downsample=8, bin_us=20_000, scale=0.25)
    coarse = dataclasses.replace(fine, downsample=16)
    cfg = GestureTrainConfig(arch="egru", hidden=(12,), epochs=1, batch_size=11, window_s=0.3, warmup_steps=5)
    train(toy_tree, tmp_path / "m", cfg, fine, progress=False)
    model = build_model(dataclasses.replace(cfg, init_from=str(tmp_path / "m")), coarse)
    load_weights(model, str(tmp_path / "m"), coarse)
    cw, ch = coarse.grid
    xc = np.random.default_rng(1).poisson(4.0, (2, 30, 2, ch, cw)).astype(np.float32)
    xf = xc.repeat(2, axis=3).repeat(2, axis=4) / 4  # each coarse count spread evenly over its 2 x 2 cells
    ref = build_torch_model(*modelfile.load(tmp_path / "m"))
    model.eval()
    ref.eval()
    with torch.no_grad():
        a = model(torch.from_numpy(xc.reshape(2, 30, -1) * 0.25))[0]
        b = ref(torch.from_numpy(xf.reshape(2, 30, -1) * 0.25))[0]
    assert a.shape == b.shape and float((a - b).abs().max()) < 1e-4
    odd = dataclasses.replace(fine, downsample=12)
    with pytest.raises(S2NodeError, match="multiple of 8"):
        load_weights(build_model(cfg, odd), str(tmp_path / "m"), odd)
