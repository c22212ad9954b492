"""The s2 command line: help, version, one-line errors."""

import subprocess
import sys


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], capture_output=True, text=True)


def test_help_lists_commands():
    """`s2 --help` lists the sub-commands the packages contribute."""
    r = run("--help")
    assert r.returncode == 0
    for cmd in ("data", "train", "eval"):
        assert cmd in r.stdout


def test_version():
    """`s2 --version` prints the package version."""
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("s2egru ")


def test_unknown_subcommand_is_one_line_exit_2():
    """An unknown sub-command gives one line on stderr and exit status 2."""
    r = run("frobnicate")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "invalid choice" in r.stderr


def test_bad_option_is_one_line_exit_2():
    """A bad option gives one line and exit status 2."""
    r = run("eval", "--no-such-option")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1


def test_out_of_range_numbers_are_one_line_exit_2():
    """A zero buffer or a NaN speed is refused by the parser with one line, before anything starts."""
    for args in (("run", "--source", "synthetic", "--buffer", "0"), ("replay", "x.npy", "--speed", "nan")):
        r = run(*args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_commands_come_from_every_package_through_entry_points():
    """`s2 --help` lists the commands of all four packages, found through the s2egru.commands entry points."""
    from importlib.metadata import entry_points

    names = {e.name for e in entry_points(group="s2egru.commands")}
    assert names == {"sources", "s2node", "stream", "tui"}
    out = run("--help").stdout
    for cmd in ("data", "node", "replay", "subscribe", "tui"):
        assert cmd in out


def test_argparse_lives_only_in_the_command_modules():
    """In every package only commands.py parses options (stream: and cli.py, the entry point); no library does."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for package in ("sources", "s2node", "stream", "tui"):
        users = {p.relative_to(root).as_posix() for p in (root / package).rglob("*.py") if "argparse" in p.read_text()}
        assert users - {"stream/cli.py"} == {f"{package}/commands.py"}


def test_lm_preset_choices_are_the_training_presets():
    """`s2 train lm --preset` offers exactly the presets the trainer knows."""
    from s2node.commands import LM_PRESETS
    from s2node.train_lm import PRESETS

    assert set(LM_PRESETS) == set(PRESETS)
