"""The EGRU layer and model files: pseudo-derivative, streaming step, save/load, malformed files."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from s2node import modelfile
from s2node.errors import ModelFileError
from s2node.models import EGRUOptions, LanguageModel, build_torch_model, load_torch_model
from s2node.torch_egru import EGRU, spike


def test_pseudo_derivative_matches_triangle_formula():
    """The spike's backward is γ·max(0, 1 − s·|x|) and its forward H(x) with H(0) = 0."""
    x = torch.linspace(-1.5, 1.5, 61, requires_grad=True)
    gamma, support = 0.7, 2.0
    out = spike(x, gamma, support)
    out.sum().backward()
    expected = gamma * torch.clamp(1 - support * x.detach().abs(), min=0)
    assert torch.allclose(x.grad, expected)
    assert torch.equal(out, (x.detach() > 0).float())
    assert spike(torch.zeros(1)).item() == 0.0


@pytest.mark.parametrize("zoneout", [0.0, 0.3])
def test_step_equals_forward(zoneout):
    """In eval, step() one step at a time gives the same y and c as forward() (zoneout included)."""
    torch.manual_seed(0)
    layer = EGRU(5, 7, zoneout=zoneout, threshold_init=0.05).eval()
    x = torch.randn(3, 12, 5)
    full = layer(x)
    state = None
    ys = []
    for t in range(12):
        state = layer.step(x[:, t], state)
        ys.append(state.y)
    assert torch.allclose(torch.stack(ys, 1), full.y, atol=1e-6)
    assert torch.allclose(state.c, full.state.c, atol=1e-6)
    assert 0 < (full.o == 0).float().mean() < 1  # the test exercises both firing and silent units


def tiny_lm(arch: str = "egru") -> LanguageModel:
    torch.manual_seed(1)
    return LanguageModel(arch, 11, 6, [8, 9], egru=EGRUOptions(zoneout=0.2, threshold_init=0.05)).eval()


def lm_config(model: LanguageModel, arch: str = "egru", unk: str | None = "<unk>") -> dict:
    vocab = [chr(97 + i) for i in range(10)] + ["<unk>"]
    return {"task": "lm", "arch": arch, "level": "char", "vocab": vocab, "unk": unk,
            "layers": model.rnn.layer_configs(), "readout": {"source": "y", "trace_alpha": 0.9, "pool": "last"}}


@pytest.mark.parametrize("arch", ["egru", "lstm", "gru"])
def test_save_load_round_trip(tmp_path, arch):
    """A saved language model loads back to the same logits (zoneout of EGRU layers kept)."""
    model = tiny_lm(arch)
    modelfile.save(tmp_path / "m", lm_config(model, arch), model.to_tensors())
    loaded, _config = load_torch_model(tmp_path / "m")
    tokens = torch.randint(0, 11, (2, 15))
    assert torch.allclose(model(tokens)[0], loaded(tokens)[0], atol=1e-6)
    if arch == "egru":
        assert [layer.zoneout for layer in loaded.rnn.layers] == [0.2, 0.2]


def test_build_from_a_loaded_file_equals_loading_the_path(tmp_path):
    """build_torch_model on (config, tensors) already read gives the model load_torch_model reads from the path."""
    model = tiny_lm()
    modelfile.save(tmp_path / "m", lm_config(model), model.to_tensors())
    config, tensors = modelfile.load(tmp_path / "m")
    built, (loaded, _) = build_torch_model(config, tensors), load_torch_model(tmp_path / "m")
    tokens = torch.randint(0, 11, (1, 9))
    assert torch.equal(built(tokens)[0], loaded(tokens)[0])


def test_load_leaves_no_file_open(tmp_path):
    """Loading a model file, or refusing a pickled one, closes every file it opened (no ResourceWarning)."""
    import gc
    import warnings

    model = tiny_lm()
    modelfile.save(tmp_path / "m", lm_config(model), model.to_tensors())
    (tmp_path / "p.json").write_text((tmp_path / "m.json").read_text())
    (tmp_path / "p.safetensors").write_bytes(pickle.dumps({"x": 1}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        modelfile.load(tmp_path / "m")
        with pytest.raises(ModelFileError, match="pickle"):
            modelfile.load(tmp_path / "p")
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_float16_storage_round_trip(tmp_path):
    """float16 storage halves the big matrices; loading gives float32 tensors equal to the float16-rounded ones,
    and the small ones (biases, thresholds) stay exact. Other dtypes are still refused."""
    from safetensors.numpy import load_file

    model = tiny_lm()
    big = {k for k, v in model.to_tensors().items() if v.size >= 200}
    modelfile.FLOAT16_MIN_SIZE, old = 200, modelfile.FLOAT16_MIN_SIZE
    try:
        modelfile.save(tmp_path / "h", lm_config(model), model.to_tensors(), float16=True)
    finally:
        modelfile.FLOAT16_MIN_SIZE = old
    raw = load_file(str(tmp_path / "h.safetensors"))
    assert big and {k for k, v in raw.items() if v.dtype == np.float16} == big
    _, t = modelfile.load(tmp_path / "h")
    for k, v in model.to_tensors().items():
        assert t[k].dtype == np.float32
        want = v.astype(np.float16).astype(np.float32) if k in big else v
        np.testing.assert_array_equal(t[k], want)
    raw["decoder.bias"] = raw["decoder.bias"].astype(np.int32)
    _rewrite(tmp_path / "h", raw)
    with pytest.raises(ModelFileError, match=r"decoder\.bias has dtype int32"):
        modelfile.load(tmp_path / "h")


@pytest.fixture
def saved(tmp_path):
    model = tiny_lm()
    modelfile.save(tmp_path / "m", lm_config(model), model.to_tensors())
    return tmp_path / "m"


def _rewrite(path, tensors):
    from safetensors.numpy import save_file

    save_file(tensors, str(path.with_suffix(".safetensors")))


def test_missing_tensor_refused(saved):
    """A weights file without one of the config's tensors is refused, naming it."""
    _, t = modelfile.load(saved)
    del t["rnn.1.threshold"]
    _rewrite(saved, t)
    with pytest.raises(ModelFileError, match=r"missing tensor 'rnn\.1\.threshold'"):
        modelfile.load(saved)


def test_wrong_shape_refused(saved):
    """A tensor of the wrong shape is refused with both shapes in the message."""
    _, t = modelfile.load(saved)
    t["decoder.bias"] = np.zeros(12, np.float32)
    _rewrite(saved, t)
    with pytest.raises(ModelFileError, match=r"decoder.bias has shape \(12,\), expected \(11,\)"):
        modelfile.load(saved)


def test_bad_json_refused(saved):
    """A config that is not JSON is refused as bad JSON."""
    saved.with_suffix(".json").write_text('{"format": ')
    with pytest.raises(ModelFileError, match="bad JSON"):
        modelfile.load(saved)


def test_pickle_refused_by_cli(saved):
    """Weights that are a pickle are refused before parsing; `s2 eval` says so in one line, exit 1."""
    saved.with_suffix(".safetensors").write_bytes(pickle.dumps({"rnn.0.weight_ih": [1.0]}))
    with pytest.raises(ModelFileError, match="pickle"):
        modelfile.load(saved)
    r = subprocess.run([sys.executable, "-m", "stream.cli", "eval", str(saved), "--json"], capture_output=True,
                       text=True)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "pickle" in r.stderr


def test_config_fault_named(saved):
    """A config whose unk is not in the vocabulary is refused naming the unk."""
    cfg = json.loads(saved.with_suffix(".json").read_text())
    cfg["unk"] = "?"
    saved.with_suffix(".json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match="unk '\\?' is not in the vocabulary"):
        modelfile.load(saved)
