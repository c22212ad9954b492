"""The emulated node: `Node.load(model_file) -> node.step(input) -> Prediction`, with per-step `StepStats`.

One timestep: the host sends the input packets (language: the token's embedding vector, one packet per
non-zero dimension, when the table lives on the host; or the token itself to the embedding PEs, which send the
vector on; gestures: one packet per active input with its summed count). For each EGRU layer in turn, every
PE accumulates its columns of the active sources (`kernel.gates_in`, `gates_rec`: `accumulate` plus the bias),
then updates its units (`update_units`) and sends one packet per fired unit (`emit`),
which are the next layer's input now and the layer's own recurrent input at the next step. The decoder runs
where the compiler put it (`decoder="pe"|"host"`), event-driven from the last layer's events either way (for a
trace readout it keeps W·trace, which is linear in the events), with the same arithmetic, so the placement
changes the cost and never the prediction. On PEs each decoder PE sends its local argmax to the host (one
packet), which takes the maximum; on the host the last layer's events go to the host, whose decoder work is
counted apart (`host_decoder_synops`, `host_packets_in`) and is not part of the chip's cost.
Per-PE counts come from the compiler's nnz[source, pe] and recv[source, pe] tables summed over the active
sources, all groups in one product (`step_counts.StepCounts`, which also gives the cycles and the cost):
bookkeeping on the same arithmetic, no loop over PEs or events.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from s2node import modelfile
from s2node.chip import ChipSpec
from s2node.compiler import CompiledModel, compile_model, stored_weights_walked
from s2node.cost import Cost, CostTable, step_cost
from s2node.errors import S2NodeError
from s2node.kernels import make_kernel
from s2node.readout import ReadoutSpec, Trace
from s2node.spec import ModelSpec
from s2node.step_counts import CountTable, StepCounts

F32 = np.float32
TOKEN_CACHE_BYTES = 64 << 20  # the largest per-token table of layer-0 accumulations a Node keeps
# Step latencies kept for the percentiles: memory stays bounded on an endless stream (between W + 1 and 2W kept)
LATENCY_WINDOW = 16384
INTEGERS = (int, np.integer)  # a token id


@dataclass(frozen=True)
class Prediction:
    label: int  # next-token id (language) or class index (gestures, pooled over the steps so far)
    name: str  # the token or class name
    logits: np.ndarray  # language: this step's logits; gestures: pooled logits
    step: int
    stats: StepStats | None = None  # this step's counters and cost
    step_logits: np.ndarray | None = None  # this step's logits before pooling
    events_out: int = 0  # unit events of this step, all layers (also in stats, once settled)


@dataclass
class StepStats:
    """Counters of one timestep, per used PE and in total, and its cost."""

    numerics: str
    group_starts: np.ndarray  # first PE of each layer group (for latency)
    pe_synops: np.ndarray
    pe_packets_in: np.ndarray
    pe_packets_out: np.ndarray
    pe_neuron_updates: np.ndarray
    pe_dram_bytes: np.ndarray
    events_in: int = 0  # input packets from the host
    events_out: int = 0  # unit events, all EGRU layers
    events_per_layer: list[int] = field(default_factory=list)
    units: int = 0  # EGRU units updated (all of them, every step)
    synops: int = 0  # NeuroBench synops: EGRU input + recurrent weights (decoder excluded)
    decoder_synops: int = 0  # wherever the decoder runs
    cost: Cost | None = None
    layout: str = "column"  # weight storage, for the cost model
    pe_nnz: np.ndarray | None = None  # stored weights per PE (csr walks them all)
    host_decoder_synops: int = 0  # decoder synops done by the host (decoder="host")
    host_packets_in: int = 0  # packets the host received from the chip
    host_packets_out: int = 0  # packets the host sent to the chip (embedding values, or the token)
    embedding_synops: int = 0  # table values read by embedding PEs (embedding="pe"; not in synops)


@dataclass
class RunStats:
    """Totals since the last reset_stats(), for `s2 node run` and the stats topic."""

    steps: int = 0
    events_in: int = 0
    events_out: int = 0
    synops: int = 0
    decoder_synops: int = 0
    host_decoder_synops: int = 0
    host_packets_in: int = 0
    host_packets_out: int = 0
    embedding_synops: int = 0
    units: int = 0  # unit-steps (for activity sparsity)
    energy_j: float = 0.0
    latencies_s: list[float] = field(default_factory=list)  # the last LATENCY_WINDOW (+ up to as many) steps
    pe_synops: np.ndarray | None = None

    @property
    def activity_sparsity(self) -> float:
        return 1.0 - self.events_out / self.units if self.units else 0.0

    def summary(self) -> dict[str, Any]:
        lat = np.array(self.latencies_s) if self.latencies_s else np.zeros(1)
        n = max(self.steps, 1)
        return {
            "steps": self.steps,
            "events_in_per_step": self.events_in / n,
            "events_out_per_step": self.events_out / n,
            "activity_sparsity": self.activity_sparsity,
            "synops_per_step": self.synops / n,
            "decoder_synops_per_step": self.decoder_synops / n,
            "host_decoder_synops_per_step": self.host_decoder_synops / n,
            "host_packets_in_per_step": self.host_packets_in / n,
            "host_packets_out_per_step": self.host_packets_out / n,
            "embedding_synops_per_step": self.embedding_synops / n,
            "latency_s_p50": float(np.percentile(lat, 50)),
            "latency_s_p99": float(np.percentile(lat, 99)),
            "energy_j_per_step": self.energy_j / n,
        }


def limit_blas_threads(n: int) -> None:
    """Cap BLAS threads for the process: for a program's edge (a command, a bench), never a library. The node's
    mat-vecs are small: a multi-threaded BLAS on a busy machine is up to ~80x slower on them (measured: 2048 x 768
    float32 mat-vec 0.17 ms on 1 thread, 14 ms on a shared 2-core box with OpenBLAS's default threads)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it, set OPENBLAS_NUM_THREADS=1 in the environment
        return
    threadpool_limits(n, user_api="blas")


class Node:
    """One emulated SpiNNaker 2 chip running a compiled EGRU model."""

    def __init__(self, compiled: CompiledModel, cost_table: CostTable | None = None) -> None:
        self.compiled = compiled
        self.spec: ModelSpec = compiled.spec
        self.chip: ChipSpec = compiled.chip
        self.numerics = compiled.numerics
        self.kernel = make_kernel(self.spec, self.numerics)
        self.groups = compiled.groups
        self.n_layers = len(self.spec.layers)
        self.decoder_on_pes = compiled.decoder == "pe"
        self.embedding_on_pes = compiled.embedding == "pe"
        g0 = int(self.embedding_on_pes)  # compiled groups: [embedding], EGRU layers, [decoder]
        self.layer_group = list(range(g0, g0 + self.n_layers))
        self.dec_col_nnz = np.count_nonzero(self.spec.decoder_weight, axis=0).astype(np.int64)
        self._pe_nnz = stored_weights_walked(compiled)
        self.n_pes = compiled.n_pes_used
        self.group_starts = np.array([g.pe_start for g in self.groups])
        self.slices = [slice(g.pe_start, g.pe_start + g.n_pes) for g in self.groups]
        # an embedding PE forwards its table's values: no unit update
        self.updates = np.concatenate([np.diff(g.bounds) * (g.name != "embedding") for g in self.groups]
                                       ).astype(np.float64)
        self.bias = [(layer.bias_ih.astype(F32), layer.bias_hh.astype(F32)) for layer in self.spec.layers]
        self.dec_bias = self.spec.decoder_bias.astype(F32)
        self.readout = ReadoutSpec.from_config({"task": self.spec.task, "readout": self.spec.readout})
        # the trace runs on the decoder PEs as W·trace(y) = trace(W·y): the decoder is linear in the events
        self.trace = Trace(F32(self.readout.trace_alpha)) if self.readout.source == "trace" else None
        self.pooling = self.readout.pooling()
        # per-PE count tables of each group's input and recurrent sources
        self.counts_in = [CountTable(g.nnz_in, r) for g, r in zip(self.groups, compiled.recv_in, strict=True)]
        self.counts_rec = [None if g.nnz_rec is None else CountTable(g.nnz_rec, r)
                           for g, r in zip(self.groups, compiled.recv_rec, strict=True)]
        # A language model's layer-0 accumulation depends on the token only (the host sends its embedding row):
        # kept per token once computed, when the table is small. The same sums, so the same floats; the counted
        # work is unchanged (it is the chip's, every step).
        v, h3 = (len(self.spec.embedding), 3 * self.kernel.hidden[0]) if self.spec.task == "lm" else (0, 0)
        self._gx0: list[np.ndarray | None] | None = [None] * v if 0 < v * h3 * 4 <= TOKEN_CACHE_BYTES else None
        cfg = self.spec.config
        self.names = list(cfg.get("vocab") or cfg.get("classes") or [])
        self._dense_cycles: np.ndarray | None = None
        self.n_units = int(sum(self.kernel.hidden))
        self._lm = self.spec.task == "lm"
        # a language model's input packets per token (its embedding row's non-zeros), kept once computed
        self._token_packets: list[tuple[np.ndarray, np.ndarray] | None] = \
            [None] * (len(self.spec.embedding) if self.spec.task == "lm" else 0)
        # the chip PE of each unit of each group: one bincount gives a step's packets out of every PE
        self._unit_pe = [g.unit_pe + g.pe_start for g in self.groups]
        self._pout_base = np.zeros(self.n_pes)  # packets out per step whatever the events: a decoder PE's argmax
        if self.decoder_on_pes:
            self._pout_base[self.slices[-1]] = 1.0
        self._pout_base_total = int(self._pout_base.sum())
        self._ones = np.ones(sum(len(u) for u in self._unit_pe))  # bincount weights: one per unit that can send
        # host decoder synops of a step: events x the column's non-zeros, one product when every column has as many
        each = self.dec_col_nnz[:1]
        self._dec_nnz_each = int(each[0]) if len(each) and np.all(self.dec_col_nnz == each[0]) else None
        # DRAM bytes per synop of each PE: its group's weight bytes where the group spills (layers and decoder)
        self._dram_per_synop = np.concatenate([np.full(g.n_pes, g.bytes_per_weight * g.spilled * (
            g.name != "embedding"), np.float64) for g in self.groups])
        self._dram = bool(self._dram_per_synop.any())
        self._no_dram = np.zeros(self.n_pes)  # every step's DRAM bytes when nothing spills: shared, read-only
        self._no_dram.flags.writeable = False
        self.cost_table = cost_table or CostTable()
        self._pending: tuple | None = None  # a step's bookkeeping not yet done (`step(settle=False)`)
        self.reset()
        self.reset_stats()

    @property
    def cost_table(self) -> CostTable:
        return self._cost_table

    @cost_table.setter
    def cost_table(self, table: CostTable) -> None:
        """The step's counter plan folds the table's cycle rates in (`StepCounts`): it is rebuilt with the table."""
        self._cost_table = table
        # count terms in step order: [the embedding's token], per layer its input and recurrent sources, [decoder]
        terms = [(self.slices[0], self.counts_in[0])] if self.embedding_on_pes else []
        for gi in self.layer_group:
            terms += [(self.slices[gi], self.counts_in[gi]), (self.slices[gi], self.counts_rec[gi])]
        if self.decoder_on_pes:
            terms.append((self.slices[-1], self.counts_in[-1]))
        # any counter of a step is at most the sum of every table entry, unit, PE and stored weight
        max_count = sum(float(c.table.sum()) for _, c in terms) + sum(len(u) for u in self._unit_pe) + \
            self.n_pes + float(self._pe_nnz.sum()) + float(self.updates.sum())
        self._counts = StepCounts(self.n_pes, terms, self.chip, table, self.numerics, self.compiled.layout,
                                  self.updates, self._pe_nnz, self.group_starts, self._dram, max_count)

    @classmethod
    def load(
        cls, model_file: str | Path, chip: ChipSpec | None = None, numerics: str = "fp32", prune: float | None = None,
        *, dram: bool = False, spread: bool = False, cost_table: CostTable | None = None, decoder: str = "host",
        embedding: str = "host", layout: str = "column",
    ) -> Node:
        """decoder / embedding: "pe" or "host" (the paper: both on the host); layout: "column" | "csr"."""
        config, tensors = modelfile.load(model_file)
        return cls.from_spec(ModelSpec.from_model(config, tensors), chip, numerics, prune, dram=dram, spread=spread,
                             cost_table=cost_table, decoder=decoder, embedding=embedding, layout=layout)

    @classmethod
    def from_spec(
        cls, spec: ModelSpec, chip: ChipSpec | None = None, numerics: str = "fp32", prune: float | None = None,
        *, dram: bool = False, spread: bool = False, cost_table: CostTable | None = None, decoder: str = "host",
        embedding: str = "host", layout: str = "column",
    ) -> Node:
        compiled = compile_model(spec, chip or ChipSpec(), numerics, prune=prune, dram=dram, spread=spread,
                                 decoder=decoder, embedding=embedding, layout=layout)
        return cls(compiled, cost_table)

    def reset(self) -> None:
        """Start a new sequence: c = y = 0 everywhere, no pending events, readout cleared."""
        self.settle()
        self._c = [np.zeros(h, F32) for h in self.kernel.hidden]
        self._y_idx = [np.zeros(0, np.int64) for _ in self.kernel.hidden]
        self._y_val = [np.zeros(0, F32) for _ in self.kernel.hidden]
        if self.trace is not None:
            self.trace.reset()
        self.pooling.reset()
        self._t = 0
        self._x_early: np.ndarray | None = None  # input delivered before this timestep's tick (deliver())
        self._gx_early: np.ndarray | None = None  # its layer-0 accumulation, done on arrival (fp32)
        self._acct_early: list | None = None  # its layer-0 [synops, packets per PE, active sources]

    @property
    def config(self) -> dict[str, Any]:
        return self.spec.config

    def get_state(self) -> tuple:
        """A snapshot of every unit's state, the pending events and the readout (e.g. to try a continuation)."""
        self.settle()
        return ([c.copy() for c in self._c], [i.copy() for i in self._y_idx], [v.copy() for v in self._y_val],
                None if self.trace is None or self.trace.u is None else self.trace.u.copy(),
                self.pooling.get_state(), self._t)

    def set_state(self, state: tuple) -> None:
        self.settle()
        c, yi, yv, u, pool, t = state
        self._c, self._y_idx, self._y_val = [x.copy() for x in c], [x.copy() for x in yi], [x.copy() for x in yv]
        self._t = t
        if self.trace is not None:
            self.trace.u = None if u is None else u.copy()
        self.pooling.set_state(pool)

    def reset_stats(self) -> None:
        self._pending = None  # a deferred step's counters go with the totals they were for
        self.stats = RunStats(pe_synops=np.zeros(self.n_pes))
        self.last: StepStats | None = None
        self._stats_t0 = time.monotonic()

    # -- input packets ----------------------------------------------------------------------------------
    def input_packets(self, inp: Any) -> tuple[np.ndarray, np.ndarray]:
        """Token id | dense input vector | (keys, payloads) -> active sources and their summed payloads."""
        if self._lm and (isinstance(inp, INTEGERS) or np.ndim(inp) == 0):
            tok = int(inp)
            if not 0 <= tok < len(self.spec.embedding):
                raise S2NodeError(f"token id {tok} outside the vocabulary of {len(self.spec.embedding)}")
            packets = self._token_packets[tok]
            if packets is None:
                x = self.spec.embedding[tok]
                idx = x.nonzero()[0]
                packets = self._token_packets[tok] = (idx, x[idx])
            return packets
        n_in = self.spec.n_inputs
        if isinstance(inp, tuple):
            keys, vals = np.asarray(inp[0], np.int64), np.asarray(inp[1], np.float64)
            if keys.size and (keys.min() < 0 or keys.max() >= n_in):
                raise S2NodeError(f"input key outside 0..{n_in - 1}")
            x = np.bincount(keys, weights=vals, minlength=n_in).astype(F32)  # same key twice: payloads add
        else:
            x = inp if type(inp) is np.ndarray and inp.dtype == F32 and inp.ndim == 1 else \
                np.asarray(inp, F32).reshape(-1)  # a float32 vector as it is: no conversion calls
            if x.size != n_in:
                raise S2NodeError(f"input has {x.size} values, the model takes {n_in}")
        idx = (x != 0).nonzero()[0]  # a comparison and a boolean nonzero: a third of a float nonzero's work
        return idx, x.take(idx)

    # -- one timestep -----------------------------------------------------------------------------------
    def deliver(self, inp: Any) -> None:
        """Input that arrives during the current timestep, before its tick (the next `step`). The PEs take packets
        on arrival, as SpiNNaker 2 does (synaptic input per packet, the neuron update on the timer tick), so the
        tick has only the late rest to do: its packets' counts here, and for fp32 their weight sums too.
        `deliver(a); step(b)` equals `step(a + b)`: the same packets, synops and cost (one packet per active
        source and timestep, payloads summed); fp32 sums in another order (float rounding); int8 quantises the
        summed payloads at the tick, so its arithmetic waits for the tick."""
        if self.spec.task == "lm":
            raise S2NodeError("deliver() is for event input; a language model takes one token per step")
        self.settle()
        cols, vals = self.input_packets(inp)
        if not len(cols):
            return
        if self._x_early is None:
            self._x_early = np.zeros(self.spec.n_inputs, F32)
            # layer 0's [synops, packets] per PE, (unused), active sources; no embedding with event input
            self._acct_early = [np.zeros((2, self.groups[0].n_pes)), None, 0]
        self._count_new_sources(cols)
        self._x_early[cols] += vals
        if self.numerics == "fp32":
            gx = self.kernel.accumulate(0, "ih", cols, vals)
            self._gx_early = gx if self._gx_early is None else self._gx_early + gx

    def _count_new_sources(self, cols: np.ndarray) -> None:
        """Packet and synop counts of the sources that become active this timestep with `cols` (a source active
        in several deliveries still sends one packet at the tick)."""
        new = cols[self._x_early[cols] == 0]
        if len(new):
            acct = self._acct_early
            acct[0] += self.counts_in[0].sum(new)  # synops and packets per PE
            acct[2] += len(new)

    def _take_early(self, inp: Any) -> tuple[Any, np.ndarray | None, list | None]:
        """Merge the tick's own input with what was delivered before it: (whole input, layer-0 weight sums so far
        or None, layer-0 [synops, packets, sources] or None if payloads cancelled and it must be recounted)."""
        late_cols, late_vals = self.input_packets(inp)
        self._count_new_sources(late_cols)
        x, gx, acct = self._x_early, self._gx_early, self._acct_early
        x[late_cols] += late_vals
        if gx is not None:
            gx = gx + self.kernel.accumulate(0, "ih", late_cols, late_vals)
        if np.count_nonzero(x) != acct[2]:
            acct = None  # a payload summed to zero: recount from the whole input
        self._x_early, self._gx_early, self._acct_early = None, None, None
        return x, gx, acct

    def step(self, inp: Any, settle: bool = True) -> Prediction:
        """One timestep: the prediction, with this step's counters and cost in `stats`. With settle=False the
        bookkeeping (counters, cost, run totals) waits for `settle()`, which the node's next step, deliver, reset or
        state call does first: a stream publishes the prediction before it (`stats` is None then)."""
        self.settle()
        gx_early, acct_early = None, None
        if self._x_early is not None:  # input delivered ahead of this tick (deliver())
            inp, gx_early, acct_early = self._take_early(inp)
        cols, vals = self.input_packets(inp)
        k = self.kernel
        events_in = len(cols)
        # the active sources of each count term (`StepCounts`), and the chip PE of each unit event
        active: list[np.ndarray] = []
        senders: list[np.ndarray] = []
        if self.embedding_on_pes:  # one packet (the token) to the embedding PEs; they send its non-zero values
            active.append(np.array([int(inp)]))
            senders.append(self._unit_pe[0].take(cols))
        events: list[int] = []
        for li in range(self.n_layers):
            rc, rv = self._y_idx[li], self._y_val[li]
            active += (cols, rc)
            if li == 0 and gx_early is not None:
                gx = gx_early + self.bias[0][0]
            elif li == 0 and self._gx0 is not None:
                gx = self.token_gx(int(inp))
            else:
                gx = k.gates_in(li, cols, vals)
            gh = k.gates_rec(li, rc, rv)
            self._c[li], c_hat, o = k.update_units(li, gx, gh, self._c[li])
            cols, vals = k.emit(c_hat, o)
            self._y_idx[li], self._y_val[li] = cols, vals
            senders.append(self._unit_pe[self.layer_group[li]].take(cols))
            events.append(len(cols))
        acc = k.decode(cols, vals)
        if self.trace is not None:
            logits = self.trace(acc) + self.dec_bias
        else:
            logits = acc + self.dec_bias
        self._t += 1
        out = logits if self.readout.pool == "last" else self.pooling(logits).astype(F32)
        label = int(out.argmax())
        self._pending = (active, senders, events, events_in, cols, acct_early)
        return Prediction(label, self.names[label] if label < len(self.names) else str(label), out, self._t,
                          self.settle() if settle else None, logits, sum(events))

    def settle(self) -> StepStats | None:
        """The bookkeeping a `step(settle=False)` left: its StepStats, added to the run's totals (None if none)."""
        if self._pending is None:
            return None
        active, senders, events, events_in, cols, acct_early = self._pending
        self._pending = None
        n = self.n_pes
        if self.decoder_on_pes:
            active.append(cols)
        t_in0 = int(self.embedding_on_pes)  # the count term of layer 0's input
        extra: tuple[tuple[int, np.ndarray], ...] = ()
        if acct_early is not None:  # its counts were taken as the packets arrived
            active[t_in0] = cols[:0]
            extra = ((t_in0, acct_early[0]),)
        counts = self._counts(active, extra)
        syn, pin = counts[:n], counts[n:2 * n]
        group_synops = counts[self._counts.tail:self._counts.chip_totals.start].tolist()  # exact integers
        sent = senders[0] if len(senders) == 1 else np.concatenate(senders)
        pout = np.bincount(sent, self._ones[:len(sent)], n)  # counts as float64 in one call
        if self.decoder_on_pes:
            pout += self._pout_base
        dram = syn * self._dram_per_synop if self._dram else self._no_dram
        st = StepStats(self.numerics, self.group_starts, syn, pin, pout, self.updates, dram, events_in=events_in,
                       events_per_layer=events, units=self.n_units, layout=self.compiled.layout,
                       pe_nnz=self._pe_nnz)
        if self.embedding_on_pes:
            st.embedding_synops = int(group_synops[0])
            st.host_packets_out = 1
        else:
            st.host_packets_out = events_in
        # the decoder, driven by the last layer's events: on PEs, or on the host
        if self.decoder_on_pes:
            st.decoder_synops = int(group_synops[-1])
            st.host_packets_in = self.groups[-1].n_pes
        else:
            st.decoder_synops = st.host_decoder_synops = len(cols) * self._dec_nnz_each if \
                self._dec_nnz_each is not None else int(np.add.reduce(self.dec_col_nnz[cols]))
            st.host_packets_in = len(cols)
        st.synops = int(sum(group_synops[self.layer_group[0]:self.layer_group[-1] + 1]))
        st.events_out = sum(events)
        st.cost = step_cost(self.chip, self.cost_table, st) if self._counts.rates is None else \
            self._counts.cost(counts, pout, sum(map(len, senders)) + self._pout_base_total)
        self._account(st)
        return st

    def token_gx(self, tok: int) -> np.ndarray:
        """Layer 0's input pre-activation (W_ih·embedding[tok] + b_ih) of a language model (the cached table)."""
        gx = self._gx0[tok]
        if gx is None:
            cols = np.flatnonzero(self.spec.embedding[tok])
            gx = self._gx0[tok] = self.kernel.accumulate(0, "ih", cols, self.spec.embedding[tok][cols]) + \
                self.bias[0][0]
        return gx

    def _account(self, st: StepStats) -> None:
        s = self.stats
        s.steps += 1
        s.events_in += st.events_in
        s.events_out += st.events_out
        s.synops += st.synops
        s.decoder_synops += st.decoder_synops
        s.host_decoder_synops += st.host_decoder_synops
        s.host_packets_in += st.host_packets_in
        s.host_packets_out += st.host_packets_out
        s.embedding_synops += st.embedding_synops
        s.units += self.n_units
        s.energy_j += st.cost.energy_j
        s.latencies_s.append(st.cost.latency_s)
        if len(s.latencies_s) > 2 * LATENCY_WINDOW:
            del s.latencies_s[:LATENCY_WINDOW]
        s.pe_synops += st.pe_synops
        self.last = st

    # -- for the stats topic ----------------------------------------------------------------------------------
    @property
    def pe_nnz(self) -> np.ndarray:
        """Stored weights per used PE (what a csr walk visits every step)."""
        return self._pe_nnz

    @property
    def has_token_table(self) -> bool:
        """Whether layer 0's accumulation is kept per token (`token_gx`)."""
        return self._gx0 is not None

    def dense_cycles(self) -> np.ndarray:
        """Cycles per used PE of the dense-equivalent step (computed once)."""
        if self._dense_cycles is None:
            self._dense_cycles = self.dense_step_stats().cost.cycles_per_pe
        return self._dense_cycles

    def pe_activity(self) -> np.ndarray:
        """Per chip PE (all of them; unused PEs 0): last step's cycles over that PE's dense-equivalent cycles."""
        out = np.zeros(self.chip.n_pes)
        if self.last is not None and self.last.cost is not None:
            out[: self.n_pes] = np.minimum(1.0, self.last.cost.cycles_per_pe / self.dense_cycles())
        return out

    def node_stats(self) -> dict[str, Any]:
        """The node's side of the stats topic (the pipeline adds the model name, its input counts and drops):
        the one formula for PE activity, energy and latency, shown by the UI and reported by `s2 node run`.
        A step whose bookkeeping is pending (`step(settle=False)`) is not in them yet: this may be read from another
        thread than the node's owner (a pipeline's stats loop), so it reads and never settles."""
        s = self.stats
        wall = time.monotonic() - self._stats_t0
        lat = s.summary()
        per_inf = s.energy_j / max(s.steps, 1)  # a streaming node makes one prediction per step
        return {
            "steps": s.steps,
            "pe_activity": self.pe_activity().round(4).tolist(),
            "sram_bytes_used": int(self.compiled.sram_total_per_pe.sum()),
            "sram_bytes_total": self.chip.n_pes * self.chip.sram_bytes_per_pe,
            "synops_per_s": s.synops / wall if wall > 0 else 0.0,
            "activity_sparsity": s.activity_sparsity,
            "energy_per_inference_j": per_inf,
            "latency_p50_s": lat["latency_s_p50"],
            "latency_p99_s": lat["latency_s_p99"],
            "events_in": s.events_in,
        }

    # -- the dense equivalent -----------------------------------------------------------------------------
    def dense_step_stats(self) -> StepStats:
        """Counters if every input and every unit sent an event every step (what a dense chip would do)."""
        n = self.n_pes
        syn, pin, pout = np.zeros(n), np.zeros(n), np.zeros(n)
        dram = np.zeros(n)
        st = StepStats(self.numerics, self.group_starts, syn, pin, pout, self.updates, dram,
                       events_in=self.spec.n_inputs, layout=self.compiled.layout, pe_nnz=self._pe_nnz)
        for i, g in enumerate(self.groups):
            sl = self.slices[i]
            if g.name == "embedding":  # one token a step: an average row of the table, every value sent
                syn[sl], pin[sl], pout[sl] = g.nnz_in.mean(0), self.compiled.recv_in[i].mean(0), np.diff(g.bounds)
                st.embedding_synops = round(syn[sl].sum())
                continue
            syn[sl] = g.nnz_in.sum(0) + (g.nnz_rec.sum(0) if g.nnz_rec is not None else 0)
            pin[sl] = self.compiled.recv_in[i].sum(0) + (
                self.compiled.recv_rec[i].sum(0) if self.compiled.recv_rec[i] is not None else 0)
            pout[sl] = np.diff(g.bounds) if g.nnz_rec is not None else 1
            if g.spilled:
                dram[sl] = syn[sl] * g.bytes_per_weight
        if self.decoder_on_pes:
            st.decoder_synops = int(syn[self.slices[-1]].sum())
            st.synops = int(syn.sum()) - st.decoder_synops - st.embedding_synops
        else:
            st.synops = int(np.add.reduce(syn)) - st.embedding_synops
            st.decoder_synops = st.host_decoder_synops = int(self.dec_col_nnz.sum())
        st.events_out = int(sum(self.kernel.hidden))
        st.cost = step_cost(self.chip, self.cost_table, st)
        return st
