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
from typing import NamedTuple

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

    def matmat(self, act: ActiveSources) -> np.ndarray:
        """Several streams' active sources (`ActiveSources`) times the columns: [streams, rows] in float64, each
        stream's sum in the order of `matvec` (ascending sources), so equal to matvec of that stream's sources."""
        starts = self.indptr[act.cols]
        lens = self.indptr[act.cols + 1] - starts
        total = int(lens.sum())
        k = act.shape[0]
        if total == 0:
            return np.zeros((k, self.n_rows))
        pos = np.repeat(starts - (np.cumsum(lens) - lens), lens) + np.arange(total)
        w = self.data[pos] * np.repeat(act.vals.astype(np.float64, copy=False), lens)
        at = np.repeat(act.streams * self.n_rows, lens) + self.rows[pos]
        return np.bincount(at, weights=w, minlength=k * self.n_rows).reshape(k, self.n_rows)

    def touched(self, per_source: np.ndarray) -> int:
        """Non-zeros walked when source j sends per_source[j] packets (one per stream)."""
        return int(per_source @ self.col_nnz)


# Several streams at once (`Kernel.accumulate_many`), costs in multiply-adds of one BLAS product over many streams
# (~0.017 ns each on one core). Such a product reads every weight once, so with few streams the reads set its time
# (as if DENSE_MIN_STREAMS more streams multiplied); it also multiplies every silent source. Gathering each stream's
# own active rows (`rows_product`) costs about ROWS_COST_RATIO times more per multiply-add, plus ROWS_PER_SOURCE
# multiply-adds' worth per (stream, active source) and ROWS_FIXED per call; a walk of a pruned matrix's CSC entries
# (`SparseColumns.matmat`) about BATCH_SPARSE_COST_RATIO per entry. Measured on the gesture model (2048 inputs, 6 %
# active per stream, 64 streams): one full product 0.9-1.7 ms, the active rows 0.25 ms.
DENSE_MIN_STREAMS = 6
ROWS_COST_RATIO = 2.5
ROWS_PER_SOURCE = 40
ROWS_FIXED = 360_000
BATCH_SPARSE_COST_RATIO = 350


def batch_plan(act: ActiveSources, wt: np.ndarray, sparse: SparseColumns | None) -> tuple[str, np.ndarray | None]:
    """How to apply the weights wt [sources, rows] to several streams' active sources, cheapest first: ("none",
    None) no source active; ("sparse", None) per-stream CSC walks; ("rows", None) each stream's active rows
    gathered and summed; ("union", cols) one product over the sources active in any stream; ("dense", None) one
    full product."""
    nnz = len(act.cols)
    if not nnz:
        return "none", None
    k, (n_src, n_rows) = act.shape[0], wt.shape
    reads = k + DENSE_MIN_STREAMS
    plans = {"dense": reads * n_src * n_rows, "rows": nnz * (n_rows + ROWS_PER_SOURCE) * ROWS_COST_RATIO + ROWS_FIXED}
    if sparse is not None:
        per_source = np.bincount(act.cols, minlength=n_src)  # streams sending from each source
        plans["sparse"] = sparse.touched(per_source) * BATCH_SPARSE_COST_RATIO + ROWS_FIXED
    union = np.zeros(n_src, bool)  # the sources active in any stream
    union[act.cols] = True
    n_union = np.count_nonzero(union)
    if n_union * DENSE_GATHER_RATIO <= n_src:
        plans["union"] = (reads + 1) * n_union * n_rows
    how = min((c, h) for h, c in plans.items())[1]
    return how, np.flatnonzero(union) if how == "union" else None


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
    """acc[r] · (s_w[r] · s_p) in float32, as the M4F's single-precision FPU does it: the integer sum converted to
    float32 (exact below 2^24), times the row's float32 factor. scaled: float32. A float32 acc (a fresh product) is
    scaled in place and returned."""
    if acc.dtype == F32:
        acc *= scaled
        return acc
    return np.multiply(acc, scaled, dtype=F32)  # float64 sums (CSC walks, large bounds): converted first


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


# NumPy searches a boolean mask sparser than 1 in 10 with a branch per non-zero, mispredicted at each: for a large
# sparse mask (the gesture input: 64 streams x 2048 sources, 6 % active) searching first the 8-byte words with any
# non-zero, then their bytes, makes two searches dense enough for its branch-free loop (measured: 70 vs 140 µs).
WORD_SEARCH_MIN = 1 << 15


class ActiveSources(NamedTuple):
    """The non-zero payloads of several streams, x [streams, sources], stream by stream and sources ascending (the
    order `accumulate` sees them): x.ravel()[flat] = vals, at (streams, cols)."""

    shape: tuple[int, int]
    flat: np.ndarray
    streams: np.ndarray
    cols: np.ndarray
    vals: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> ActiveSources:
        mask = (x if x.dtype == bool else x != 0).reshape(-1)
        if mask.size < WORD_SEARCH_MIN or mask.size % 8 or 10 * np.count_nonzero(mask) > mask.size:
            flat = np.flatnonzero(mask)
        else:  # the 8-byte words with any non-zero, then their bytes (gathered as words: one copy each)
            w = mask.view(np.uint64)
            words = np.flatnonzero(w != 0)
            j = np.flatnonzero(w[words].view(bool))
            flat = words[j >> 3] * 8 + (j & 7)
        streams = flat // x.shape[1]
        return cls(x.shape, flat, streams, flat - streams * x.shape[1], x.reshape(-1)[flat])

    def per_stream(self) -> np.ndarray:
        """Active sources of each stream: [streams] int64."""
        return np.diff(np.searchsorted(self.flat, np.arange(self.shape[0] + 1) * self.shape[1]))

    def dense(self, vals: np.ndarray) -> np.ndarray:
        """vals (one per active source, e.g. quantised payloads) scattered into a dense [streams, sources] array."""
        out = np.zeros(self.shape[0] * self.shape[1], vals.dtype)
        out[self.flat] = vals
        return out.reshape(self.shape)


def rows_product(act: ActiveSources, wt: np.ndarray) -> np.ndarray:
    """Σ over each stream's active sources of act.vals · wt[source]: [streams, rows] in wt's dtype, each stream's sum
    over ascending sources. One call of torch's embedding_bag (a gather-and-weighted-sum kernel: NumPy has no sparse
    product), about twice as fast here as torch's sparse COO or CSR products, with the same sums."""
    import torch  # imported where a batch is made (NodeBatch), not by every Node

    starts = np.searchsorted(act.flat, np.arange(act.shape[0]) * act.shape[1])  # each stream's first entry
    out = torch.nn.functional.embedding_bag(
        torch.from_numpy(act.cols), torch.from_numpy(wt), torch.from_numpy(starts), mode="sum",
        per_sample_weights=torch.from_numpy(act.vals.astype(wt.dtype, copy=False)))
    return out.numpy()


class ByteRows:
    """An integer-valued matrix wt [sources, rows] (int8 levels) in torch's 8-bit row-wise embedding format: each
    row's levels + 128 as bytes, then a float32 scale 1 and bias -128, so that a gathered row reads back as exactly
    its levels while moving a quarter of float32's bytes (the gathered rows are what `rows_product` waits for). Every
    step of the kernel's sums (a partial sum, plus p · (level + 128), minus 128 p) is an integer, exact in float32
    below 2^24: `of` checks the bound."""

    def __init__(self, wt: np.ndarray) -> None:
        import torch

        n_src, n_rows = wt.shape
        packed = np.empty((n_src, n_rows + 8), np.uint8)
        packed[:, :n_rows] = (wt + 128).astype(np.uint8)
        packed[:, n_rows:] = np.tile(np.array([1.0, -128.0], np.float32), (n_src, 1)).view(np.uint8)
        self.packed = torch.from_numpy(packed)

    @classmethod
    def of(cls, wt: np.ndarray) -> ByteRows | None:
        """None unless wt holds int8 levels whose sums with int8 payloads (and the kernel's ±128 p) stay exact, and
        this torch has the quantized kernel."""
        import torch

        if not wt.size or not np.array_equal(wt, np.clip(np.rint(wt), -127, 127)):
            return None
        bound = 127 * float(np.abs(wt).sum(0).max()) + 127 * 128
        if bound >= 2**24 or not hasattr(torch.ops.quantized, "embedding_bag_byte_rowwise_offsets"):
            return None
        return cls(wt)

    def product(self, act: ActiveSources) -> np.ndarray:
        """`rows_product(act, wt)` (act.vals: int8 payloads): the same integers, float32."""
        import torch

        starts = np.searchsorted(act.flat, np.arange(act.shape[0]) * act.shape[1])
        return torch.ops.quantized.embedding_bag_byte_rowwise_offsets(
            self.packed, torch.from_numpy(act.cols), torch.from_numpy(starts),
            per_sample_weights=torch.from_numpy(act.vals.astype(np.float32))).numpy()


def batch_product(wt: np.ndarray, sparse: SparseColumns | None, act: ActiveSources, x: np.ndarray | None = None,
                  byte_rows: ByteRows | None = None) -> np.ndarray:
    """wt [sources, rows] applied to several streams' active sources (act.vals: their payloads; x: the same as a
    dense [streams, sources] array, if at hand; byte_rows: wt as `ByteRows`, if it has them) by the cheapest plan
    (`batch_plan`): [streams, rows] in wt's dtype (float64 for CSC walks, float32 from byte rows)."""
    how, cols = batch_plan(act, wt, sparse)
    if how == "none":
        return np.zeros((act.shape[0], wt.shape[1]), wt.dtype)
    if how == "sparse":
        return sparse.matmat(act)
    if how == "rows":
        return rows_product(act, wt) if byte_rows is None else byte_rows.product(act)
    x = act.dense(act.vals.astype(wt.dtype)) if x is None else x.astype(wt.dtype, copy=False)
    return x @ wt if how == "dense" else x[:, cols] @ wt[cols]
