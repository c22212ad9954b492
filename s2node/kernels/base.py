"""The one abstract step both numerics share: `accumulate`, `update_units`, `emit`.

`accumulate(group, kind, cols, vals)` is every PE of a layer group receiving the packets (cols = active
source ids, vals = their summed graded payloads) and adding value x column into its gate accumulators: one
product over the active columns of the layer's column-major weights (`Wt[source] = W[:, source]`), so the work
follows the events. `update_units` is the end-of-timestep EGRU update of all units of the layer (vectorised
over PEs), `emit` the events of the units that fired. Only `accumulate` differs between fp32 and int8. A step
takes its pre-activations through `gates_in` / `gates_rec` (accumulation plus bias) and `decode`, which a kernel
may compute together, one product per layer's events (`FusedEvents`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from s2node.spec import ModelSpec

F32 = np.float32
ONE = np.array(1.0, F32)  # a 0-d array: made once, and a ufunc takes it with less work than a NumPy scalar
ONE.flags.writeable = False


# Above n_sources / DENSE_GATHER_RATIO active sources, scattering the payloads into a dense vector and taking one
# full product beats gathering the active rows (the gather copies each row before the product; measured on the
# 2048-input gesture layer with ~2,000 active pixels per bin: 1.9 ms gathered). Same sums, up to float rounding.
DENSE_GATHER_RATIO = 4


def scatter(cols: np.ndarray, vals: np.ndarray, n: int, dtype) -> np.ndarray:
    """Payloads of the active sources as a dense length-n vector (zeros elsewhere; cols are distinct)."""
    v = np.zeros(n, dtype)
    v[cols] = vals
    return v


# A pruned matrix (density <= SPARSE_DENSITY) keeps a CSC copy; per step, its active columns are applied from
# the CSC entries (work ∝ nnz touched) when that is cheaper than the dense columns: NumPy costs about
# SPARSE_COST_RATIO times more per CSC entry than per dense element (measured: ~25 ns vs ~1.5 ns on one core),
# plus a fixed ~20 µs for its extra NumPy calls (SPARSE_FIXED dense-element equivalents).
# Both paths give the same sums up to float rounding.
SPARSE_DENSITY = 0.15
SPARSE_COST_RATIO = 16
SPARSE_FIXED = 12_000


class SparseColumns:
    """CSC of one [rows, sources] matrix: the non-zeros of column j are data/rows[indptr[j]:indptr[j+1]]."""

    def __init__(self, wt: np.ndarray) -> None:
        """wt: [sources, rows] (column-major weights); zeros are dropped."""
        self.n_rows = wt.shape[1]
        nz = wt != 0
        self.indptr = np.concatenate([[0], np.cumsum(nz.sum(1))]).astype(np.int64)
        src, self.rows = np.nonzero(nz)
        self.data = wt[src, self.rows].astype(np.float64)
        self.col_nnz = np.diff(self.indptr)

    def worth_it(self, cols: np.ndarray) -> bool:
        """Is the CSC path cheaper than the dense columns for these active sources?"""
        touched = int((self.indptr[cols + 1] - self.indptr[cols]).sum())
        return touched * SPARSE_COST_RATIO + SPARSE_FIXED < len(cols) * self.n_rows

    def matvec(self, cols: np.ndarray, vals: np.ndarray) -> np.ndarray:
        """Σ_i vals[i] · column cols[i], in float64 (exact for integer weights and payloads)."""
        starts = self.indptr[cols]
        lens = self.indptr[cols + 1] - starts
        total = int(lens.sum())
        if total == 0:
            return np.zeros(self.n_rows)
        # positions of every touched non-zero: each column's run starts[i] .. starts[i] + lens[i]
        pos = np.repeat(starts - (np.cumsum(lens) - lens), lens) + np.arange(total)
        w = self.data[pos] * np.repeat(np.asarray(vals, np.float64), lens)
        return np.bincount(self.rows[pos], weights=w, minlength=self.n_rows)

    def matmat(self, x: np.ndarray) -> np.ndarray:
        """Row s of x [streams, sources] times the columns: [streams, rows] in float64, each stream's sum in the
        order of `matvec` (ascending sources), so equal to matvec of that stream's active sources."""
        s, cols = np.nonzero(x)
        starts = self.indptr[cols]
        lens = self.indptr[cols + 1] - starts
        total = int(lens.sum())
        out_len = x.shape[0] * self.n_rows
        if total == 0:
            return np.zeros((x.shape[0], self.n_rows))
        pos = np.repeat(starts - (np.cumsum(lens) - lens), lens) + np.arange(total)
        w = self.data[pos] * np.repeat(x[s, cols].astype(np.float64), lens)
        at = np.repeat(s * self.n_rows, lens) + self.rows[pos]
        return np.bincount(at, weights=w, minlength=out_len).reshape(x.shape[0], self.n_rows)

    def touched(self, per_source: np.ndarray) -> int:
        """Non-zeros walked when source j sends per_source[j] packets (one per stream)."""
        return int(per_source @ self.col_nnz)


# Several streams at once (`Kernel.accumulate_many`): one BLAS product over all streams is the cheapest per
# multiply, but it multiplies every silent source too; a stream's own active rows cost about ROWS_COST_RATIO times
# more per multiply (the gather copies each row first) plus ~10 µs per stream (ROWS_FIXED dense-element
# equivalents). Measured on the gesture model (2048 inputs, 6 % active per stream, 64 streams): one product
# 13-27 ms, per-stream rows 7.6 ms.
ROWS_COST_RATIO = 8
ROWS_FIXED = 50_000


def stream_rows(x: np.ndarray):
    """(stream, active sources, their payloads) of each stream of x [streams, sources] with input, from one
    nonzero() call (sources ascending, as `accumulate` sees them)."""
    s, cols = np.nonzero(x)
    ends = np.cumsum(np.bincount(s, minlength=x.shape[0]))
    start = 0
    for i, end in enumerate(ends.tolist()):
        if end > start:
            c = cols[start:end]
            yield i, c, x[i, c]
        start = end


def batch_plan(x: np.ndarray, wt: np.ndarray, sparse: SparseColumns | None) -> tuple[str, np.ndarray | None]:
    """How to apply the weights wt [sources, rows] to several streams' payloads x [streams, sources], cheapest
    first: ("none", None) no source active; ("sparse", None) per-stream CSC walks; ("rows", None) each stream's
    active rows; ("union", cols) one product over the sources active in any stream; ("dense", None) one full
    product."""
    per_source = np.count_nonzero(x, axis=0)  # streams sending from each source
    active = np.flatnonzero(per_source)
    if not len(active):
        return "none", None
    k, (n_src, n_rows) = x.shape[0], wt.shape
    plans = {"dense": k * n_src * n_rows,
             "union": k * len(active) * n_rows * (1 + 1 / k) if len(active) * DENSE_GATHER_RATIO <= n_src else None,
             "rows": int(per_source.sum()) * n_rows * ROWS_COST_RATIO + k * ROWS_FIXED,
             "sparse": sparse.touched(per_source) * SPARSE_COST_RATIO + SPARSE_FIXED if sparse is not None else None}
    how = min((c, h) for h, c in plans.items() if c is not None)[1]
    return how, active if how == "union" else None


def maybe_sparse(wt: np.ndarray) -> SparseColumns | None:
    return SparseColumns(wt) if wt.size and np.count_nonzero(wt) / wt.size <= SPARSE_DENSITY else None


def column_sums(wt: np.ndarray, cols: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Σ_i p[i] · wt[cols[i]] in wt's dtype: every row, the scattered payloads or the gathered rows, whichever is
    cheapest (for integer payloads and weights the sums are exact, so in any order)."""
    p = p.astype(wt.dtype, copy=False)
    if len(cols) == wt.shape[0]:
        return p @ wt
    if len(cols) * DENSE_GATHER_RATIO > wt.shape[0]:
        return scatter(cols, p, wt.shape[0], wt.dtype) @ wt
    return p @ wt.take(cols, 0)  # the gathered rows (take: less overhead than wt[cols], the same copy)


def rescale(acc: np.ndarray, scaled: np.ndarray) -> np.ndarray:
    """acc[r] · s_w[r] · s_p as float64 products rounded once to float32 (int8's integer sums promote exactly)."""
    return (acc * scaled).astype(F32)


class FusedEvents:
    """The two consumers of one layer's events as one matrix: [W_hh | W_next]^T (next: the next layer's input
    weights, or the decoder's), with int8's per-row factors if any, and the biases that the step adds to them (b_hh,
    and b_ih of a next layer; the decoder's comes after its trace). One gather and one product serve both; the
    recurrent half waits for the layer's next step."""

    def __init__(self, hh: np.ndarray, nxt: np.ndarray, bias_hh: np.ndarray, bias_nxt: np.ndarray | None,
                 scaled: np.ndarray | None) -> None:
        self.w = np.ascontiguousarray(np.concatenate([hh, nxt], 1), np.result_type(hh, nxt))
        self.scaled = scaled
        self.split = hh.shape[1]  # output columns [:split] are the recurrent half
        self.bias = bias_hh if bias_nxt is None else np.concatenate([bias_hh, bias_nxt])
        # without events: each half is its zero accumulation plus its bias (0 + b, as the separate path adds it)
        idle = np.zeros(self.w.shape[1], F32)
        idle[:len(self.bias)] += self.bias
        self.idle = idle[:self.split], idle[self.split:]
        self.last: tuple | None = None  # (cols, vals, recurrent half, next half) of the last events applied

    def gates(self, cols: np.ndarray, vals: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both accumulations plus their biases of the events (cols, vals) with payloads p, kept for the recurrent
        step."""
        acc = column_sums(self.w, cols, p)
        out = acc.astype(F32, copy=False) if self.scaled is None else rescale(acc, self.scaled)
        rec, nxt = out[:self.split], out[self.split:]
        if len(self.bias) == len(out):
            out += self.bias
        else:  # the decoder's half: its bias comes after the readout
            rec += self.bias
        # the arrays are held, so `is` in `Kernel._fused` cannot match a new array at a recycled address
        self.last = (cols, vals, rec, nxt)
        return rec, nxt


class Kernel(ABC):
    """Arithmetic of the PEs of one compiled model. Groups: the EGRU layers in order, then the decoder."""

    numerics: str

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.hidden = [layer.hidden_size for layer in spec.layers]
        self.thresholds = [layer.threshold.astype(F32) for layer in spec.layers]
        self.zoneout = [F32(layer.zoneout) for layer in spec.layers]
        self.bias_ih = [layer.bias_ih.astype(F32) for layer in spec.layers]
        self.bias_hh = [layer.bias_hh.astype(F32) for layer in spec.layers]
        self.fused: list[FusedEvents | None] = [None] * len(self.hidden)  # set by a kernel that fuses

    def fuse(self, layer: int, scaled_hh: np.ndarray | None = None,
             scaled_nxt: np.ndarray | None = None) -> FusedEvents | None:
        """The fused product of a layer's events (`FusedEvents`); None where a pruned matrix takes its CSC path.
        Needs the kernel's `w` and `csc`."""
        if self.csc[layer]["hh"] is not None or self.csc[layer + 1]["ih"] is not None:
            return None
        scaled = None if scaled_hh is None else np.concatenate([scaled_hh, scaled_nxt])
        return FusedEvents(self.w[layer]["hh"], self.w[layer + 1]["ih"], self.bias_hh[layer],
                           self.bias_ih[layer + 1] if layer + 1 < len(self.hidden) else None, scaled)

    @abstractmethod
    def accumulate(self, group: int, kind: str, cols: np.ndarray, vals: np.ndarray) -> np.ndarray:
        """Sum of vals[i] * W[:, cols[i]] for the group's 'ih' (input/decoder) or 'hh' (recurrent) weights."""

    @abstractmethod
    def accumulate_many(self, group: int, kind: str, x: np.ndarray) -> np.ndarray:
        """`accumulate` of several streams at once: x [streams, sources] holds each stream's payloads (0 where a
        source is silent) -> [streams, rows] float32."""

    def event_payloads(self, vals: np.ndarray) -> np.ndarray:
        """The payloads a fused product multiplies for unit events of values `vals` (fp32: the values)."""
        return vals

    def _fused(self, layer: int, cols: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both gate halves of layer `layer`'s events: kept from when these very arrays were applied, else now."""
        fused = self.fused[layer]
        last = fused.last
        if last is not None and last[0] is cols and last[1] is vals:
            return last[2], last[3]
        if not len(cols):
            return fused.idle[0].copy(), fused.idle[1].copy()
        return fused.gates(cols, vals, self.event_payloads(vals))

    def gates_in(self, layer: int, cols: np.ndarray, vals: np.ndarray) -> np.ndarray:
        """W_ih·x + b_ih of a layer's input events (float32: the accumulation, then the bias added)."""
        if layer and self.fused[layer - 1] is not None:
            return self._fused(layer - 1, cols, vals)[1]
        acc = self.accumulate(layer, "ih", cols, vals)  # a new array: the bias goes in place
        acc += self.bias_ih[layer]
        return acc

    def gates_rec(self, layer: int, cols: np.ndarray, vals: np.ndarray) -> np.ndarray:
        """W_hh·y + b_hh of a layer's own events of the previous step."""
        if self.fused[layer] is not None:
            return self._fused(layer, cols, vals)[0]
        acc = self.accumulate(layer, "hh", cols, vals)
        acc += self.bias_hh[layer]
        return acc

    def decode(self, cols: np.ndarray, vals: np.ndarray) -> np.ndarray:
        """W_dec·y of the last layer's events (the bias is added after the readout's trace)."""
        if self.fused[-1] is not None:
            return self._fused(len(self.hidden) - 1, cols, vals)[1]
        return self.accumulate(len(self.hidden), "ih", cols, vals)

    def update_units(self, layer: int, gx: np.ndarray, gh: np.ndarray, c_prev: np.ndarray):
        """Gates, state, threshold and subtractive reset of every unit: -> (c, c_hat, fired mask)."""
        h = self.hidden[layer]  # gx, gh: [3H], or [streams, 3H] with c_prev [streams, H]
        # the same float32 operations as the equations, in place (commuted operands where it saves a copy)
        rz = gx[..., :2 * h] + gh[..., :2 * h]  # r and z in one sigmoid: σ(x) = 1 / (1 + exp(-x))
        np.negative(rz, out=rz)
        if rz.size and rz.take(rz.argmax()) < 88.0:  # the largest: cheaper than a reduction (NaN: first, as it)
            np.exp(rz, out=rz)
        else:  # exp overflows to inf for -x > 88.7, which gives the right limit σ = 0; silence the warning (a stray
            with np.errstate(over="ignore"):  # line on stderr would garble the TUI that runs this node in-process)
                np.exp(rz, out=rz)
        rz += ONE
        np.divide(ONE, rz, out=rz)
        r, z = rz[..., :h], rz[..., h:]
        n = r * gh[..., 2 * h:]
        n += gx[..., 2 * h:]
        np.tanh(n, out=n)
        c_hat = np.subtract(ONE, z)
        c_hat *= n
        c_hat += z * c_prev
        p = self.zoneout[layer]
        if p > 0:  # eval-mode zoneout, as torch_egru: p·c_prev + (1 − p)·ĉ
            c_hat = p * c_prev + (ONE - p) * c_hat
        thr = self.thresholds[layer]
        o = c_hat > thr  # H(0) = 0
        c = c_hat - o * thr
        return c.astype(F32, copy=False), c_hat, o

    @staticmethod
    def emit(c_hat: np.ndarray, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Events of the units that fired: (source ids, graded payloads y = ĉ)."""
        idx = o.nonzero()[0]
        return idx, c_hat.take(idx)  # take: less overhead per call than fancy indexing
