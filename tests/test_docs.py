"""The README and docs/: generated tables up to date, links inside the repository, the MQTT client snippet runs."""

from __future__ import annotations

import json
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _results_module():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import results
    finally:
        sys.path.pop(0)
    return results


def test_results_rendered_from_json_are_up_to_date():
    """docs/results.md and the README's results table equal what scripts/results.py renders from results/*.json."""
    results = _results_module()
    assert list((ROOT / "results").glob("*.json")), "no results/*.json: run `make results`"
    assert results.render(check=True), "docs/results.md or the README table is stale: run `make results-render`"


def test_readme_has_the_results_markers():
    """The README embeds the generated table between the markers the script rewrites."""
    results = _results_module()
    text = (ROOT / "README.md").read_text()
    assert results.BEGIN in text and results.END in text


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_links_resolve_inside_the_repository(doc: Path):
    """Every link in README.md and docs/*.md is relative, anchor-free and names a file inside the repository."""
    for target in LINK.findall(doc.read_text()):
        assert "://" not in target and not target.startswith(("mailto:", "/")), f"{doc.name}: external {target}"
        assert "#" not in target, f"{doc.name}: anchor in {target}"
        path = (doc.parent / target).resolve()
        assert path.is_relative_to(ROOT), f"{doc.name}: {target} points outside the repository"
        assert path.exists(), f"{doc.name}: {target} does not exist"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_no_reference_outside_the_repository(doc: Path):
    """No document mentions a web address or the directory beside the checkout."""
    text = doc.read_text()
    assert "http://" not in text and "https://" not in text, f"{doc.name} holds a web address"
    assert "../shared" not in text, f"{doc.name} points beside the checkout"


def test_readme_is_short():
    """README.md stays at most 250 lines; the details live in docs/."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def _snippet() -> str:
    text = (ROOT / "docs" / "mqtt-api.md").read_text()
    section = text.split("## A client in 20 lines", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.broker
def test_mqtt_api_snippet_prints_gesture_predictions(mosquitto, tmp_path: Path):
    """The paho-mqtt client of docs/mqtt-api.md prints published gesture predictions and counts a seq gap."""
    import paho.mqtt.client as mqtt

    from stream.schema import GesturePrediction, topic

    script = tmp_path / "client.py"
    script.write_text(_snippet())
    proc = subprocess.Popen([sys.executable, str(script), mosquitto.host, str(mosquitto.port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect(mosquitto.host, mosquitto.port)
    pub.loop_start()
    classes = ["Hand clapping", "Right hand wave"]
    try:
        seq, deadline, lines = 0, time.monotonic() + 20, []
        # publish until the client (subscribing asynchronously) has printed one line, then one gap of 3
        while time.monotonic() < deadline and not lines:
            msg = GesturePrediction(seq=seq, t_wall=time.time(), label=classes[1], index=1, probs=[0.25, 0.75],
                                    classes=classes, step=seq)
            pub.publish(topic("n0", "pred/gesture"), msg.to_json(), qos=1).wait_for_publish(5)
            seq += 1
            if select.select([proc.stdout], [], [], 0.2)[0]:
                lines.append(proc.stdout.readline())
        assert lines and lines[0].startswith("n0 step ") and "Right hand wave (0.75)" in lines[0], lines
        seq += 3
        msg = GesturePrediction(seq=seq, t_wall=time.time(), label=classes[0], index=0, probs=[0.9, 0.1],
                                classes=classes, step=seq)
        pub.publish(topic("n0", "pred/gesture"), msg.to_json(), qos=1).wait_for_publish(5)
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if f"step {seq}:" in line:
                assert "Hand clapping (0.90)" in line and ", 3 lost" in line, line
                break
        else:
            pytest.fail("the client did not print the prediction after the gap")
    finally:
        pub.loop_stop()
        pub.disconnect()
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


def test_model_format_snippet_runs_without_our_code(tmp_path: Path):
    """The NumPy-only EGRU of docs/model-format.md runs the shipped character model and agrees with s2node."""
    text = (ROOT / "docs" / "model-format.md").read_text()
    section = text.split("## Running a model without s2egru", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    script = tmp_path / "run_model.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr

    from s2node.runtime import Node

    vocab = json.loads((ROOT / "models" / "shakespeare-egru.json").read_text())["vocab"]
    node = Node.load(ROOT / "models" / "shakespeare-egru", numerics="fp32")
    for ch in "to be or not to b":
        p = node.step(vocab.index(ch))
    assert out.stdout.strip() == repr(p.name), (out.stdout, p.name)
