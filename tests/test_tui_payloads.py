"""The UI's pure parts: parsing and checking messages, escaping, loss counting, bounded state, rendering maths."""

from __future__ import annotations

import itertools
import json

import pytest

from stream.schema import BrokerURL, PayloadError, decode, topic
from tui import samples
from tui.payloads import (
    SeqTracker,
    bar,
    clean,
    control_in,
    downsample,
    fit_frame,
    literal,
    parse_message,
    si,
    sparkline,
    text_chunks,
    text_in,
)
from tui.state import HISTORY, RATE_POINTS, FeedState
from tui.widgets.node import heat_rows


def test_parse_message_accepts_own_node_and_any_status():
    """Payloads for our node decode; other nodes' data is ignored, their status is kept (to discover nodes)."""
    g = samples.gesture(3)
    assert parse_message(topic("n0", "pred/gesture"), g.to_json(), "n0") == g
    assert parse_message(topic("n1", "pred/gesture"), g.to_json(), "n0") is None
    st = parse_message(topic("n1", "status"), b'{"v":1,"seq":0,"t_wall":0,"state":"offline"}', "n0")
    assert st.node == "n1" and st.state == "offline"
    assert parse_message("elsewhere/x", b"{}", "n0") is None
    assert parse_message(topic("n0", "in/text"), b"hi", "n0") is None  # our own keystrokes are not data


@pytest.mark.parametrize(
    ("kind", "change"),
    [
        ("stats", {"pe_activity": ["hot"]}),
        ("stats", {"synops_per_s": "fast"}),
        ("stats", {"latency_p99_s": -1}),
        ("frame", {"dtype": "f4"}),
        ("frame", {"event_rate_hz": None}),
        ("frame", {"counts": [1] * 2048}),
        ("stats", {"pe_activity": [0.5, float("inf")]}),
        ("pred/gesture", {"classes": [1, 2]}),
        ("pred/gesture", {"step": "x"}),
        ("status", {"recordings": "one"}),
    ],
)
def test_fields_the_panes_draw_are_checked(kind, change):
    """A payload whose drawn fields have the wrong types is a PayloadError, not a crash at render time."""
    make = {"stats": samples.stats, "frame": samples.frame, "pred/gesture": samples.gesture,
            "status": lambda i: samples.status()}[kind]
    d = json.loads(make(0).to_json()) | change
    with pytest.raises(PayloadError):
        parse_message(topic("n0", kind), json.dumps(d).encode(), "n0")


def test_clean_and_literal_neutralise_network_text():
    """Control characters are replaced, length is bounded, and literal() escapes Rich markup."""
    assert clean("a\x1b[31mb\x07", 100) == "a\ufffd[31mb\ufffd"
    assert len(clean("x" * 1000, 50)) == 50
    assert literal("[bold]x[/bold]") == "\\[bold]x\\[/bold]"
    from rich.text import Text

    assert Text.from_markup(literal("[bold]x[/]")).plain == "[bold]x[/]"


def test_outgoing_messages_follow_the_schema():
    """in/text decodes as TextIn; in/control carries cmd with speed or recording; unknown commands refused."""
    assert decode("in/text", text_in(4, "é")).text == "é"
    d = json.loads(control_in(7, "speed", 2))
    assert {"v", "seq", "t_wall", "cmd", "speed"} <= set(d)
    assert (d["v"], d["seq"], d["cmd"], d["speed"]) == (1, 7, "speed", 2.0)
    assert json.loads(control_in(8, "recording", "a.aedat4"))["recording"] == "a.aedat4"
    assert json.loads(control_in(9, "reset"))["cmd"] == "reset"
    with pytest.raises(ValueError):
        control_in(0, "explode")


def test_seq_tracker_counts_gaps_and_tolerates_restarts():
    """Gaps add up per topic; a sequence that goes back (publisher restart) is not counted as loss."""
    t = SeqTracker()
    for s in (0, 1, 4, 5):
        t.see("a", s)
    t.see("b", 10)
    t.see("a", 0)
    t.see("a", 2)
    assert t.dropped == 2 + 1


def test_state_histories_stay_bounded():
    """Thousands of messages leave every history at its bound; gesture history records only changes."""
    s = FeedState("n0")
    for i in range(5000):
        s.apply(samples.gesture(i))
        s.apply(samples.frame(i % 7))
    assert len(s.history) == HISTORY and len(s.rates) == RATE_POINTS
    labels = [h[1] for h in s.history]
    assert all(a != b for a, b in itertools.pairwise(labels))
    assert s.received == 10_000


def test_bar_and_sparkline_shapes():
    """Bars have the asked width and grow with p; the sparkline is as long as asked and peaks at the maximum."""
    assert bar(0.0, 10) == " " * 10 and bar(1.0, 10) == "█" * 10 and len(bar(0.37, 10)) == 10
    assert bar(0.5, 10).count("█") == 5
    line = sparkline([1, 2, 4, 8], 3)
    assert len(line) == 3 and line[-1] == "█" and line[0] < line[-1]
    assert sparkline([], 5) == "" and sparkline([0, 0], 5) == "▁▁"


def test_downsample_keeps_the_event_count():
    """Binning a frame into fewer cells keeps the total and puts events where they were."""
    w, h = 32, 24
    counts = [0] * (w * h)
    counts[0], counts[w * h - 1], counts[5 * w + 20] = 3, 2, 7
    cells = downsample(counts, w, h, 8, 6)
    assert sum(map(sum, cells)) == 12
    assert cells[0][0] == 3 and cells[5][7] == 2 and cells[1][5] == 7
    assert fit_frame(32, 32, 38, 4) == (8, 8) and fit_frame(346, 260, 80, 20) == (53, 40)


def test_heat_rows_map_pes_to_quads():
    """PE index q*4+k lands in column q, row k; missing PEs read as idle."""
    rows = heat_rows([0.0] * 9 + [1.0])
    assert len(rows) == 4 and all(len(r) == 38 for r in rows)
    assert rows[1][2] == 1.0 and sum(map(sum, rows)) == 1.0


def test_si_prefixes():
    """Values get SI prefixes with their unit."""
    assert si(2.7e-6, "J") == "2.7 µJ" and si(1.84e6, "/s") == "1.84 M/s" and si(0, "s") == "0 s"


def test_endpoint_parsing():
    """Broker URLs parse to host, port and TLS; nonsense is a ValueError."""
    assert BrokerURL.parse("mqtt://h:1900") == BrokerURL("h", 1900)
    assert BrokerURL.parse("mqtts://u:p@h").port == 8883 and str(BrokerURL.parse("h")) == "mqtt://h:1883"
    with pytest.raises(ValueError):
        BrokerURL.parse("http://h")


def test_gesture_history_keeps_first_step_and_peak_confidence():
    """A run of one label is one history entry with the step it began and the highest confidence it reached."""
    s = FeedState("n0")
    for i in range(0, 80):
        s.apply(samples.gesture(i))
    (s0, l0, c0), (s1, l1, c1) = s.history
    assert (s0, l0, s1, l1) == (0, "hand_clap", 40, "right_hand_wave")
    assert c0 == max(max(samples.gesture(i).probs) for i in range(40))
    assert c1 == max(max(samples.gesture(i).probs) for i in range(40, 80))


def test_long_pastes_are_split_within_the_text_limit():
    """Pieces of a long paste each fit one in/text message, keep every character and never split one."""
    text = "aé€😀" * 1500
    pieces = text_chunks(text, 4096)
    assert "".join(pieces) == text and len(pieces) > 1
    assert all(len(p.encode()) <= 4096 for p in pieces)
    assert all(decode("in/text", text_in(0, p)).text == p for p in pieces)


def test_stats_of_two_models_are_kept_apart():
    """A node serving two models: the pane keeps showing the first until the user asks for the next."""
    s = FeedState("n0")
    a, b = samples.stats(1, seq=0), samples.stats(2, seq=1)
    b.model = "shakespeare-egru"
    s.apply(a)
    s.apply(b)
    assert s.stats is a and s.model_position == (1, 2)
    s.next_model()
    assert s.stats is b and s.model_position == (2, 2)
    s.next_model()
    assert s.stats is a
