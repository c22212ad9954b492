"""What the UI knows, fed message by message and read by the refresh tick. Every history is bounded."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from stream.schema import ControlState, EventFrame, GesturePrediction, NodeStats, Payload, Status, TextPrediction
from tui.payloads import SeqTracker

HISTORY = 12  # gesture changes kept
RATE_POINTS = 120  # event-rate samples kept for the sparkline
NODES_MAX = 64  # nodes remembered from status messages (a noisy broker cannot grow this without bound)
MODELS_MAX = 8  # models per node whose stats are kept


@dataclass
class FeedState:
    """The latest payload of each kind plus bounded histories and loss counters, for one node."""

    node: str
    gesture: GesturePrediction | None = None
    text: TextPrediction | None = None
    stats_by_model: dict[str, NodeStats] = field(default_factory=dict)  # a node serving two models sends both
    model_shown: str | None = None
    frame: EventFrame | None = None
    status: Status | None = None
    # gesture changes: (first step, label, peak confidence)
    history: deque[tuple[int, str, float]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    rates: deque[float] = field(default_factory=lambda: deque(maxlen=RATE_POINTS))
    nodes: dict[str, str] = field(default_factory=dict)  # node -> "online" | "offline"
    seqs: SeqTracker = field(default_factory=SeqTracker)
    received: int = 0
    malformed: int = 0
    version: int = 0  # bumped on every change, so the refresh tick can skip idle frames

    @property
    def dropped(self) -> int:
        return self.seqs.dropped

    @property
    def stats(self) -> NodeStats | None:
        """The stats of the model the node pane shows."""
        return self.stats_by_model.get(self.model_shown) if self.model_shown is not None else None

    @property
    def control(self) -> ControlState | None:
        """What the node says is in effect (its answer to in/control); None from a node that does not answer
        or is offline (then only what was asked can be shown)."""
        st = self.status
        return st.control if st is not None and st.state == "online" else None

    def paused_in_effect(self, asked: bool) -> bool:
        """Whether the node is paused as it says, else as last asked: a pause key toggles what is in effect."""
        c = self.control
        return asked if c is None else c.paused

    @property
    def model_position(self) -> tuple[int, int]:
        """(1-based index of the model shown, number of models) for the pane's subtitle."""
        names = list(self.stats_by_model)
        return (names.index(self.model_shown) + 1 if self.model_shown in names else 0, len(names))

    def next_model(self) -> None:
        """Show the next model's stats (in the order they first arrived)."""
        names = list(self.stats_by_model)
        if names:
            i = names.index(self.model_shown) if self.model_shown in names else -1
            self.model_shown = names[(i + 1) % len(names)]
            self.version += 1

    def apply(self, p: Payload) -> None:
        """Fold one checked payload into the state."""
        self.received += 1
        self.version += 1
        if isinstance(p, Status):
            if p.node not in self.nodes and len(self.nodes) >= NODES_MAX:
                return
            self.nodes[p.node] = p.state
            if p.node == self.node:
                self.status = p
            return  # status is retained and re-sent on reconnect: its seq says nothing about loss
        self.seqs.see(p.KIND, p.seq)
        if isinstance(p, GesturePrediction):
            conf = max(p.probs, default=0.0)
            if not self.history or self.history[-1][1] != p.label:
                self.history.append((p.step, p.label, conf))
            elif conf > self.history[-1][2]:  # a change is listed with its peak confidence so far
                self.history[-1] = (self.history[-1][0], p.label, conf)
            self.gesture = p
        elif isinstance(p, TextPrediction):
            self.text = p
        elif isinstance(p, NodeStats):
            if p.model in self.stats_by_model or len(self.stats_by_model) < MODELS_MAX:
                self.stats_by_model[p.model] = p
                if self.model_shown is None:
                    self.model_shown = p.model
        elif isinstance(p, EventFrame):
            self.frame = p
            self.rates.append(p.event_rate_hz)

    def count_malformed(self) -> None:
        self.malformed += 1
        self.version += 1

    def switch(self, node: str) -> None:
        """Start afresh on another node (counters of the link stay)."""
        self.node = node
        self.gesture = self.text = self.frame = self.status = self.model_shown = None
        self.stats_by_model.clear()
        self.history.clear()
        self.rates.clear()
        self.seqs.forget()
        self.version += 1


# --- the fleet: every node heard on the broker, one row each ------------------------------------------------

FLEET_MAX = 1000  # nodes tracked; beyond, the offline node heard longest ago is forgotten first


@dataclass
class FleetRow:
    """What the fleet view shows of one node (texts raw from the network: the widget escapes them)."""

    node: str
    state: str = ""  # "online" | "offline" from its retained status; "" while only its stats were heard
    models: list[str] = field(default_factory=list)  # from its status and its stats, first heard first
    last: str = ""  # its last prediction: "label 87%" or the text continuation
    rates_hz: dict[str, float] = field(default_factory=dict)  # input events per second, per model
    dropped_by_model: dict[str, int] = field(default_factory=dict)  # events the node dropped, per model
    reconnects: int | None = None  # when the node publishes it
    heard: float = 0.0  # time.monotonic() of its last message
    _events: dict[str, tuple[float, int]] = field(default_factory=dict)  # model -> (t_wall, events_in) last seen

    @property
    def rate_hz(self) -> float | None:
        return sum(self.rates_hz.values()) if self.rates_hz else None

    @property
    def dropped(self) -> int:
        return sum(self.dropped_by_model.values())

    def _model(self, name: str) -> bool:
        """Note a model name; False when the node already has MODELS_MAX others (its figures are not kept)."""
        if name in self.models:
            return True
        if len(self.models) >= MODELS_MAX:
            return False
        self.models.append(name)
        return True

    def apply(self, p: Payload) -> None:
        if isinstance(p, Status):
            self.state = p.state
            for m in p.models:
                self._model(m)
        elif isinstance(p, NodeStats):
            if not self._model(p.model):
                return
            prev = self._events.get(p.model)
            if prev is not None and p.t_wall > prev[0] and p.events_in >= prev[1]:
                self.rates_hz[p.model] = (p.events_in - prev[1]) / (p.t_wall - prev[0])
            self._events[p.model] = (p.t_wall, p.events_in)
            self.dropped_by_model[p.model] = p.events_dropped
            self.reconnects = p.reconnects
        elif isinstance(p, GesturePrediction):
            self.last = f"{p.label} {max(p.probs, default=0.0):.0%}"
        elif isinstance(p, TextPrediction):
            self.last = p.continuation or (p.topk[0][0] if p.topk else "")


class FleetState:
    """Every node heard (statuses, stats, predictions), bounded: at most `limit` rows, offline ones forgotten
    first, then the one heard longest ago."""

    def __init__(self, limit: int = FLEET_MAX) -> None:
        self.limit = limit
        self.rows: dict[str, FleetRow] = {}  # least recently heard first
        self.forgotten = 0  # rows dropped to stay within the limit
        self.version = 0  # bumped on every change, so a view can skip idle refreshes
        self._changed: set[str] | None = set()  # nodes changed or forgotten since take_changed(); None: all

    def apply(self, node: str, p: Payload, now: float) -> None:
        row = self.rows.pop(node, None)
        if row is None:
            if len(self.rows) >= self.limit:
                self._forget_one()
            row = FleetRow(node)
        self.rows[node] = row  # re-inserted: the dict stays ordered by when each node was last heard
        row.heard = now
        row.apply(p)
        self._note(node)
        self.version += 1

    def _note(self, node: str) -> None:
        if self._changed is not None:
            self._changed.add(node)
            if len(self._changed) > 2 * self.limit:  # nobody took them (no view open): "all" is as good
                self._changed = None

    def take_changed(self) -> set[str] | None:
        """The nodes changed or forgotten since the last call (None: any node may have), so that a view
        redraws only their rows."""
        changed, self._changed = self._changed, set()
        return changed

    def _forget_one(self) -> None:
        victim = next((n for n, r in self.rows.items() if r.state == "offline"), None)
        victim = victim if victim is not None else next(iter(self.rows))
        del self.rows[victim]
        self._note(victim)
        self.forgotten += 1

    def online(self) -> list[str]:
        return [n for n, r in self.rows.items() if r.state == "online"]
