"""Model files: NAME.safetensors (weights) + NAME.json (config). The interchange format of DESIGN.md.

Never pickle: weights are read with safetensors only, and loading checks every name, shape and dtype
against the JSON config before anything uses them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from s2node.errors import ModelFileError

FORMAT = "s2egru-model"
VERSION = 1
TASKS = ("lm", "gesture")
ARCHS = ("egru", "lstm", "gru")


def model_paths(path: str | Path) -> tuple[Path, Path]:
    """models/x, models/x.json or models/x.safetensors -> (x.json, x.safetensors)."""
    p = Path(path)
    if p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".json"), p.with_name(p.name + ".safetensors")


def gate_rows(arch: str) -> int:
    return {"egru": 3, "gru": 3, "lstm": 4}[arch]


def expected_tensors(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every tensor name the config implies, with its shape."""
    arch, out = config["arch"], {}
    g = gate_rows(arch)
    for i, layer in enumerate(config["layers"]):
        inp, hid = int(layer["input_size"]), int(layer["hidden_size"])
        out[f"rnn.{i}.weight_ih"] = (g * hid, inp)
        out[f"rnn.{i}.weight_hh"] = (g * hid, hid)
        out[f"rnn.{i}.bias_ih"] = (g * hid,)
        out[f"rnn.{i}.bias_hh"] = (g * hid,)
        if arch == "egru":
            out[f"rnn.{i}.threshold"] = (hid,)
    h_last = int(config["layers"][-1]["hidden_size"])
    if config["task"] == "lm":
        out["embedding.weight"] = (len(config["vocab"]), int(config["layers"][0]["input_size"]))
        n_out = len(config["vocab"])
    else:
        n_out = len(config["classes"])
    out["decoder.weight"] = (n_out, h_last)
    out["decoder.bias"] = (n_out,)
    return out


def validate_config(config: Any, where: str) -> dict[str, Any]:
    """Check the JSON config's required keys and their coherence; raise ModelFileError naming the first fault."""

    def bad(msg: str) -> ModelFileError:
        return ModelFileError(where, msg)

    if not isinstance(config, dict):
        raise bad("config is not a JSON object")
    if config.get("format") != FORMAT:
        raise bad(f"not an s2egru model (format is {config.get('format')!r}, expected {FORMAT!r})")
    if config.get("version") != VERSION:
        raise bad(f"unsupported version {config.get('version')!r} (this s2egru reads {VERSION})")
    if config.get("task") not in TASKS:
        raise bad(f"task must be one of {TASKS}, not {config.get('task')!r}")
    if config.get("arch") not in ARCHS:
        raise bad(f"arch must be one of {ARCHS}, not {config.get('arch')!r}")
    layers = config.get("layers")
    if not isinstance(layers, list) or not layers:
        raise bad("'layers' must be a non-empty list of {input_size, hidden_size}")
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict):
            raise bad(f"layers[{i}] is not an object")
        for k in ("input_size", "hidden_size"):
            v = layer.get(k)
            if not isinstance(v, int) or v <= 0:
                raise bad(f"layers[{i}].{k} must be a positive integer, not {v!r}")
        if i and layer["input_size"] != layers[i - 1]["hidden_size"]:
            raise bad(f"layers[{i}].input_size {layer['input_size']} != layers[{i-1}].hidden_size")
    readout = config.setdefault("readout", {"source": "y", "trace_alpha": 0.9, "pool": "last"})
    if readout.get("source") not in ("y", "trace") or readout.get("pool") not in ("last", "mean"):
        raise bad("readout must have source 'y'|'trace' and pool 'last'|'mean'")
    w = readout.get("window_s", 0.0)
    if isinstance(w, bool) or not isinstance(w, int | float) or not 0 <= w < math.inf:
        raise bad(f"readout.window_s must be a number of seconds, 0 or more, not {w!r}")
    if config["task"] == "lm":
        if config.get("level") not in ("char", "word"):
            raise bad("a language model needs level 'char' or 'word'")
        vocab = config.get("vocab")
        if not isinstance(vocab, list) or not vocab or not all(isinstance(w, str) for w in vocab):
            raise bad("a language model needs 'vocab', a non-empty list of strings")
        if len(set(vocab)) != len(vocab):
            raise bad("'vocab' has duplicate entries")
        if config.get("unk") is not None and config["unk"] not in vocab:
            raise bad(f"unk {config['unk']!r} is not in the vocabulary")
    else:
        classes = config.get("classes")
        if not isinstance(classes, list) or not classes:
            raise bad("a gesture model needs 'classes', a non-empty list")
        inp = config.get("input")
        need = ("sensor", "downsample", "bin_us", "layout", "scale")
        if not isinstance(inp, dict) or any(k not in inp for k in need):
            raise bad(f"a gesture model needs 'input' with {', '.join(need)}")
    return config


def check_safetensors_header(path: Path) -> None:
    """Refuse anything that is not a safetensors file (a pickle, a zip from torch.save) before parsing."""
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError as e:
        raise ModelFileError(str(path), f"cannot read weights: {e.strerror}") from e
    if head[:1] == b"\x80" or head[:2] == b"PK":
        raise ModelFileError(str(path), "weights are a pickle/torch.save file; only safetensors is accepted")
    if len(head) < 9 or head[8:9] != b"{":
        raise ModelFileError(str(path), "not a safetensors file (bad header)")


def read_config(path: str | Path) -> dict[str, Any]:
    """Read and check a model file's JSON alone (no weights)."""
    jpath, _ = model_paths(path)
    try:
        config = json.loads(jpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(str(jpath), f"bad JSON: {e}") from e
    except FileNotFoundError as e:
        raise ModelFileError(str(jpath), "model config not found") from e
    except OSError as e:
        raise ModelFileError(str(jpath), f"cannot read config: {e.strerror}") from e
    return validate_config(config, str(jpath))


def load(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and check a model file; returns (config, float32 numpy tensors by name)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    jpath, wpath = model_paths(path)
    if not jpath.is_file():
        raise ModelFileError(str(jpath), "model config not found")
    if not wpath.is_file():
        raise ModelFileError(str(wpath), "model weights not found")
    config = read_config(path)
    check_safetensors_header(wpath)
    try:
        tensors = load_file(str(wpath))
    except (SafetensorError, ValueError, OSError) as e:
        raise ModelFileError(str(wpath), f"cannot read safetensors: {e}") from e
    expected = expected_tensors(config)
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing:
        raise ModelFileError(str(wpath), f"missing tensor {missing[0]!r} ({len(missing)} missing)")
    if extra:
        raise ModelFileError(str(wpath), f"unexpected tensor {extra[0]!r} for this config")
    for name, shape in expected.items():
        t = tensors[name]
        if tuple(t.shape) != shape:
            raise ModelFileError(str(wpath), f"{name} has shape {tuple(t.shape)}, expected {shape}")
        if t.dtype not in (np.float32, np.float16):
            raise ModelFileError(str(wpath), f"{name} has dtype {t.dtype}, expected float32 (or float16)")
        if not np.all(np.isfinite(t)):
            raise ModelFileError(str(wpath), f"{name} holds NaN or infinite values")
    # float16 is a storage format only (small files): every backend computes from float32
    return config, {k: v.astype(np.float32) if v.dtype != np.float32 else v for k, v in tensors.items()}


# With float16=True, matrices of at least this many values are stored as float16 (biases, thresholds stay float32).
FLOAT16_MIN_SIZE = 65_536


def save(path: str | Path, config: dict[str, Any], tensors: dict[str, np.ndarray], float16: bool = False) -> Path:
    """Write NAME.json + NAME.safetensors after checking that they agree; returns the JSON path. `float16` stores
    the large matrices (embedding, decoder, big weight matrices) at half the size; loading turns them back into
    float32, so the model is the float16-rounded one from then on."""
    from safetensors.numpy import save_file

    jpath, wpath = model_paths(path)
    config = validate_config(dict(config, format=FORMAT, version=VERSION), str(jpath))
    arrays = {k: np.ascontiguousarray(np.asarray(v, dtype=np.float32)) for k, v in tensors.items()}
    if float16:
        for k, v in arrays.items():
            if v.size >= FLOAT16_MIN_SIZE:
                if np.abs(v).max() > np.finfo(np.float16).max:
                    raise ModelFileError(str(wpath), f"{k} holds values beyond float16's range; save as float32")
                arrays[k] = v.astype(np.float16)
    expected = expected_tensors(config)
    if set(arrays) != set(expected):
        diff = sorted(set(arrays) ^ set(expected))
        raise ModelFileError(str(wpath), f"tensors do not match the config: {diff[:3]}")
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise ModelFileError(str(wpath), f"{name} has shape {arrays[name].shape}, expected {shape}")
    jpath.parent.mkdir(parents=True, exist_ok=True)
    save_file(arrays, str(wpath), metadata={"format": FORMAT, "version": str(VERSION)})
    jpath.write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    return jpath
