"""Language-model data, training and evaluation on tiny generated corpora (no download needed)."""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import replace

import numpy as np
import pytest
import torch

from s2node import modelfile
from s2node.errors import S2NodeError
from s2node.models import LanguageModel
from s2node.train_lm import TrainConfig, matched_hidden, total_params, train
from sources.errors import SourceError
from sources.text_data import EOS, UNK, Vocab, batchify, bptt_windows, build_vocab, encode, tokenize

WORDS = {"task": "lm", "level": "word", "vocab": ["the", "cat", "sat", EOS, UNK], "unk": UNK}


def test_word_tokens_end_lines_with_eos_and_map_unknowns():
    """Word level splits on whitespace with <eos> per line; unknown words go to <unk> and are counted."""
    toks = tokenize("the cat\n a dog \n", "word")
    assert toks == ["the", "cat", EOS, "a", "dog", EOS]
    vocab = build_vocab(toks, "word")
    ids, n_unk = vocab.encode(tokenize("the bird\n", "word"))
    assert n_unk == 1 and vocab.decode(ids) == ["the", "<unk>", EOS]


def test_vocab_needs_its_unk_token():
    """A training vocabulary whose unk token is missing is a SourceError naming it."""
    with pytest.raises(SourceError, match="'<unk>' is not in the vocabulary"):
        Vocab(("a", "b"))


def test_encode_ends_every_line_with_eos_at_word_level():
    """Word level puts <eos> at every line end, the text's last line included whether or not a newline follows."""
    ids, n = encode("the cat\nsat\n", WORDS)
    assert ids.tolist() == [0, 1, 3, 2, 3] and n == 0
    assert encode("the cat\nsat", WORDS)[0].tolist() == [0, 1, 3, 2, 3]
    assert encode("the\r\n\ncat\n", WORDS)[0].tolist() == [0, 3, 3, 1, 3]


def test_encode_streamed_pieces_leave_the_last_line_open():
    """With final_eos=False a piece without a trailing newline gets no <eos>, so pieces encode as the whole text."""
    assert encode("the cat", WORDS, final_eos=False)[0].tolist() == [0, 1]
    assert encode("sat\n", WORDS, final_eos=False)[0].tolist() == [2, 3]
    pieces = ["the ", "cat\nsat ", "the", " cat\n"]
    streamed = np.concatenate([encode(p, WORDS, final_eos=False)[0] for p in pieces])
    assert streamed.tolist() == encode("".join(pieces), WORDS)[0].tolist()


def test_encode_unknowns_go_to_unk_or_are_dropped_and_counted():
    """Tokens outside the vocabulary become unk when the model has one, else are dropped; both are counted."""
    ids, n = encode("the dog sat\n", WORDS)
    assert ids.tolist() == [0, 4, 2, 3] and n == 1
    no_unk = dict(WORDS, vocab=["the", "cat", "sat", EOS], unk=None)
    ids, n = encode("the dog sat\n", no_unk)
    assert ids.tolist() == [0, 2, 3] and n == 1


def test_encode_emits_eos_only_when_the_vocabulary_has_it():
    """A word vocabulary without <eos> gets no <eos> tokens (neither as unk nor counted as unknown)."""
    ids, n = encode("the cat\nsat\n", dict(WORDS, vocab=["the", "cat", "sat", UNK]))
    assert ids.tolist() == [0, 1, 2] and n == 0


def test_encode_char_level_keeps_every_character():
    """Character level: every character is a token, the newline included, and no <eos>."""
    cfg = {"level": "char", "vocab": ["a", "b", "\n", UNK], "unk": UNK}
    ids, n = encode("ab\nzb", cfg)
    assert ids.tolist() == [0, 1, 2, 3, 1] and n == 1
    assert encode("ab\nzb", dict(cfg, vocab=["a", "b", "\n"], unk=None))[0].tolist() == [0, 1, 2, 1]


def test_encode_agrees_with_training_tokens():
    """For a training vocabulary (with <eos> and <unk>) encode gives the ids training computes from tokenize."""
    train_tokens = tokenize("the cat sat\nthe mat\n", "word")
    vocab = build_vocab(train_tokens, "word")
    cfg = {"level": "word", "vocab": list(vocab.tokens), "unk": vocab.unk}
    text = "the dog sat\non the mat"
    ids, n = encode(text, cfg)
    ref, n_ref = vocab.encode(tokenize(text, "word"))
    assert ids.tolist() == ref.tolist() and n == n_ref == 2


def test_encode_agrees_with_the_streamed_text_pipeline():
    """stream's TextLM turns each message into the ids that encode gives with final_eos=False (shipped PTB model)."""
    from pathlib import Path

    from s2node.step import TorchStepModel
    from stream.text_pipeline import TextLM

    model = TorchStepModel(Path(__file__).resolve().parent.parent / "models" / "ptb-egru")
    lm = TextLM(model)
    for message in ("the market fell", "sharply today\n", "qqzzx rose\n\nagain", "\n"):
        assert lm.tokens(message) == encode(message, model.config, final_eos=False)[0].tolist()


def test_batchify_and_windows_shift_targets_by_one():
    """batchify makes contiguous rows and every BPTT window's targets are its inputs shifted by one."""
    data = batchify(np.arange(23), 2)
    assert data.shape == (2, 11) and data[1, 0] == 11
    windows = list(bptt_windows(data, 4))
    assert [w[1].shape[1] for w in windows] == [4, 4, 2]
    for _, x, y in windows:
        assert np.array_equal(y, x + 1)


@pytest.mark.parametrize("arch", ["gru", "egru"])
def test_matched_sizes_have_lstm_parameter_count(arch):
    """GRU/EGRU sizes are chosen so that the total parameter count is within 1 % of the LSTM's."""
    for vocab, emb, ref in ((10000, 200, [200, 200]), (85, 64, [200, 200])):
        hidden = matched_hidden(arch, vocab, emb, ref)
        target = total_params("lstm", vocab, emb, ref)
        assert abs(total_params(arch, vocab, emb, hidden) - target) / target < 0.01
        assert hidden[0] > ref[0]
        model = LanguageModel(arch, vocab, emb, hidden)
        assert sum(p.numel() for p in model.parameters()) == total_params(arch, vocab, emb, hidden)


def write_corpus(tmp_path) -> tuple[str, str]:
    rng = np.random.default_rng(0)
    # A learnable text: repeated words in a fixed order with a little noise.
    words = ["to be or not to be", "that is the question", "whether tis nobler"]
    lines = [words[i % 3] if rng.random() > 0.1 else "noise line" for i in range(300)]
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "valid.txt").write_text("\n".join(lines[:60]) + "\n")
    return str(tmp_path / "train.txt"), str(tmp_path / "valid.txt")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm")
    torch.set_num_threads(1)
    files = write_corpus(tmp)
    cfg = TrainConfig(corpus="shakespeare", arch="egru", preset="tiny", epochs=2, text_files=files, seed=3)
    summary = train(cfg, tmp / "model", ckpt_dir=tmp / "runs", progress=False, log=lambda _: None)
    return tmp, summary, cfg


def test_tiny_training_lowers_the_loss(trained):
    """Two epochs of the tiny preset bring the validation loss far below the uniform guess ln(V)."""
    tmp, summary, _ = trained
    config, _ = modelfile.load(tmp / "model")
    uniform = math.log(len(config["vocab"]))
    assert summary["history"][-1]["valid_loss"] < 0.6 * uniform
    assert config["level"] == "char" and config["unk"] == "<unk>" and config["readout"]["source"] == "y"


def test_resume_continues_from_checkpoint(trained):
    """--resume picks up the checkpoint's position and counts on from its batches."""
    tmp, summary, cfg = trained
    more = train(TrainConfig(**{**cfg.__dict__, "epochs": 3}), tmp / "model", resume=True, ckpt_dir=tmp / "runs",
                 progress=False, log=lambda _: None)
    assert more["batches"] > summary["batches"]
    assert [h["epoch"] for h in more["history"]] == [1, 2, 3]


def run_eval(capsys, *args) -> subprocess.CompletedProcess:
    """`s2 eval ARGS` through the real CLI entry point, in-process (saves a torch import per call)."""
    from stream.cli import main

    capsys.readouterr()
    rc = main(["eval", *args])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, rc, out.out, out.err)


def test_eval_json_fields_on_text_file(trained, capsys):
    """`s2 eval --text FILE --json` prints bpc, sparsity, synops and counts for a character model."""
    tmp, _, _ = trained
    text = tmp / "eval.txt"
    text.write_text("to be or not to be\nthat is the question~\n")  # '~' is outside the vocabulary -> <unk>
    r = run_eval(capsys, str(tmp / "model"), "--text", str(text), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["metric"] == "bpc" and 0 < out["value"] < 10
    assert out["steps"] == len(text.read_text()) - 1 and out["unk_mapped"] == 1
    assert 0.0 <= out["activity_sparsity"] <= 1.0
    assert 0 < out["synops_per_step"] <= out["dense_ops_per_step"]
    _config, tensors = modelfile.load(tmp / "model")
    assert out["params"] == sum(t.size for t in tensors.values())
    r = run_eval(capsys, str(tmp / "model"), "--text", str(text), "--json", "--max-steps", "5")
    assert json.loads(r.stdout)["steps"] == 5


def test_eval_without_unk_says_so(trained, capsys):
    """Evaluating text with unknown characters on a model without unk is a one-line error."""
    tmp, _, _ = trained
    config, tensors = modelfile.load(tmp / "model")
    modelfile.save(tmp / "nounk", dict(config, unk=None), tensors)
    text = tmp / "odd.txt"
    text.write_text("to be~\n")
    r = run_eval(capsys, str(tmp / "nounk"), "--text", str(text))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "no unk" in r.stderr


def test_dense_lstm_pays_all_synops(tmp_path):
    """An LSTM's outputs are dense, so it pays every weight each step except the zero initial state's."""
    from s2node.eval_lm import evaluate_ids

    torch.manual_seed(0)
    model = LanguageModel("lstm", 5, 4, [6]).eval()
    r = evaluate_ids(model, model.to_tensors(), np.array([0, 1, 2, 3, 4, 0, 1]))
    s = r["counter"].summary()
    assert s["activity_sparsity"] == 0.0 and r["steps"] == 6
    assert s["synops_per_step"] * 6 == s["dense_ops_per_step"] * 6 - model.rnn.layers[0].weight_hh_l0.numel()


def test_activity_loss_per_unit_penalises_silent_units():
    """With half the units always on and half silent, the layer mean hits the target but the per-unit form does not."""
    from s2node.train_lm import activity_loss

    o = torch.zeros(2, 3, 4)
    o[..., :2] = 1.0  # rate 1 for two units, 0 for two: mean rate 0.5
    assert activity_loss([o], 0.5).item() == 0.0
    assert activity_loss([o], 0.5, per_unit=True).item() == pytest.approx(0.25)


def test_prune_finetune_keeps_the_mask(trained):
    """--init + --prune 0.9 fine-tunes a trained model with 90 % of each recurrent matrix zero, and saves it so."""
    import numpy as np

    tmp, _, cfg = trained
    out = tmp / "pruned"
    train(TrainConfig(**{**cfg.__dict__, "epochs": 1, "init_from": str(tmp / "model"), "prune": 0.9}), out,
          ckpt_dir=tmp / "runs-pruned", progress=False, log=lambda _: None)
    config, tensors = modelfile.load(out)
    for name, t in tensors.items():
        if name.startswith("rnn.") and ".weight_" in name:
            assert abs(float(np.mean(t == 0)) - 0.9) < 0.01, name
    assert config["training"]["prune"] == 0.9


def test_shipped_ptb_egru_loads_from_its_float16_file():
    """models/ptb-egru: a word-level EGRU with the PTB vocabulary, big matrices stored as float16, loaded as
    float32, and its JSON records the recipe that made it."""
    from pathlib import Path

    from safetensors.numpy import load_file

    from s2node import modelfile

    path = Path(__file__).resolve().parent.parent / "models" / "ptb-egru"
    config, tensors = modelfile.load(path)
    assert config["arch"] == "egru" and config["level"] == "word" and len(config["vocab"]) == 10_000
    assert all(t.dtype == np.float32 for t in tensors.values())
    raw = load_file(str(path.with_suffix(".safetensors")))
    assert raw["embedding.weight"].dtype == np.float16 and raw["rnn.0.threshold"].dtype == np.float32
    recipe = config["training"]["preset_values"]
    assert recipe["optimizer"] == "adam" and recipe["embedding_sgd_lr"] == 20.0
    assert config["training"]["egru"]["gamma"] == 2.0 and config["training"]["egru"]["support"] == 4.0
    assert recipe["epochs"] == 10


def test_weight_decay_override_spares_thresholds():
    """--weight-decay: AdamW (decoupled) with adam, L2 with sgd, and never on the EGRU thresholds."""
    import torch

    from s2node.models import EGRUOptions
    from s2node.train_lm import PRESETS, TrainConfig, build_model, make_optimizer

    preset = replace(PRESETS["tiny"], weight_decay=0.1)
    cfg = TrainConfig(corpus="shakespeare", arch="egru", preset="tiny", egru=EGRUOptions())
    model, _ = build_model(cfg, preset, 20)
    opt = make_optimizer(model, preset, cfg)
    assert isinstance(opt, torch.optim.AdamW)
    thr = {id(p) for n, p in model.named_parameters() if n.endswith("threshold")}
    for g in opt.param_groups:
        is_thr = {id(p) for p in g["params"]} <= thr
        assert g["weight_decay"] == (0.0 if is_thr else 0.1)
    sgd = make_optimizer(model, replace(preset, optimizer="sgd"), cfg)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["weight_decay"] == 0.1


def test_embedding_sgd_lr_mixes_sgd_and_adam(tmp_path):
    """--embedding-sgd-lr: the embedding and decoder take plain SGD steps (lr x grad), the EGRU takes Adam
    steps; set_lr scales both; a run with it trains and resumes from its checkpoint."""
    import torch

    from s2node.models import EGRUOptions
    from s2node.train_lm import PRESETS, MixedOptimizer, TrainConfig, build_model, make_optimizer, set_lr

    preset = replace(PRESETS["tiny"], embedding_sgd_lr=2.0)  # tiny: adam, lr 1e-2
    cfg = TrainConfig(corpus="shakespeare", arch="egru", preset="tiny", egru=EGRUOptions())
    model, _ = build_model(cfg, preset, 20)
    opt = make_optimizer(model, preset, cfg)
    assert isinstance(opt, MixedOptimizer)
    set_lr(opt, preset.lr / 2)  # the schedule halves both
    emb0, w0 = model.embedding.weight.detach().clone(), model.rnn.layers[0].weight_hh.detach().clone()
    logits, _, _ = model(torch.randint(0, 20, (2, 5)))
    logits.sum().backward()
    g_emb = model.embedding.weight.grad.clone()
    opt.step()
    assert torch.allclose(model.embedding.weight.detach(), emb0 - 1.0 * g_emb, atol=1e-6)  # SGD at 2.0 / 2
    step = (model.rnn.layers[0].weight_hh.detach() - w0).abs()
    assert step.max().item() == pytest.approx(preset.lr / 2, rel=1e-3)  # Adam's first step: lr x sign(grad)
    files = write_corpus(tmp_path)
    run = TrainConfig(corpus="shakespeare", arch="egru", preset="tiny", epochs=1, text_files=files, seed=1,
                      overrides={"embedding_sgd_lr": 2.0})
    first = train(run, tmp_path / "m", ckpt_dir=tmp_path / "runs", progress=False, log=lambda _: None)
    vocab_size = len(modelfile.load(tmp_path / "m")[0]["vocab"])
    assert first["history"][-1]["valid_loss"] < 0.8 * math.log(vocab_size)  # well below the uniform guess
    more = train(TrainConfig(**{**run.__dict__, "epochs": 2}), tmp_path / "m", resume=True,
                 ckpt_dir=tmp_path / "runs", progress=False, log=lambda _: None)
    assert [h["epoch"] for h in more["history"]] == [1, 2] and more["batches"] > first["batches"]
    with pytest.raises(S2NodeError, match="needs --optimizer adam"):
        make_optimizer(model, replace(preset, optimizer="sgd"), cfg)
