"""Several independent streams on one emulated chip model: `NodeBatch.step(streams, inputs) -> BatchPrediction`.

Each stream is what a lone `runtime.Node` of the same compiled model would be: its own unit states, pending
events, readout and run statistics. A tick steps the streams that have input together, with no Python loop over
the streams: the states are [streams, units] arrays; each layer's synaptic work is one product over the streams'
payloads (`Kernel.accumulate_many`: the full matrix, the union of their active sources, each stream's own active
rows gathered and summed, or CSC walks of a pruned matrix, whichever is cheaper), and a layer's events go through
its recurrent weights and the next layer's (or the decoder's) in one product (`Kernel.accumulate_events_many`),
whose recurrent half waits for the stream's next tick; the per-PE counters are [streams, PEs] arrays from each
stream's active sources and the compiler's count tables (exact integer sums, as the lone node's), and the cost
model's formulas run on all the rows at once. So each stream's counters, energy and latency are those of a lone
node fed the same inputs; its arithmetic equals the lone node's exactly for int8 (integer sums) and to float
rounding for fp32 (another summation order). A tick of one stream runs the lone node's own step on that stream's
state.
"""
from __future__ import annotations

import time
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np

from s2node.cost import pe_cycles
from s2node.errors import S2NodeError
from s2node.kernels.base import ActiveSources
from s2node.readout import Pooling
from s2node.runtime import F32, LATENCY_WINDOW, CountTable, Node

COUNTS = ("steps", "events_in", "events_out", "synops", "decoder_synops", "host_decoder_synops", "host_packets_in",
          "host_packets_out", "embedding_synops", "units")


class BatchPrediction(NamedTuple):
    """One tick of k streams: pooled and step logits [k, classes] (float32), unit events and synops [k] (int64)."""

    pooled: np.ndarray
    logits: np.ndarray
    events: np.ndarray
    synops: np.ndarray


class PoolingMany:
    """readout.Pooling of n streams, vectorised: the same float64 sums in the same order, so equal results."""

    def __init__(self, pool: str, n: int, n_classes: int, window_steps: int | None = None) -> None:
        self.pool = Pooling(pool, window_steps).pool  # checks the name
        self.w = max(1, int(window_steps or 1))
        self._sum = np.zeros((n, n_classes))  # mean: the running sum
        self._count = np.zeros(n, np.int64)
        self._ring = np.zeros((n, self.w, n_classes)) if self.pool == "window" else None  # window: the last w

    def reset(self, i: int) -> None:
        self._sum[i], self._count[i] = 0, 0

    def __call__(self, idx: np.ndarray, logits: np.ndarray) -> np.ndarray:
        v = np.asarray(logits, np.float64)
        if self.pool == "last":
            return v
        if self.pool == "mean":
            self._sum[idx] += v
            self._count[idx] += 1
            return self._sum[idx] / self._count[idx][:, None]
        ring, w = self._ring, self.w
        cnt = self._count[idx]
        ring[idx, cnt % w] = v  # slot of the step; the oldest kept is slot (cnt + 1) % w once the ring is full
        cnt = cnt + 1
        self._count[idx] = cnt
        full = cnt >= w
        start = np.where(full, cnt % w, 0)
        order = (start[:, None] + np.arange(w)) % w  # oldest first, as the deque Pooling averages
        rows = ring[idx[:, None], order]
        rows[~full[:, None] & (np.arange(w) >= cnt[:, None])] = 0.0  # slots not yet written add exact zeros
        return rows.sum(1) / np.minimum(cnt, w)[:, None]


class LatencyWindows:
    """Each stream's step latencies, bounded as Node's (between window + 1 and 2·window kept), in one [streams,
    capacity] array grown by doubling: a tick stores every stream's latency with one indexed assignment."""

    def __init__(self, n: int, window: int = LATENCY_WINDOW) -> None:
        self.window = window
        self._buf = np.zeros((n, min(64, 2 * window + 1)))
        self._len = np.zeros(n, np.int64)

    def add(self, idx: np.ndarray, latency_s: np.ndarray) -> None:
        ln = self._len[idx]
        cap = self._buf.shape[1]
        if ln.max() >= cap:
            grown = np.zeros((len(self._len), min(2 * cap, 2 * self.window + 1)))
            grown[:, :cap] = self._buf
            self._buf = grown
        self._buf[idx, ln] = latency_s
        ln += 1
        over = ln > 2 * self.window
        for i in idx[over].tolist():  # as Node._account: the oldest `window` go (once in `window` steps)
            self._buf[i, : self.window + 1] = self._buf[i, self.window:].copy()
        ln[over] = self.window + 1
        self._len[idx] = ln

    def add_one(self, i: int, latency_s: float) -> None:
        """`add` of one stream (a tick of one: scalars, no index arrays)."""
        n = self._len.item(i)
        if n == self._buf.shape[1]:
            self.add(np.array([i]), np.array([latency_s]))
            return
        self._buf[i, n] = latency_s
        if n == 2 * self.window:  # as Node._account: the oldest `window` go
            self._buf[i, : self.window + 1] = self._buf[i, self.window:].copy()
            n = self.window
        self._len[i] = n + 1

    def of(self, i: int) -> np.ndarray:
        """Stream i's kept latencies, oldest first."""
        return self._buf[i, : self._len[i]]


def pe_counts(*parts: tuple[CountTable, ActiveSources, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Σ of `CountTable.__call__` over (count table, several streams' active sources, how many each): (synops,
    packets) [streams, PEs]. Tables whose sources all have the same counts (a dense layer) take each stream's number
    of active sources times that one row, all of them in one product: the same integers as the lone node's
    `len(cols) * row` (exact in float64)."""
    alike = [(t.rows[0], n) for t, _, n in parts if t.rows is not None and len(t.rows) == 1]
    out = np.stack([n for _, n in alike], 1) @ np.stack([r for r, _ in alike]) if alike else 0.0
    for t, act, _ in parts:
        if t.rows is None or len(t.rows) > 1:
            out = out + np.concatenate(t(act.dense(np.ones(len(act.flat)))), 1)
    p = parts[0][0].n_pes
    return out[:, :p], out[:, p:]


def pe_events(unit_pe: np.ndarray, n_pes: int, act: ActiveSources) -> np.ndarray:
    """Events per PE of several streams' fired units (unit_pe: each unit's PE): [streams, PEs] int64."""
    k = act.shape[0]
    return np.bincount(act.streams * n_pes + unit_pe[act.cols], minlength=k * n_pes).reshape(k, n_pes)


class NodeBatch:
    """n streams of one `Node`'s compiled model; `node` lends its tables and its dense-step reference."""

    def __init__(self, node: Node, n: int) -> None:
        if n < 1:
            raise S2NodeError(f"a batch needs at least one stream, not {n}")
        if n > 1:  # torch's gather-and-sum kernels (kernels.base): imported here, not within the first tick
            import torch  # noqa: F401
        self.node, self.n = node, n
        nd = node
        self.n_in = nd.spec.n_inputs
        self._streams = np.arange(n)
        self._spilled = any(g.spilled for g in nd.groups)  # weights in DRAM: DRAM bytes to count
        self._n_classes = len(nd.spec.decoder_bias)
        self._c = [np.zeros((n, h), F32) for h in nd.kernel.hidden]
        self._y = [np.zeros((n, h), F32) for h in nd.kernel.hidden]  # last step's payloads (0 = no event)
        self._o = [np.zeros((n, h), bool) for h in nd.kernel.hidden]  # last step's events
        self._u = np.zeros((n, self._n_classes), F32)  # the decoder's trace
        self._pool = PoolingMany(nd.readout.pool, n, self._n_classes)
        self._early = np.zeros((n, self.n_in), F32)
        self._has_early = np.zeros(n, bool)
        self._parked: int | None = None  # the stream whose state the lone node holds (_park)
        # each layer's events of the last tick (the active sources of y and o) when every stream stepped in it and
        # no state changed since: the next tick's recurrent input, not searched for again
        self._last_events: list[tuple[ActiveSources, ActiveSources]] | None = None
        # each layer's recurrent accumulation of its last events, made with the next layer's input in one product
        # (Kernel.accumulate_events_many) and used at the stream's next tick; ok: a stream's row is current
        self._gh: list[np.ndarray | None] = [None] * nd.n_layers
        self._gh_ok = [np.zeros(n, bool) for _ in range(nd.n_layers)]
        # layer 0's accumulation of each token (as the lone node's table: the same floats), filled on first use
        vocab = len(nd.spec.embedding) if nd.has_token_table else 0
        self._gx0 = np.zeros((vocab, 3 * nd.kernel.hidden[0]), F32)
        self._gx0_known = np.zeros(vocab, bool)
        self._reset_stats()

    # -- per-stream state -------------------------------------------------------------------------------
    def reset(self, i: int) -> None:
        """Stream i starts a new sequence (as Node.reset); its statistics go on."""
        self._check(i)
        if self._parked == i:
            self._unpark()
        self._last_events = None
        for a in (*self._c, *self._y, *self._o):
            a[i] = 0
        for gh, ok in zip(self._gh, self._gh_ok, strict=True):
            if gh is not None:  # no events: nothing accumulated
                gh[i], ok[i] = 0, True
        self._u[i] = 0
        self._pool.reset(i)
        self._early[i], self._has_early[i] = 0, False

    def _reset_stats(self) -> None:
        n, p = self.n, self.node.n_pes
        self._tot = np.zeros((n, len(COUNTS)), np.int64)  # RunStats' counts, one row per stream
        self._energy = np.zeros(n)
        self._lat = LatencyWindows(n)
        self._pe_synops = np.zeros((n, p))
        self._last_cycles = np.zeros((n, p))
        self._has_last = np.zeros(n, bool)
        self._t0 = np.full(n, time.monotonic())

    def _check(self, i: int) -> None:
        if not 0 <= i < self.n:
            raise S2NodeError(f"stream {i} outside 0..{self.n - 1}")

    # -- input ------------------------------------------------------------------------------------------
    def _vector(self, inp: Any) -> np.ndarray:
        """A gesture input (dense vector or (keys, payloads)) as a dense float32 vector, checked as Node does."""
        if isinstance(inp, tuple):
            cols, vals = self.node.input_packets(inp)
            x = np.zeros(self.n_in, F32)
            x[cols] = vals
            return x
        x = np.asarray(inp, F32).reshape(-1)
        if x.size != self.n_in:
            raise S2NodeError(f"input has {x.size} values, the model takes {self.n_in}")
        return x

    def _stack(self, inputs: list[Any]) -> np.ndarray:
        """The gesture inputs of a tick as [k, n_in] float32: one conversion when they are alike (dense, of one
        shape and of the model's size), else input by input (`_vector`, which names a bad one)."""
        if not any(map(isinstance, inputs, repeat(tuple))):
            try:
                x = np.asarray(inputs, F32)
            except ValueError:  # inputs of different shapes
                x = None
            if x is not None and x.size == len(inputs) * self.n_in:
                return x.reshape(len(inputs), self.n_in)
        return np.stack([self._vector(v) for v in inputs])

    def _tokens(self, inputs: list[Any]) -> np.ndarray:
        spec = self.node.spec
        toks = np.asarray(inputs)
        if toks.dtype.kind not in "iu" or toks.ndim != 1:
            toks = np.array([int(t) for t in inputs], np.int64)
        bad = (toks < 0) | (toks >= len(spec.embedding))
        if bad.any():
            raise S2NodeError(f"token id {toks[bad][0]} outside the vocabulary of {len(spec.embedding)}")
        return toks.astype(np.int64, copy=False)

    def deliver(self, i: int, inp: Any) -> None:
        """Early input of stream i's current timestep (as Node.deliver: `deliver(a); step(b)` counts as a + b)."""
        self._check(i)
        if self.node.spec.task == "lm":
            raise S2NodeError("deliver() is for event input; a language model takes one token per step")
        self._early[i] += self._vector(inp)
        self._has_early[i] = True

    def _inputs(self, idx: np.ndarray, inputs: list[Any]) -> tuple[np.ndarray, np.ndarray | None]:
        """[k, n_in] payloads of the stepping streams (and their tokens, for a language model)."""
        spec = self.node.spec
        if spec.task == "lm":
            toks = self._tokens(inputs)
            return spec.embedding[toks].astype(F32, copy=False), toks
        x = self._stack(inputs)
        early = self._has_early[idx]
        if early.any():  # the delivered part first, then the tick's own (the lone node's order of float sums)
            x[early] = self._early[idx[early]] + x[early]
            self._early[idx[early]] = 0
            self._has_early[idx[early]] = False
        return x, None

    def _token_gx(self, toks: np.ndarray) -> np.ndarray:
        """Layer 0's input pre-activations of the tokens, from the lone node's per-token table (`Node.token_gx`)."""
        for t in np.unique(toks[~self._gx0_known[toks]]).tolist():
            self._gx0[t], self._gx0_known[t] = self.node.token_gx(t), True
        return self._gx0[toks]

    # -- one tick ---------------------------------------------------------------------------------------
    def step(self, idx: np.ndarray, inputs: list[Any]) -> BatchPrediction:
        """Step streams idx (distinct, ascending) with their inputs; the others keep their state."""
        nd, k = self.node, len(idx)
        kern = nd.kernel
        if k == 1 and nd.readout.pool in ("last", "mean"):
            i, inp = int(idx[0]), inputs[0]
            if nd.spec.task != "lm":
                inp = self._vector(inp)
                if self._has_early[i]:  # the delivered part first, then the tick's own
                    inp, self._early[i], self._has_early[i] = self._early[i] + inp, 0, False
            return self._step_alone(i, inp)
        self._unpark()
        every = k == self.n  # every stream steps: the state arrays are the rows, no gather or scatter
        rows = slice(None) if every else idx
        x, toks = self._inputs(idx, inputs)
        act = ActiveSources.of(x)
        events_in = act.per_stream()
        syn, pin, pout, dram = np.zeros((4, k, nd.n_pes))
        emb_syn = np.zeros(k)
        if nd.embedding_on_pes:  # one packet (the token) to the embedding PEs; they send its non-zero values
            esl, eg = nd.slices[0], nd.groups[0]
            table = nd.counts_in[0].table[toks]
            syn[:, esl], pin[:, esl] = table[:, :eg.n_pes], table[:, eg.n_pes:]
            pout[:, esl] = pe_events(eg.unit_pe, eg.n_pes, act)
            emb_syn = syn[:, esl].sum(1)
            host_out = np.ones(k, np.int64)
        else:
            host_out = events_in
        fired, n_fired = act, events_in  # the active sources of the next layer's input (a count table's mask)
        nxt = None  # the next layer's (or the decoder's) input accumulation, when made with the recurrent one
        events = np.zeros(k, np.int64)
        last, self._last_events = (self._last_events if every else None), []
        for li in range(nd.n_layers):
            gi = nd.layer_group[li]
            g, sl = nd.groups[gi], nd.slices[gi]
            # last step's events: this step's recurrent packets (y: their payloads, o: which units sent)
            prev_y, prev = last[li] if last else (None, ActiveSources.of(self._o[li][rows]))
            syn[:, sl], pin[:, sl] = pe_counts((nd.counts_in[gi], fired, n_fired),
                                               (nd.counts_rec[gi], prev, prev.per_stream()))
            if g.spilled:
                dram[:, sl] = syn[:, sl] * g.bytes_per_weight
            b_ih, b_hh = nd.bias[li]
            if li == 0 and toks is not None and nd.has_token_table:
                gx = self._token_gx(toks)
            elif nxt is not None:
                gx = nxt + b_ih
            else:
                gx = kern.accumulate_many(li, "ih", x, act)
                gx += b_ih
            if self._gh[li] is not None and self._gh_ok[li][rows].all():
                gh = self._gh[li][rows] + b_hh
            else:
                gh = kern.accumulate_many(li, "hh", self._y[li][rows], prev_y)
                gh += b_hh
            c, c_hat, o = kern.update_units(li, gx, gh, self._c[li][rows])
            fired = ActiveSources.of(o)
            # the events' graded payloads y = ĉ (as `emit`: a fired unit sends even a zero), zero elsewhere
            act = fired._replace(vals=c_hat.reshape(-1)[fired.flat])
            x = act.dense(act.vals)
            if every:
                self._c[li], self._y[li], self._o[li] = c, x, o
            else:
                self._c[li][idx], self._y[li][idx], self._o[li][idx] = c, x, o
            self._last_events.append((act, fired))
            both, nxt = kern.accumulate_events_many(li, x, act), None
            if both is not None:
                gh_next, nxt = both
                if self._gh[li] is None:
                    self._gh[li] = np.zeros((self.n, gh_next.shape[1]), F32)
                self._gh[li][rows], self._gh_ok[li][rows] = gh_next, True
            pout[:, sl] = pe_events(g.unit_pe, g.n_pes, fired)
            n_fired = fired.per_stream()
            events += n_fired
        if not every:
            self._last_events = None
        synops = syn.sum(1) - emb_syn
        if nd.decoder_on_pes:
            dg = len(nd.groups) - 1
            dsl = nd.slices[dg]
            syn[:, dsl], pin[:, dsl] = pe_counts((nd.counts_in[dg], fired, n_fired))
            if nd.groups[dg].spilled:
                dram[:, dsl] = syn[:, dsl] * nd.groups[dg].bytes_per_weight
            pout[:, dsl] = 1
            dec_syn, host_dec = syn[:, dsl].sum(1), np.zeros(k)
            host_in = np.full(k, nd.groups[dg].n_pes)
        else:
            dec_syn = host_dec = np.bincount(fired.streams, nd.dec_col_nnz[fired.cols], k)
            host_in = n_fired
        acc = kern.accumulate_many(nd.n_layers, "ih", x, act) if nxt is None else nxt
        if nd.trace is not None:
            a = nd.trace.alpha  # from u = 0, α·0 + (1 - α)·v is exactly Trace's first (1 - α)·v
            acc = a * self._u[rows] + (1.0 - a) * acc
            self._u[rows] = acc
        logits = acc + nd.dec_bias
        pooled = logits if nd.readout.pool == "last" else self._pool(idx, logits).astype(F32)
        self._account(rows, syn, pin, pout, dram, {
            "events_in": events_in, "events_out": events, "synops": synops, "decoder_synops": dec_syn,
            "host_decoder_synops": host_dec, "host_packets_in": host_in, "host_packets_out": host_out,
            "embedding_synops": emb_syn})
        return BatchPrediction(pooled, logits, events, synops.astype(np.int64))

    def _park(self, i: int) -> None:
        """Put stream i's state into the lone node, which then holds it (the arrays' copy is stale) until _unpark:
        a stream stepping alone tick after tick (a batch of one) costs no copies."""
        if self._parked == i:
            return
        self._unpark()
        self._last_events = None
        for ok in self._gh_ok:  # the lone node steps it: its recurrent accumulation is made anew at its next tick
            ok[i] = False
        nd, pool = self.node, self._pool
        idx = [o[i].nonzero()[0] for o in self._o]
        pool_state = (pool._sum[i] if pool._count[i] else None, int(pool._count[i]), [])
        nd.set_state(([c[i] for c in self._c], idx, [y[i][j] for y, j in zip(self._y, idx, strict=True)],
                      self._u[i] if nd.trace is not None else None, pool_state, 0))
        self._parked = i

    def _unpark(self) -> None:
        """The parked stream's state back into the arrays."""
        i, self._parked = self._parked, None
        if i is None:
            return
        c, yi, yv, u, (pool_sum, pool_n, _), _ = self.node.get_state()
        for li in range(self.node.n_layers):
            self._c[li][i], self._y[li][i], self._o[li][i] = c[li], 0, False
            self._y[li][i, yi[li]], self._o[li][i, yi[li]] = yv[li], True
        if u is not None:
            self._u[i] = u
        if pool_n:
            self._pool._sum[i], self._pool._count[i] = pool_sum, pool_n

    def _step_alone(self, i: int, inp: Any) -> BatchPrediction:
        """One stream alone: the lone node's own step on stream i's state (no batching overhead to amortise)."""
        nd = self.node
        self._park(i)
        pred = nd.step(inp)
        st = pred.stats
        nd.stats.latencies_s.clear()  # the lone node's own totals are not used; keep them bounded
        self._tot[i] += [1, st.events_in, st.events_out, st.synops, st.decoder_synops, st.host_decoder_synops,
                         st.host_packets_in, st.host_packets_out, st.embedding_synops, nd.n_units]
        self._energy[i] += st.cost.energy_j
        self._lat.add_one(i, st.cost.latency_s)
        self._pe_synops[i] += st.pe_synops
        self._last_cycles[i], self._has_last[i] = st.cost.cycles_per_pe, True
        return BatchPrediction(pred.logits[None], pred.step_logits[None], np.array([st.events_out]),
                               np.array([st.synops]))

    # -- statistics ---------------------------------------------------------------------------------------
    def _account(self, rows: np.ndarray | slice, syn: np.ndarray, pin: np.ndarray, pout: np.ndarray,
                 dram: np.ndarray, counts: dict[str, np.ndarray]) -> None:
        """Each stepping stream's cost (cost.step_cost's formulas, on all rows at once) and run totals
        (Node._account's); rows: the streams' indices, or every stream."""
        nd = self.node
        chip, table = nd.chip, nd.cost_table
        cyc = pe_cycles(chip, table, nd.numerics, syn, pin, pout, nd.updates, dram, nd.compiled.layout,
                        nd.pe_nnz)
        slowest = np.maximum.reduceat(cyc, nd.group_starts, axis=1)
        latency = slowest.sum(1) / chip.clock_hz + len(nd.group_starts) * table.hop_latency_s
        mac = syn.sum(1) * table.energy_per_mac_j if nd.numerics == "int8" else 0.0
        dyn = cyc.sum(1) * table.energy_per_cycle_j + pin.sum(1) * table.energy_per_packet_j
        if self._spilled:  # else the DRAM term is 0.0, which adds nothing
            dyn = dyn + dram.sum(1) * table.energy_per_dram_byte_j
        dyn = dyn + mac
        static = (cyc.shape[1] * table.static_power_per_pe_w + table.static_power_chip_w) * latency
        tot = np.empty((len(syn), len(COUNTS)), np.int64)
        tot[:, 0], tot[:, -1] = 1, nd.n_units
        for j, name in enumerate(COUNTS[1:-1], 1):
            tot[:, j] = counts[name]
        self._tot[rows] += tot
        self._energy[rows] += dyn + static
        self._lat.add(self._streams[rows], latency)
        self._pe_synops[rows] += syn
        self._last_cycles[rows], self._has_last[rows] = cyc, True

    def activity_sparsity(self, i: int) -> float:
        t = dict(zip(COUNTS, self._tot[i].tolist(), strict=True))
        return 1.0 - t["events_out"] / t["units"] if t["units"] else 0.0

    def node_stats(self, i: int) -> dict[str, Any]:
        """Stream i's side of the stats topic, as Node.node_stats."""
        self._check(i)
        nd = self.node
        t = dict(zip(COUNTS, self._tot[i].tolist(), strict=True))
        steps = t["steps"]
        wall = time.monotonic() - self._t0[i]
        act = np.zeros(nd.chip.n_pes)
        if self._has_last[i]:
            act[: nd.n_pes] = np.minimum(1.0, self._last_cycles[i] / nd.dense_cycles())
        lat = self._lat.of(i)
        lat = lat if len(lat) else np.zeros(1)
        return {
            "steps": steps,
            "pe_activity": act.round(4).tolist(),
            "sram_bytes_used": int(nd.compiled.sram_total_per_pe.sum()),
            "sram_bytes_total": nd.chip.n_pes * nd.chip.sram_bytes_per_pe,
            "synops_per_s": t["synops"] / wall if wall > 0 else 0.0,
            "activity_sparsity": self.activity_sparsity(i),
            "energy_per_inference_j": float(self._energy[i]) / max(steps, 1),
            "latency_p50_s": float(np.percentile(lat, 50)),
            "latency_p99_s": float(np.percentile(lat, 99)),
            "events_in": t["events_in"],
        }
