"""`s2 replay | run | subscribe` as users run them (subprocesses), with real external clients
(mosquitto_sub, mosquitto_pub) against a real mosquitto."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from stream_helpers import gesture_model_file, lm_model_file, recording

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def s2(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stream.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, **kw)


def stop(*procs: subprocess.Popen) -> None:
    """End the processes if still running and close their pipes (an open pipe is a ResourceWarning)."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
        try:
            p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()


def s2_run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def need(binary: str) -> str:
    p = shutil.which(binary) or f"/usr/bin/{binary}"
    if not os.access(p, os.X_OK):
        pytest.skip(f"{binary} not installed")
    return p


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing"])
def test_corrupt_or_missing_file_is_one_line_error(tmp_path, damage):
    """A truncated, garbage or missing event file gives one line on stderr and exit status 1, no traceback."""
    m = gesture_model_file(tmp_path)
    rec = recording(tmp_path / "r.npy", n=2000)
    if damage == "truncated":
        data = rec.read_bytes()
        rec.write_bytes(data[: len(data) // 3])
    elif damage == "garbage":
        rec.write_bytes(b"\x93NUMPY\x01\x00garbage" * 10)
    else:
        rec = tmp_path / "nope.npy"
    r = s2_run("replay", str(rec), "--model", str(m), "--speed", "0", "--broker", "mqtt://127.0.0.1:1")
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr and str(rec.name) in lines[0]


def test_missing_model_is_one_line_error(tmp_path):
    """A model path that does not exist names the file and says how to get one, in one line."""
    rec = recording(tmp_path / "r.npy", n=100)
    r = s2_run("replay", str(rec), "--model", str(tmp_path / "no-model"), "--broker", "mqtt://127.0.0.1:1")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "no-model.json" in r.stderr


@pytest.mark.broker
def test_mosquitto_sub_sees_replayed_predictions_and_s2_subscribe_prints_json(mosquitto, tmp_path):
    """`s2 replay --broker` publishes predictions that the real mosquitto_sub client and `s2 subscribe` both see."""
    sub_bin = need("mosquitto_sub")
    m = gesture_model_file(tmp_path)
    rec = recording(tmp_path / "r.npy", n=6000, duration_us=400_000)
    t = "s2/v1/ext/pred/gesture"
    sub = subprocess.Popen([sub_bin, "-h", mosquitto.host, "-p", str(mosquitto.port), "-t", t, "-q", "1",
                            "-C", "40", "-W", "60"], stdout=subprocess.PIPE, text=True)
    ours = s2("subscribe", "--broker", mosquitto.url, "--topic", t, "--count", "40", "--timeout-s", "60")
    try:
        import time

        time.sleep(1.5)  # both subscribers connected before the replay starts (s2 imports take a moment)
        r = s2_run("replay", str(rec), "--model", str(m), "--speed", "0", "--broker", mosquitto.url,
                   "--node", "ext")
        assert r.returncode == 0, r.stderr
        out, _ = sub.communicate(timeout=30)
        ours_out, _ = ours.communicate(timeout=30)
    finally:
        stop(sub, ours)
    got = [json.loads(line) for line in out.splitlines()]
    assert [g["seq"] for g in got] == list(range(40))
    assert all(g["v"] == 1 and g["label"] in g["classes"] and abs(sum(g["probs"]) - 1) < 1e-4 for g in got)
    lines = [json.loads(line) for line in ours_out.splitlines()]
    assert len(lines) == 40 and all(x["topic"] == t for x in lines)
    assert [x["payload"]["probs"] for x in lines] == [g["probs"] for g in got]
    assert "40 predictions" in r.stderr or "predictions" in r.stderr


@pytest.mark.broker
def test_mosquitto_pub_text_gets_text_prediction_back(mosquitto, tmp_path):
    """`mosquitto_pub -m hello` on in/text of `s2 run --source text` brings a pred/text back to mosquitto_sub."""
    pub_bin, sub_bin = need("mosquitto_pub"), need("mosquitto_sub")
    lm = lm_model_file(tmp_path)
    h, p = mosquitto.host, str(mosquitto.port)
    node = s2("run", "--source", "text", "--model", str(lm), "--broker", mosquitto.url, "--node", "tx",
              "--duration-s", "40", stdin=subprocess.DEVNULL)
    try:
        # the retained status says when the node is online
        st = subprocess.run([sub_bin, "-h", h, "-p", p, "-t", "s2/v1/tx/status", "-C", "1", "-W", "30"],
                            capture_output=True, text=True, timeout=40)
        if not st.stdout:
            node.terminate()
            pytest.fail(f"no status from `s2 run`: {node.communicate(timeout=10)[1][-2000:]}")
        assert json.loads(st.stdout)["state"] == "online"
        sub = subprocess.Popen([sub_bin, "-h", h, "-p", p, "-t", "s2/v1/tx/pred/text", "-C", "1", "-W", "30"],
                               stdout=subprocess.PIPE, text=True)
        import time

        time.sleep(0.5)
        subprocess.run([pub_bin, "-h", h, "-p", p, "-t", "s2/v1/tx/in/text", "-q", "1", "-m", "hello"], check=True)
        subprocess.run([pub_bin, "-h", h, "-p", p, "-t", "s2/v1/tx/in/text", "-m", "{broken"], check=True)
        out, _ = sub.communicate(timeout=40)
    finally:
        stop(node, *([sub] if "sub" in locals() else []))
    pred = json.loads(out)
    assert pred["context"] == "hello" and len(pred["continuation"]) == 20 and len(pred["topk"]) == 5
    assert np.isclose(pred["bpc"], pred["bpc"]) and pred["bpc"] > 0


@pytest.mark.broker
def test_replay_matches_s2_node_run_on_the_same_file(mosquitto, tmp_path):
    """`s2 replay` publishes one prediction per timestep that `s2 node run --events` counts, ending on its label."""
    m = gesture_model_file(tmp_path, seed=3)
    rec = recording(tmp_path / "r.npy", n=5000, duration_us=250_000, seed=4)
    ref = s2_run("node", "run", str(m), "--events", str(rec), "--json")
    if ref.returncode == 2 and "invalid choice" in ref.stderr:
        pytest.skip("`s2 node run` is not in this tree")
    assert ref.returncode == 0, ref.stderr
    ref_json = json.loads(ref.stdout)
    n = ref_json["steps"]
    sub = s2("subscribe", "--broker", mosquitto.url, "--topic", "s2/v1/nr/pred/gesture", "--count", str(n),
             "--timeout-s", "60")
    try:
        import time

        time.sleep(1.5)
        r = s2_run("replay", str(rec), "--model", str(m), "--speed", "0", "--broker", mosquitto.url, "--node", "nr",
                   "--no-frames", "--window-s", "0")  # pooled over the whole recording, as `s2 node run`
        assert r.returncode == 0, r.stderr
        out, _ = sub.communicate(timeout=30)
    finally:
        stop(sub)
    preds = [json.loads(line)["payload"] for line in out.splitlines()]
    assert [p["step"] for p in preds] == list(range(n))
    assert preds[-1]["label"] == ref_json["predictions"][-1]


@pytest.mark.broker
def test_s2_run_udp_spif_source_publishes_predictions(mosquitto, tmp_path):
    """`s2 run --source udp://` turns SPIF datagrams (as AEStream sends) into predictions on the broker."""
    import socket
    import time

    from sources.events import make_events
    from sources.live.udp import encode_spif
    from stream.broker import free_port

    m = gesture_model_file(tmp_path, bin_us=20_000)
    port = free_port()
    node = s2("run", "--source", f"udp://127.0.0.1:{port}", "--model", str(m), "--broker", mosquitto.url,
              "--node", "udp", "--duration-s", "30")
    sub = s2("subscribe", "--broker", mosquitto.url, "--topic", "s2/v1/udp/pred/gesture", "--count", "5",
             "--timeout-s", "40")
    try:
        st = subprocess.run([need("mosquitto_sub"), "-h", mosquitto.host, "-p", str(mosquitto.port), "-t",
                             "s2/v1/udp/status", "-C", "1", "-W", "30"], capture_output=True, text=True, timeout=40)
        assert json.loads(st.stdout)["state"] == "online"
        time.sleep(1.0)  # `s2 subscribe` is connected too
        raw = encode_spif(make_events(np.zeros(64), np.arange(64) % 32, np.arange(64) % 24, np.arange(64) % 2))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(300):  # ~0.3 s of datagrams, well beyond 5 bins of 20 ms
                s.sendto(raw, ("127.0.0.1", port))
                time.sleep(0.001)
        out, _ = sub.communicate(timeout=40)
    finally:
        stop(node, sub)
    preds = [json.loads(line)["payload"] for line in out.splitlines()]
    assert len(preds) == 5 and [p["seq"] for p in preds] == list(range(5))
    assert all(abs(sum(p["probs"]) - 1) < 1e-4 for p in preds)


@pytest.mark.broker
def test_replay_takes_the_nodes_numerics_and_placement(mosquitto, tmp_path):
    """`s2 replay --numerics int8 --decoder pe` serves the recording on that node; a bad choice is one line, exit 2."""
    m = gesture_model_file(tmp_path)
    rec = recording(tmp_path / "r.npy", n=3000, duration_us=200_000)
    r = s2_run("replay", str(rec), "--model", str(m), "--speed", "0", "--broker", mosquitto.url, "--node", "i8",
               "--numerics", "int8", "--decoder", "pe", "--no-frames")
    assert r.returncode == 0, r.stderr
    assert int(r.stderr.split("s2 replay: ")[1].split(" predictions")[0]) > 0
    bad = s2_run("replay", str(rec), "--decoder", "gpu")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_replay_serves_the_window_the_model_file_names(tmp_path):
    """Without --window-s, `s2 replay` pools over the model file's readout.window_s (2 s for files without one)
    and says so; --window-s overrides it."""
    rec = recording(tmp_path / "r.npy", n=3000, duration_us=200_000)
    cases = (({"source": "trace", "trace_alpha": 0.8, "pool": "mean", "window_s": 0.05}, (), "last 0.05 s"),
             ({"source": "trace", "trace_alpha": 0.8, "pool": "mean"}, (), "last 2 s"),
             ({"source": "trace", "trace_alpha": 0.8, "pool": "mean", "window_s": 0.05}, ("--window-s", "0"),
              "logits since the start"))
    for i, (readout, extra, said) in enumerate(cases):
        (tmp_path / str(i)).mkdir()
        m = gesture_model_file(tmp_path / str(i), readout=readout)
        r = s2_run("replay", str(rec), "--model", str(m), "--speed", "0", "--no-frames", *extra)
        assert r.returncode == 0, r.stderr
        assert f"gesture readout: mean of the {said}" in r.stderr
