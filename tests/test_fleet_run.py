"""Many streams in one `s2 run`: the fleet file and --source ID=URL parsers (one-line errors), and a real `s2 run`
subprocess serving nine streams to a real mosquitto, each stream's predictions those of its recording alone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stream_helpers import Collector, gesture_model_file, recording, running

from s2node.models import load_torch_model
from sources.events import SensorSize, make_events
from sources.live.udp import encode_spif
from sources.sensor_map import SensorMap
from stream.binner import BinSpec, bin_events
from stream.broker import free_port
from stream.fleet_file import FleetError, from_sources, read_fleet, split_source

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
DEFAULTS = {"model": "models/gesture-egru", "window_s": 2.0, "speed": 1.0}


def fleet(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "fleet.toml"
    p.write_text(text)
    return p


def test_fleet_file_streams_defaults_and_relative_paths(tmp_path):
    """A stream's keys override [defaults], which override the command line; relative paths are the file's."""
    p = fleet(tmp_path, """
[defaults]
model = "m/gesture"
speed = 0

[[stream]]
id = "door"
source = "udp://0.0.0.0:7777?format=faery"
sensor = "346x260"
sensor_map = "roi=10,10,200,150"
window_s = 0.5

[[stream]]
id = "lab-2"
source = "rec/a.npy"
model = "/abs/other"
loop = true

[[stream]]
id = "cam"
source = "synthetic"
""")
    door, lab, cam = read_fleet(p, DEFAULTS)
    assert (door.id, door.kind, door.address()) == ("door", "udp", ("0.0.0.0", 7777, "faery"))
    assert door.model == str(tmp_path / "m/gesture") and door.window_s == 0.5 and door.speed == 0.0
    assert door.sensor == SensorSize(346, 260) and door.sensor_map == SensorMap("roi", (10, 10, 200, 150))
    assert (lab.kind, lab.source, lab.model, lab.loop) == ("file", str(tmp_path / "rec/a.npy"), "/abs/other", True)
    assert lab.window_s == 2.0 and not door.loop
    assert (cam.kind, cam.source, cam.seed) == ("synthetic", "synthetic", 2)  # its place: streams differ


@pytest.mark.parametrize(("text", "says"), [
    ('[[stream]]\nid = "a"\nsource = "synthetic"\nsped = 2\n', "stream 1 ('a'): unknown key 'sped' (known: id,"),
    ('[[stream]]\nid = "a"\nsource = "synthetic"\n[[stream]]\nid = "a"\nsource = "x.npy"\n',
     "stream id 'a' given twice"),
    ('[[stream]]\nid = "a"\n', "stream 1 ('a'): missing 'source'"),
    ('[[stream]]\nsource = "synthetic"\n', "stream 1: missing 'id'"),
    ('[defaults]\nmodle = "m"\n[[stream]]\nid = "a"\nsource = "synthetic"\n', "[defaults]: unknown key 'modle'"),
    ('nodes = 3\n', "unknown top-level key 'nodes'"),
    ('[defaults]\nmodel = "m"\n', "no streams"),
    ('[[stream]\nid = "a"', "not valid TOML"),
    ('[[stream]]\nid = "a b"\nsource = "synthetic"\n', "id 'a b': use letters, digits"),
    ('[[stream]]\nid = "a"\nsource = "text"\n', "text is served alone"),
    ('[[stream]]\nid = "a"\nsource = "http://x:1"\n', "use udp://HOST:PORT, dv://HOST:PORT, synthetic or a file"),
    ('[[stream]]\nid = "a"\nsource = "udp://nohost"\n', "expected udp://HOST:PORT"),
    ('[[stream]]\nid = "a"\nsource = "udp://h:1?format=x"\n', "udp format 'x' unknown"),
    ('[[stream]]\nid = "a"\nsource = "udp://h:9"\n[[stream]]\nid = "b"\nsource = "udp://h:9"\n',
     "streams 'a' and 'b' both listen on udp://h:9"),
    ('[[stream]]\nid = "a"\nsource = "synthetic"\nspeed = -1\n', "speed: must be a number, 0 or more"),
    ('[[stream]]\nid = "a"\nsource = "synthetic"\nloop = "yes"\n', "loop: must be true or false"),
    ('[[stream]]\nid = "a"\nsource = "synthetic"\nbuffer = 0\n', "buffer: must be an integer above 0"),
    ('[[stream]]\nid = "a"\nsource = "synthetic"\nsensor = "big"\n', "sensor: sensor size 'big'"),
    ('[[stream]]\nid = "a"\nsource = "synthetic"\nsensor_map = "zoom"\n', "sensor_map: sensor map 'zoom'"),
])
def test_bad_fleet_file_is_one_line_naming_stream_and_key(tmp_path, text, says):
    """Unknown keys, duplicate ids, a missing source, bad values: one line naming the file, the stream, the key."""
    p = fleet(tmp_path, text)
    with pytest.raises(FleetError) as e:
        read_fleet(p, DEFAULTS)
    msg = str(e.value)
    assert says in msg and "\n" not in msg and msg.startswith(str(p)), msg


def test_missing_or_binary_fleet_file_is_one_line(tmp_path):
    """A fleet file that is absent or not text is a one-line error too."""
    with pytest.raises(FleetError, match="No such file"):
        read_fleet(tmp_path / "nope.toml", DEFAULTS)
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(FleetError, match="not UTF-8"):
        read_fleet(tmp_path / "bin.toml", DEFAULTS)


def test_source_options_with_ids():
    """--source ID=URL splits on the first '=' only where an id stands before it; several need ids each."""
    assert split_source("door=udp://h:1?format=faery") == ("door", "udp://h:1?format=faery")
    assert split_source("udp://h:1?format=faery") == (None, "udp://h:1?format=faery")
    assert split_source("./a=b.npy") == (None, "./a=b.npy") and split_source("synthetic") == (None, "synthetic")
    a, b = from_sources(["a=synthetic", "b=rec.npy"], DEFAULTS)
    assert (a.kind, a.seed, b.kind, b.source, b.model) == ("synthetic", 0, "file", "rec.npy", DEFAULTS["model"])
    with pytest.raises(FleetError, match="give each an id"):
        from_sources(["a=synthetic", "synthetic"], DEFAULTS)
    with pytest.raises(FleetError, match="'a' given twice"):
        from_sources(["a=synthetic", "a=x.npy"], DEFAULTS)


KEYS = ["id", "source", "model", "sensor", "sensor_map", "window_s", "speed", "loop", "frames", "buffer", "idle_s",
        "seed", "sped", ""]
VALUES = st.one_of(
    st.text(max_size=20), st.sampled_from(["synthetic", "udp://h:1", "dv://h:x", "a.npy", "346x260", "roi=1,2,3"]),
    st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=True), st.booleans())


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == float("inf") else "-inf" if v == float("-inf") else repr(v))
    return json.dumps(v) if isinstance(v, str) else str(v)


@settings(max_examples=int(os.environ.get("S2_FUZZ_EXAMPLES", "60")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6), min_size=0, max_size=3),
       st.dictionaries(st.sampled_from(KEYS[2:]), VALUES, max_size=3))
def test_any_fleet_file_is_streams_or_one_line(tmp_path, tables, defaults):
    """Whatever keys and values a fleet file holds, reading it gives checked streams or a one-line FleetError."""
    text = "".join(f"{k} = {_toml(v)}\n" for k, v in defaults.items() if k)
    text = ("[defaults]\n" + text if text else "") + "".join(
        "[[stream]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in t.items() if k) for t in tables)
    try:
        specs = read_fleet(fleet(tmp_path, text), DEFAULTS)
    except FleetError as e:
        assert "\n" not in str(e)
        return
    assert len({s.id for s in specs}) == len(specs) == len(tables)
    assert all(s.window_s >= 0 and s.speed >= 0 and s.buffer > 0 and s.kind in ("udp", "dv", "synthetic", "file")
               for s in specs)


def reference(model_path: Path, rec: Path, window_steps: int | None) -> np.ndarray:
    """The recording alone: binned offline, the PyTorch model over all steps, step logits pooled over the last
    window_steps (None: since the start)."""
    model, cfg = load_torch_model(model_path)
    x = torch.from_numpy(bin_events(np.load(rec), BinSpec.from_config(cfg)))[None]
    with torch.no_grad():
        step_logits, _, _ = model(x)
    c = torch.cumsum(step_logits[0].double(), 0)
    n = torch.arange(1, x.shape[1] + 1, dtype=torch.float64)[:, None]
    if window_steps is not None:
        back = torch.cat([torch.zeros_like(c[:1]), c])[:-1]
        k = torch.clamp(n - window_steps, min=0).long()[:, 0]
        c, n = c - back[k], torch.clamp(n, max=window_steps)
    return torch.softmax(c / n, -1).numpy()


async def _wait_exit(proc: asyncio.subprocess.Process, timeout_s: float) -> tuple[int, str]:
    _, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    return proc.returncode or 0, err.decode()


@pytest.mark.broker
async def test_eleven_streams_in_one_s2_run_each_as_if_alone(mosquitto, tmp_path):
    """Eight recordings replayed as fast as possible (two model files, two readout windows) and a UDP camera
    sending good and malformed datagrams, in one `s2 run --fleet`: each file stream's predictions are those of its
    recording alone, and the camera's bad datagrams are counted on its own summary line only; a silent camera and
    one that cannot be reached hold back nobody."""
    ma, mb = gesture_model_file(tmp_path / "a", seed=0), gesture_model_file(tmp_path / "b", seed=1)
    # r5 is sparse: empty milliseconds make a replayed batch close a bin and reach into the next one's early input
    recs = [recording(tmp_path / f"r{k}.npy", n=80 if k == 5 else 3000, duration_us=200_000 + 10_000 * k,
                      seed=10 + k) for k in range(8)]
    port = free_port()
    streams = "".join(
        f'[[stream]]\nid = "f{k}"\nsource = "r{k}.npy"\n' + ('model = "b/gesture"\n' if k >= 6 else "")
        + ("window_s = 0.05\n" if k in (2, 3) else "") for k in range(8))
    f = fleet(tmp_path, f'[defaults]\nmodel = "a/gesture"\nspeed = 0\nframes = false\n\n{streams}'
                        f'[[stream]]\nid = "u"\nsource = "udp://127.0.0.1:{port}"\n'
                        f'[[stream]]\nid = "quiet"\nsource = "udp://127.0.0.1:{free_port()}"\n'
                        '[[stream]]\nid = "dead"\nsource = "dv://127.0.0.1:1"\n')
    col = Collector(mosquitto.host, mosquitto.port, ["s2/v1/+/pred/gesture", "s2/v1/+/status"], "col-fleet")
    sent = {"bad": 0}

    async def camera() -> None:
        """A UDP camera all along: a malformed datagram (not whole SPIF words) beside each good one."""
        raw = encode_spif(make_events(np.zeros(8), np.arange(8), np.arange(8), np.arange(8) % 2))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while True:
                s.sendto(b"bad", ("127.0.0.1", port))
                s.sendto(raw, ("127.0.0.1", port))
                sent["bad"] += 1
                await asyncio.sleep(0.003)

    async with running(col.run()):
        await asyncio.wait_for(col.subscribed.wait(), 10)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stream.cli", "run", "--fleet", str(f), "--broker", mosquitto.url, "--node",
            "fl", "--duration-s", "60", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=ENV)
        try:
            refs = {f"fl-f{k}": reference(mb if k >= 6 else ma, r, 5 if k in (2, 3) else None)
                    for k, r in enumerate(recs)}

            def preds(node: str) -> list[dict]:
                return [p for t, p in col.messages if t == f"s2/v1/{node}/pred/gesture"]

            async with running(camera()):
                done = await col.wait_for(lambda: all(len(preds(n)) >= len(r) for n, r in refs.items()), 40)
                assert done, {n: len(preds(n)) for n in refs}
                assert await col.wait_for(lambda: len(preds("fl-u")) >= 2, 10)
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            rc, err = await _wait_exit(proc, 30)
    for node, ref in refs.items():
        got = preds(node)
        assert [p["seq"] for p in got] == list(range(len(ref))) and [p["step"] for p in got] == list(range(len(ref)))
        np.testing.assert_allclose(np.array([p["probs"] for p in got]), ref, atol=1e-5, err_msg=node)
    # the streams differ (different recordings, models and windows), so a mix-up could not pass
    assert not np.allclose(refs["fl-f0"][:20], refs["fl-f1"][:20], atol=1e-3)
    assert not np.allclose(reference(ma, recs[2], None), refs["fl-f2"], atol=1e-3)
    assert all(abs(sum(p["probs"]) - 1) < 1e-4 for p in preds("fl-u"))
    online = {p["node"]: p for t, p in col.messages if t.endswith("/status") and p.get("state") == "online"}
    assert {*refs, "fl-u", "fl-quiet"} <= set(online)
    assert online["fl-f0"]["recordings"] == ["r0.npy"] and online["fl-u"]["recordings"] == ["udp"]
    assert "no mapping" in online["fl-f0"]["sensor_map"] and online["fl-f6"]["models"] == ["gesture"]
    assert rc == 130, err  # SIGTERM ends it as Ctrl-C does, with the summary
    lines = {ln.split(":")[1].strip(): ln for ln in err.splitlines() if ln.startswith("s2 run: fl-")}
    assert set(lines) == {*refs, "fl-u", "fl-quiet", "fl-dead"}, err
    assert "fl-quiet: 0 predictions" in lines["fl-quiet"] and "fl-dead: stopped: dv:" in lines["fl-dead"]
    assert f"{len(refs['fl-f7'])} predictions, 3000 events in, 0 dropped, 0 malformed, 0 unsent" in lines["fl-f7"]
    malformed = int(lines["fl-u"].split(" malformed")[0].rsplit(" ", 1)[1])
    assert 0 < malformed <= sent["bad"] and "udp://127.0.0.1" in lines["fl-u"]
    assert "Traceback" not in err


@pytest.mark.broker
async def test_repeated_source_ids_serve_files_and_end_with_them(mosquitto, tmp_path):
    """`s2 run --source a=FILE --source b=FILE --speed 0` serves both as nodes <node>-a, <node>-b and exits 0 when
    both recordings end, with one summary line each."""
    m = gesture_model_file(tmp_path)
    ra = recording(tmp_path / "ra.npy", n=2000, duration_us=150_000, seed=3)
    rb = recording(tmp_path / "rb.npy", n=2000, duration_us=120_000, seed=4, outside=7)
    col = Collector(mosquitto.host, mosquitto.port, ["s2/v1/+/pred/gesture"], "col-ids")
    async with running(col.run()):
        await asyncio.wait_for(col.subscribed.wait(), 10)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stream.cli", "run", "--source", f"a={ra}", "--source", f"b={rb}", "--model",
            str(m), "--speed", "0", "--broker", mosquitto.url, "--node", "ids",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=ENV)
        rc, err = await _wait_exit(proc, 60)
        ref_a, ref_b = reference(m, ra, None), reference(m, rb, None)
        assert await col.wait_for(lambda: len(col.messages) >= len(ref_a) + len(ref_b), 10)
    assert rc == 0, err
    for node, ref in (("ids-a", ref_a), ("ids-b", ref_b)):
        got = [p["probs"] for t, p in col.messages if t == f"s2/v1/{node}/pred/gesture"]
        np.testing.assert_allclose(np.array(got), ref, atol=1e-5, err_msg=node)
    assert f"s2 run: ids-b: {len(ref_b)} predictions, 1993 events in, 7 dropped" in err, err


@pytest.mark.parametrize(("args", "says"), [
    (["--source", "a=synthetic", "--source", "synthetic"], "give each an id"),
    (["--source", "a=synthetic", "--fleet", "f.toml"], "give --fleet or --source, not both"),
    (["--fleet", "missing.toml"], "missing.toml: No such file"),
    (["--source", "a=missing.npy"], "missing.npy"),
    (["--source", "a=synthetic", "--node", "x" * 63], "at most 64 printable characters"),
])
def test_s2_run_bad_streams_are_one_line_errors(tmp_path, args, says):
    """Bad stream options fail at once, before any broker starts: one line, exit status 1, no traceback."""
    import subprocess

    r = subprocess.run([sys.executable, "-m", "stream.cli", "run", *args], capture_output=True, text=True,
                       env=ENV, cwd=tmp_path, timeout=60)
    assert r.returncode == 1 and says in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("s2 run: error: ")


@pytest.mark.broker
async def test_each_stream_obeys_its_own_in_control(mosquitto, tmp_path):
    """in/control to one stream's node pauses and resumes that stream only, answered in its own status."""
    import aiomqtt

    from stream.schema import ControlIn, topic

    m = gesture_model_file(tmp_path)
    ra = recording(tmp_path / "ra.npy", n=2000, duration_us=300_000, seed=3)
    rb = recording(tmp_path / "rb.npy", n=2000, duration_us=300_000, seed=4)
    col = Collector(mosquitto.host, mosquitto.port, ["s2/v1/ctl-a/#", "s2/v1/ctl-b/#"], "col-fleet-ctl")

    def of(node: str, kind: str) -> list[dict]:
        return [p for t, p in col.messages if t == f"s2/v1/{node}/{kind}"]

    def answer(seq: int) -> dict | None:
        return next((st["control"] for st in of("ctl-a", "status")
                     if st.get("control") and st["control"]["last_cmd_seq"] == seq), None)

    async with running(col.run()):
        await asyncio.wait_for(col.subscribed.wait(), 10)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stream.cli", "run", "--source", f"a={ra}", "--source", f"b={rb}", "--model",
            str(m), "--loop", "--broker", mosquitto.url, "--node", "ctl", "--duration-s", "60",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=ENV)
        try:
            assert await col.wait_for(lambda: min(len(of(n, "pred/gesture")) for n in ("ctl-a", "ctl-b")) >= 5, 40)
            async with aiomqtt.Client(mosquitto.host, mosquitto.port) as c:
                pause = ControlIn(seq=11, t_wall=1.0, cmd="pause").to_json()
                await c.publish(topic("ctl-a", "in/control"), pause, qos=1)
                assert await col.wait_for(lambda: answer(11) is not None, 10)
                assert answer(11)["paused"] is True and answer(11)["last_cmd_result"] == "ok"
                await asyncio.sleep(0.3)  # what was binned before the pause has left the node
                na, nb = len(of("ctl-a", "pred/gesture")), len(of("ctl-b", "pred/gesture"))
                await asyncio.sleep(1.0)
                assert len(of("ctl-a", "pred/gesture")) == na and len(of("ctl-b", "pred/gesture")) >= nb + 20
                resume = ControlIn(seq=12, t_wall=1.0, cmd="resume").to_json()
                await c.publish(topic("ctl-a", "in/control"), resume, qos=1)
                assert await col.wait_for(lambda: answer(12) is not None, 10) and answer(12)["paused"] is False
                assert await col.wait_for(lambda: len(of("ctl-a", "pred/gesture")) >= na + 10, 10)
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            rc, err = await _wait_exit(proc, 30)
    assert rc == 130, err
    assert all(st.get("control") is None or st["control"]["last_cmd"] is None for st in of("ctl-b", "status"))
