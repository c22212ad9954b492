"""Language-model training: presets, matched-size baselines, a seeded and resumable loop, model files.

Checkpoints are safetensors (model, optimiser, RNG) + JSON (position, lr, history), never pickles.
The finished model (the best one on the validation split) goes to `--out` in the format of DESIGN.md.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from s2node import modelfile
from s2node.compiler import prune
from s2node.errors import S2NodeError
from s2node.models import EGRUOptions, LanguageModel
from sources import corpora
from sources.text_data import Vocab, batchify, bptt_windows, build_vocab, n_windows, read_text, tokenize

CORPUS_LEVEL = {"ptb": "word", "ptb-char": "char", "shakespeare": "char"}


@dataclass(frozen=True)
class Preset:
    """A training recipe. `hidden` is the LSTM's layer sizes; GRU and EGRU get sizes of equal parameter count."""

    emb: int
    hidden: tuple[int, ...]
    bptt: int
    batch: int
    optimizer: str  # "sgd" (Zaremba) or "adam"
    lr: float
    clip: float
    epochs: int
    decay_from: int  # first epoch (1-based) whose lr is divided by `decay`; 0 = decay on validation plateau
    decay: float = 4.0
    dropout: float = 0.0
    eval_batch: int = 10
    weight_decay: float = 0.0  # decoupled (AdamW) with adam, L2 with sgd; never on thresholds
    embedding_sgd_lr: float = 0.0  # >0 with adam: embedding and decoder get plain SGD at this lr instead


PRESETS: dict[str, Preset] = {
    # Zaremba et al. 2014 "small" in PyTorch terms (mean loss): SGD lr 20, clip 0.25, lr/4 from epoch 5
    # (reference section 7 measured this LSTM at 114.3 valid perplexity after 5 epochs).
    "small": Preset(emb=200, hidden=(200, 200), bptt=20, batch=20, optimizer="sgd", lr=20.0, clip=0.25,
                    epochs=13, decay_from=5),
    # Character level (Shakespeare demo): 2 x 200-unit LSTM scale, Adam. bptt 50 x batch 64 rather than
    # 100 x 32: same tokens per update, half the sequential steps (the CPU cost of an EGRU is per step).
    "char": Preset(emb=64, hidden=(200, 200), bptt=50, batch=64, optimizer="adam", lr=3e-3, clip=1.0,
                   epochs=10, decay_from=0, decay=2.0, eval_batch=32),
    # For tests and smoke runs.
    "tiny": Preset(emb=16, hidden=(24,), bptt=10, batch=4, optimizer="adam", lr=1e-2, clip=1.0,
                   epochs=1, decay_from=0, decay=2.0, eval_batch=2),
}


@dataclass(frozen=True)
class TrainConfig:
    corpus: str
    arch: str
    preset: str = "small"
    epochs: int | None = None
    seed: int = 0
    max_minutes: float | None = None
    max_batches: int | None = None  # total training batches (equal-budget comparisons)
    max_eval_tokens: int | None = None  # cap the validation pass (per eval) to save CPU
    hidden: tuple[int, ...] | None = None  # override; else the preset's LSTM size, matched for gru/egru
    match_params: bool = True
    egru: EGRUOptions = field(default_factory=EGRUOptions)
    activity_reg: float = 0.0  # λ of the activity regulariser (0: off)
    activity_target: float = 0.1  # target firing rate of that regulariser
    activity_per_unit: bool = False  # regularise every unit's rate (no dead or always-on units), not the mean
    lr_threshold: float = 1.0  # threshold learning-rate factor (0 freezes thresholds)
    data_dir: str | None = None
    text_files: tuple[str, str] | None = None  # (train, valid) text files instead of a corpus (tests)
    init_from: str | None = None  # start from this model file's weights (fine-tuning, e.g. with prune)
    prune: float | None = None  # magnitude-prune the EGRU/RNN matrices to this sparsity, keep them pruned
    overrides: dict[str, Any] = field(default_factory=dict)  # Preset fields to replace (optimizer, lr, clip, ...)
    float16: bool = False  # store the finished model's big matrices as float16 (half the file)

    def __post_init__(self) -> None:
        if self.prune is not None and not 0.0 <= self.prune < 1.0:
            raise S2NodeError(f"prune must lie in [0, 1), not {self.prune}")


# ---- sizes -----------------------------------------------------------------------------------------


def stack_params(arch: str, emb: int, hidden: list[int]) -> int:
    """Parameters of the recurrent stack (weights, biases, EGRU thresholds)."""
    g = modelfile.gate_rows(arch)
    n, inp = 0, emb
    for h in hidden:
        n += g * h * (inp + h + 2) + (h if arch == "egru" else 0)
        inp = h
    return n


def total_params(arch: str, vocab: int, emb: int, hidden: list[int]) -> int:
    return vocab * emb + stack_params(arch, emb, hidden) + vocab * hidden[-1] + vocab


def matched_hidden(arch: str, vocab: int, emb: int, ref: list[int]) -> list[int]:
    """Layer sizes for `arch` whose TOTAL parameter count (embedding, stack, decoder) is closest to that of an
    LSTM with sizes `ref`; every layer is scaled by the same factor (equal sizes stay equal)."""
    if arch == "lstm":
        return list(ref)
    target = total_params("lstm", vocab, emb, ref)
    best, best_err = list(ref), math.inf
    for k in range(1, 4 * max(ref)):
        sizes = [max(1, round(h * k / max(ref))) for h in ref]
        err = abs(total_params(arch, vocab, emb, sizes) - target)
        if err < best_err:
            best, best_err = sizes, err
    return best


# ---- data ------------------------------------------------------------------------------------------


def load_corpus(cfg: TrainConfig) -> tuple[str, Vocab, np.ndarray, np.ndarray]:
    """(level, vocab built on train, train ids, valid ids)."""
    level = CORPUS_LEVEL.get(cfg.corpus)
    if level is None:
        raise S2NodeError(f"unknown corpus {cfg.corpus!r} (known: {', '.join(CORPUS_LEVEL)})")
    if cfg.text_files:
        train_text, valid_text = (read_text(p) for p in cfg.text_files)
    else:
        train_text = read_text(corpora.corpus_path(cfg.corpus, "train", cfg.data_dir))
        valid_text = read_text(corpora.corpus_path(cfg.corpus, "valid", cfg.data_dir))
    train_tok = tokenize(train_text, level)
    vocab = build_vocab(train_tok, level)
    train, _ = vocab.encode(train_tok)
    valid, _ = vocab.encode(tokenize(valid_text, level))
    return level, vocab, train, valid


# ---- model -----------------------------------------------------------------------------------------


def build_model(cfg: TrainConfig, preset: Preset, vocab_size: int) -> tuple[LanguageModel, list[int]]:
    ref = list(cfg.hidden or preset.hidden)
    hidden = matched_hidden(cfg.arch, vocab_size, preset.emb, ref) if cfg.match_params and not cfg.hidden else ref
    model = LanguageModel(cfg.arch, vocab_size, preset.emb, hidden, dropout=preset.dropout, egru=cfg.egru)
    if preset.optimizer == "sgd":
        # Zaremba: every weight uniform(±0.1) (the EGRU thresholds keep their own initialisation).
        for name, p in model.named_parameters():
            if not name.endswith("threshold"):
                nn.init.uniform_(p, -0.1, 0.1)
    return model, hidden


class MixedOptimizer:
    """Adam(W) for the recurrent stack, plain SGD for the embedding and decoder.

    Why: Adam gives every embedding and decoder row a step of about lr whatever its word's frequency, and
    on PTB the EGRU memorised rare words with it (training perplexity 104 at valid 181); SGD's steps scale
    with frequency. `param_groups` and `state` are the parts' own objects, so set_lr and checkpoints work as
    for one optimiser (SGD without momentum keeps no state)."""

    def __init__(self, adam: torch.optim.Optimizer, sgd: torch.optim.Optimizer) -> None:
        self.adam, self.sgd = adam, sgd
        self.param_groups = adam.param_groups + sgd.param_groups
        self.state = adam.state

    def step(self) -> None:
        self.adam.step()
        self.sgd.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.adam.zero_grad(set_to_none)
        self.sgd.zero_grad(set_to_none)


AnyOptimizer = torch.optim.Optimizer | MixedOptimizer


def make_optimizer(model: nn.Module, preset: Preset, cfg: TrainConfig) -> AnyOptimizer:
    named = list(model.named_parameters())
    thr = [p for n, p in named if n.endswith("threshold")]
    if preset.embedding_sgd_lr > 0 and preset.optimizer != "adam":
        raise S2NodeError("--embedding-sgd-lr needs --optimizer adam (with sgd every weight already takes SGD steps)")
    mixed = preset.embedding_sgd_lr > 0
    outer = [p for n, p in named if n.startswith(("embedding.", "decoder."))] if mixed else []
    outer_ids = {id(p) for p in outer}
    rest = [p for n, p in named if not n.endswith("threshold") and id(p) not in outer_ids]
    groups = [{"params": rest, "lr_factor": 1.0}]
    if thr:
        groups.append({"params": thr, "lr_factor": cfg.lr_threshold, "weight_decay": 0.0})
    for g in groups:
        g["lr"] = preset.lr * g["lr_factor"]
    if preset.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=preset.lr, weight_decay=preset.weight_decay)
    adam = (torch.optim.AdamW(groups, lr=preset.lr, weight_decay=preset.weight_decay) if preset.weight_decay
            else torch.optim.Adam(groups, lr=preset.lr))
    if not mixed:
        return adam
    # The SGD group follows the same schedule: its lr is a fixed multiple of the Adam lr.
    factor = preset.embedding_sgd_lr / preset.lr
    sgd = torch.optim.SGD([{"params": outer, "lr_factor": factor, "lr": preset.embedding_sgd_lr}],
                          lr=preset.embedding_sgd_lr)
    return MixedOptimizer(adam, sgd)


def set_lr(opt: AnyOptimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr * g["lr_factor"]


def activity_loss(events: list[Tensor], target: float, per_unit: bool = False) -> Tensor:
    """Σ_layers (mean firing rate − target)², or with `per_unit` Σ_layers mean_units (rate_i − target)²; the
    gradient flows through the pseudo-derivative of o. The per-unit form also revives silent units (measured: with
    the population form 74 % of the second layer's units never fired while 10 % always did)."""
    if per_unit:
        return sum((((o.mean((0, 1)) - target) ** 2).mean() for o in events), torch.zeros(()))
    return sum(((o.mean() - target) ** 2 for o in events), torch.zeros(()))


@torch.no_grad()
def evaluate(model: LanguageModel, data: np.ndarray, bptt: int, max_tokens: int | None = None) -> dict[str, float]:
    """Mean cross-entropy (nats/token) and activity sparsity over a batchified split, state carried."""
    model.eval()
    states, total, count, zeros, outs = None, 0.0, 0, 0, 0
    for _, x, y in bptt_windows(data, bptt):
        logits, states, events = model(torch.from_numpy(x), states)
        total += nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.from_numpy(y).reshape(-1),
                                             reduction="sum").item()
        count += y.size
        for o in events:
            zeros += int((o == 0).sum())
            outs += o.numel()
        if max_tokens and count >= max_tokens:
            break
    loss = total / max(count, 1)
    return {"loss": loss, "sparsity": zeros / outs if outs else 0.0, "tokens": count}


# ---- checkpoints -----------------------------------------------------------------------------------


def _ckpt_paths(out: Path, ckpt_dir: Path) -> tuple[Path, Path]:
    return ckpt_dir / f"{out.name}.ckpt.safetensors", ckpt_dir / f"{out.name}.ckpt.json"


def save_checkpoint(out: Path, ckpt_dir: Path, model: nn.Module, opt: AnyOptimizer, state: dict) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    for i, (p, s) in enumerate(zip((p for g in opt.param_groups for p in g["params"]),
                                   (opt.state.get(p, {}) for g in opt.param_groups for p in g["params"]),
                                   strict=True)):
        del p
        for k, v in s.items():
            if isinstance(v, Tensor):
                tensors[f"opt.{i}.{k}"] = v.detach().contiguous().reshape(v.shape)
    tensors["rng.torch"] = torch.get_rng_state()
    wpath, jpath = _ckpt_paths(out, ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(wpath) + ".part")
    Path(str(wpath) + ".part").replace(wpath)
    jpath.write_text(json.dumps(state, indent=1) + "\n")


def load_checkpoint(out: Path, ckpt_dir: Path, model: nn.Module, opt: AnyOptimizer) -> dict | None:
    from safetensors.torch import load_file

    wpath, jpath = _ckpt_paths(out, ckpt_dir)
    if not (wpath.is_file() and jpath.is_file()):
        return None
    modelfile.check_safetensors_header(wpath)
    tensors = load_file(str(wpath))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    params = [p for g in opt.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        s = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"opt.{i}.")}
        if s:
            if "step" in s:
                s["step"] = s["step"].reshape(())
            opt.state[p] = s
    torch.set_rng_state(tensors["rng.torch"])
    return json.loads(jpath.read_text())


def model_config(cfg: TrainConfig, level: str, vocab: Vocab, model: LanguageModel, preset: Preset) -> dict[str, Any]:
    return {
        "task": "lm", "arch": cfg.arch, "level": level, "vocab": list(vocab.tokens), "unk": vocab.unk,
        "layers": model.rnn.layer_configs(),
        "readout": {"source": "y", "trace_alpha": 0.9, "pool": "last"},
        "training": {
            "corpus": cfg.corpus, "preset": cfg.preset, "preset_values": asdict(preset), "seed": cfg.seed,
            "egru": asdict(cfg.egru), "activity_reg": cfg.activity_reg, "activity_target": cfg.activity_target,
            "activity_per_unit": cfg.activity_per_unit,
            "lr_threshold": cfg.lr_threshold, "init_from": cfg.init_from, "prune": cfg.prune,
        },
    }


def _load_weights(model: LanguageModel, path: str, vocab: Vocab) -> None:
    """Copy a model file's weights into `model` (same arch, sizes and vocabulary), for fine-tuning."""
    config, tensors = modelfile.load(path)
    if list(config.get("vocab", [])) != list(vocab.tokens):
        raise S2NodeError(f"{path}: its vocabulary differs from the corpus's; cannot fine-tune from it")
    if model.to_tensors().keys() != tensors.keys() or any(
        model.to_tensors()[k].shape != v.shape for k, v in tensors.items()
    ):
        raise S2NodeError(f"{path}: its architecture or sizes differ from this run's (--arch/--hidden)")
    model.rnn.load_tensors(tensors)
    with torch.no_grad():
        model.embedding.weight.copy_(torch.from_numpy(tensors["embedding.weight"]))
        model.decoder.weight.copy_(torch.from_numpy(tensors["decoder.weight"]))
        model.decoder.bias.copy_(torch.from_numpy(tensors["decoder.bias"]))


# ---- the loop --------------------------------------------------------------------------------------


def train(cfg: TrainConfig, out: str | Path, *, resume: bool = False, ckpt_dir: str | Path = "runs",
          progress: bool = True, log=print) -> dict[str, Any]:
    """Train, write the best model (by validation loss) to `out`, and return the run summary."""
    from tqdm import tqdm

    if cfg.preset not in PRESETS:
        raise S2NodeError(f"unknown preset {cfg.preset!r} (known: {', '.join(PRESETS)})")
    preset = PRESETS[cfg.preset]
    if cfg.epochs:
        preset = replace(preset, epochs=cfg.epochs)
    if cfg.overrides:
        preset = replace(preset, **cfg.overrides)
    out, ckpt_dir = Path(out), Path(ckpt_dir)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    level, vocab, train_ids, valid_ids = load_corpus(cfg)
    model, hidden = build_model(cfg, preset, len(vocab))
    if cfg.init_from:
        _load_weights(model, cfg.init_from, vocab)
    masks = None
    if cfg.prune:
        masks = prune.prune_masks(model, cfg.prune)  # [1] pruned once, re-zeroed after every step
        log(f"pruned the recurrent matrices to {cfg.prune:.0%} weight sparsity; fine-tuning keeps the mask")
    opt = make_optimizer(model, preset, cfg)
    train_data = batchify(train_ids, preset.batch)
    valid_data = batchify(valid_ids, preset.eval_batch)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"{cfg.arch} {hidden} on {cfg.corpus} ({level}, vocab {len(vocab)}): {n_params:,} parameters, "
        f"{train_data.size:,} training tokens")
    state: dict[str, Any] = {"epoch": 1, "pos": 0, "lr": preset.lr, "batches": 0, "best_valid": None,
                             "history": [], "seconds": 0.0, "hidden": hidden}
    if resume:
        loaded = load_checkpoint(out, ckpt_dir, model, opt)
        if loaded:
            state = loaded
            log(f"resumed at epoch {state['epoch']}, position {state['pos']}, {state['batches']} batches")
    set_lr(opt, state["lr"])
    t0 = time.monotonic() - state["seconds"]
    last_ckpt = time.monotonic()

    def budget_spent() -> bool:
        if cfg.max_batches is not None and state["batches"] >= cfg.max_batches:
            return True
        return cfg.max_minutes is not None and (time.monotonic() - t0) / 60.0 >= cfg.max_minutes

    def end_of_epoch(partial: bool) -> None:
        v = evaluate(model, valid_data, preset.bptt, cfg.max_eval_tokens)
        entry = {"epoch": state["epoch"], "partial": partial, "batches": state["batches"], "lr": state["lr"],
                 "valid_loss": v["loss"], "valid_ppl": math.exp(min(v["loss"], 50)),
                 "valid_bpc": v["loss"] / math.log(2), "valid_sparsity": v["sparsity"],
                 "minutes": (time.monotonic() - t0) / 60.0}
        state["history"].append(entry)
        log(json.dumps(entry))
        improved = state["best_valid"] is None or v["loss"] < state["best_valid"]
        if improved:
            state["best_valid"] = v["loss"]
            modelfile.save(out, model_config(cfg, level, vocab, model, preset), model.to_tensors())
        elif preset.decay_from == 0:
            state["lr"] /= preset.decay  # plateau schedule
        if preset.decay_from and not partial and state["epoch"] + 1 >= preset.decay_from:
            state["lr"] /= preset.decay
        set_lr(opt, state["lr"])

    stopped = False
    while state["epoch"] <= preset.epochs and not stopped:
        model.train()
        states = None
        total = n_windows(train_data, preset.bptt)
        bar = tqdm(total=total, initial=state["pos"] // preset.bptt, desc=f"epoch {state['epoch']}",
                   disable=not progress, mininterval=5.0, unit="batch")
        run_loss, run_n = 0.0, 0
        for pos, x, y in bptt_windows(train_data, preset.bptt, start=state["pos"]):
            logits, states, events = model(torch.from_numpy(x), states)
            states = model.rnn.detach(states)
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.from_numpy(y).reshape(-1))
            full = loss
            if cfg.activity_reg:
                full = loss + cfg.activity_reg * activity_loss(events, cfg.activity_target, cfg.activity_per_unit)
            opt.zero_grad(set_to_none=True)
            full.backward()
            nn.utils.clip_grad_norm_(model.parameters(), preset.clip)
            opt.step()
            if masks is not None:
                prune.apply_masks(model, masks)  # [1]
            state["pos"], state["batches"] = pos + preset.bptt, state["batches"] + 1
            run_loss, run_n = run_loss + loss.item(), run_n + 1
            if run_n % 50 == 0:
                sp = 1.0 - float(torch.stack([o.detach().mean() for o in events]).mean()) if events else 0.0
                bar.set_postfix(loss=f"{run_loss / run_n:.3f}", sparsity=f"{sp:.2f}", lr=f"{state['lr']:.3g}")
            bar.update(1)
            if time.monotonic() - last_ckpt > 300:
                state["seconds"] = time.monotonic() - t0
                save_checkpoint(out, ckpt_dir, model, opt, state)
                last_ckpt = time.monotonic()
            if budget_spent():
                stopped = True
                break
        bar.close()
        end_of_epoch(partial=stopped)
        if not stopped:
            state["epoch"], state["pos"] = state["epoch"] + 1, 0
        state["seconds"] = time.monotonic() - t0
        save_checkpoint(out, ckpt_dir, model, opt, state)
    if cfg.float16 and modelfile.model_paths(out)[1].is_file():
        config, tensors = modelfile.load(out)
        modelfile.save(out, config, tensors, float16=True)
    summary = {"out": str(modelfile.model_paths(out)[0]), "arch": cfg.arch, "hidden": hidden, "params": n_params,
               "batches": state["batches"], "minutes": state["seconds"] / 60.0, "best_valid_loss": state["best_valid"],
               "history": state["history"]}
    return summary
