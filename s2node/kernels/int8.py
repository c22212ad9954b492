"""int8 numerics, as on the 16 x 4 8-bit MAC array: int8 weights (per-row scale), int8 payloads, integer sums.

Scaling (see compiler/quantize.py): pre-activation[r] = s_w[r] · s_p · Σ_j q[r, j] · p_j, with p_j the int8
payload of source j (unit events: s_p = 1/127; language input: max|E|/127; gesture input: max|x_t|/127 per
timestep). The integer sum is exact: products are summed in float32 when every possible sum stays below 2^24, else
in float64 (below 2^53). The rescale runs in float32 as on the M4F's single-precision FPU: the sum converted to
float32, times the row's float32 factor s_w · s_p (`rescale`); so does the unit update.

The fast path (`FusedEvents`): a layer's events feed two matrices, the next layer's (or the decoder's) input weights
now and the layer's own recurrent weights at the next step. Both take the same int8 payloads with the same static
scale, so one product over the two matrices side by side ([sources, 3H + rows]) serves both: one quantise, one
gather, one product and one rescale instead of two of each. Exact integer sums do not depend on how the products
are grouped, and the rescale is per row, so every result is bit-identical to the two separate accumulations (fp32
cannot do this: its float sums would round differently). The recurrent half waits in the kernel until its step.

The gesture input's product and the fused products run compiled (`int8_jit`: the int8 levels, int32 sums) with the
same bits as the NumPy code below, which serves everything else and what the compiled products hand back.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from s2node.compiler.quantize import (
    Q_MAX,
    Y_PAYLOAD_SCALE,
    dynamic_payload_scale,
    input_payload_scale,
    quantize_rows,
)
from s2node.kernels.base import (
    DENSE_GATHER_RATIO,
    F32,
    ActiveSources,
    ByteRows,
    Kernel,
    batch_product,
    column_sums,
    maybe_sparse,
    rescale,
)
from s2node.spec import ModelSpec

_Q = np.float64(Q_MAX)
INPUT_SCALES_KEPT = 256  # per-timestep input scales whose per-row factors are kept (`_input_scaled`)


def max_abs_scale(vals: np.ndarray) -> float:
    """dynamic_payload_scale of non-empty values, with the reduction called directly (no wrapper per call)."""
    m = float(np.maximum.reduce(np.abs(vals)))
    return m / Q_MAX if m > 0 else 1.0


def unit_payload_bounds(sp: float) -> np.ndarray:
    """bounds[k - 1] = the least positive float32 v whose payload min(rint(v / s_p), 127) (quotient in float64) is
    at least k, k = 1..127. The payload grows with v (a correctly rounded division by s_p > 0, then rint), so for
    v > 0 it equals the number of bounds <= v: one searchsorted instead of a divide, a rint and a clip, with the
    same integers. Found by bisection over the float32 bit patterns (positive floats order as their patterns)."""
    def payload(bits: np.ndarray) -> np.ndarray:
        return np.minimum(np.rint(bits.astype(np.int32).view(np.float32).astype(np.float64) / np.float64(sp)), _Q)

    k = np.arange(1, Q_MAX + 1)
    lo = np.zeros(Q_MAX, np.int64)  # payload(0.0) = 0 < k
    hi = np.full(Q_MAX, np.float32(np.inf).view(np.int32), np.int64)  # payload(inf) = 127 >= k
    while np.any(hi - lo > 1):
        mid = (lo + hi) // 2
        up = payload(mid) >= k
        hi, lo = np.where(up, mid, hi), np.where(up, lo, mid)
    return hi.astype(np.int32).view(np.float32)


class Int8Kernel(Kernel):
    numerics = "int8"

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.w, self.scale = [], []
        mats = [{"ih": layer.weight_ih, "hh": layer.weight_hh} for layer in spec.layers]
        mats.append({"ih": spec.decoder_weight})
        for m in mats:
            w, s = {}, {}
            for k, mat in m.items():
                q, sc = quantize_rows(mat)
                # Integer sums must be exact: float32 holds every integer below 2^24, so use it when the
                # largest possible |Σ q·p| (127 · max row Σ|q|) stays below that, else float64 (below 2^53).
                bound = Q_MAX * (np.abs(q.astype(np.int64)).sum(1).max() if q.size else 0)
                w[k] = np.ascontiguousarray(q.T, np.float32 if bound < 2**24 else np.float64)
                s[k] = sc  # float32, as quantize_rows gives it
            self.w.append(w)
            self.scale.append(s)
        self.input_scale = input_payload_scale(spec.embedding)  # None: per-timestep (gestures)
        self.zeros = [np.zeros(w["ih"].shape[1], F32) for w in self.w]
        self.csc = [{k: maybe_sparse(v) for k, v in w.items()} for w in self.w]  # pruned matrices
        # payloads in the weights' dtype (float32 unless a matrix needs float64 sums)
        self.payload_dtype = np.result_type(*(v.dtype for w in self.w for v in w.values()))
        self._recent: list[tuple[np.ndarray, np.ndarray]] = []  # (unit payloads, their int8 values)
        # s_w · s_p per row for the fixed payload scales: computed by the host once (float64, stored as float32)
        self.scaled = [{k: (sc.astype(np.float64) * self.static_scale(g, k)).astype(F32)
                        for k, sc in s.items() if self.static_scale(g, k) is not None}
                       for g, s in enumerate(self.scale)]
        self.fused = [self.fuse(li, self.scaled[li]["hh"], self.scaled[li + 1]["ih"])
                      for li in range(len(self.hidden))]
        self._scaled_by_sp: dict[float, np.ndarray] = {}
        self._y_bounds = unit_payload_bounds(Y_PAYLOAD_SCALE)  # unit payloads by lookup (`_quantize`)
        self._compile_products()

    def _compile_products(self) -> None:
        """The int8 levels of the gesture input's and each fused matrix for the compiled products (`int8_jit`),
        where their int32 sums are exact; None leaves a product to NumPy."""
        from s2node.kernels import int8_jit

        self._jit = int8_jit

        def levels(wt: np.ndarray) -> np.ndarray | None:
            return np.ascontiguousarray(wt, np.int8) if int8_jit.fits(wt) else None

        dynamic = self.input_scale is None and self.csc[0]["ih"] is None
        self._w8_in = levels(self.w[0]["ih"]) if dynamic else None
        self._w8_fused = [None if f is None else levels(f.w) for f in self.fused]
        # compiled (or loaded from the cache) now, while the node loads, rather than at a stream's first step
        no_cols, no_vals = np.zeros(0, np.int64), np.zeros(0, F32)
        if self._w8_in is not None:
            int8_jit.input_gates(no_vals, no_cols, self._w8_in, self.scale[0]["ih"], self.bias_ih[0])
        for f, w8 in zip(self.fused, self._w8_fused, strict=True):
            if w8 is not None:
                int8_jit.event_gates(no_vals, no_cols, self._y_bounds, w8, f.scaled, f.bias)

    def event_payloads(self, vals: np.ndarray) -> np.ndarray:
        """Unit payloads by their bounds, as `_quantize` (the fused path's quantisation)."""
        return self._y_bounds.searchsorted(vals, "right").astype(self.payload_dtype)

    def payload_scale(self, group: int, kind: str, vals: np.ndarray) -> float:
        if group == 0 and kind == "ih":
            return self.input_scale if self.input_scale is not None else dynamic_payload_scale(vals)
        return Y_PAYLOAD_SCALE

    def _quantize(self, vals: np.ndarray, sp: float, is_input: bool) -> np.ndarray:
        """quantize_payload(vals, sp) with fewer temporaries: the same float64 quotients, rounded, as integers in
        the weights' dtype (exact: at most 127). A unit event's payload y = ĉ > θ > 0 (thresholds are positive):
        its level comes from the precomputed bounds (`unit_payload_bounds`), the same integers."""
        if not is_input and sp == Y_PAYLOAD_SCALE:
            return self._y_bounds.searchsorted(vals, "right").astype(self.payload_dtype)  # a method: no wrapper
        q = np.divide(vals, np.float64(sp), dtype=np.float64)  # NumPy scalar: no per-call conversion
        np.rint(q, out=q)
        if is_input:
            np.maximum(q, -_Q, out=q)
        np.minimum(q, _Q, out=q)
        return q.astype(self.payload_dtype, copy=False)

    def _quantize_by_own_max(self, vals: np.ndarray, sp: float) -> np.ndarray:
        """`_quantize` of input whose scale is max|vals| / 127 (gestures): |x| / s_p rounds to at most 127, so no
        clip can act and none is done."""
        q = np.divide(vals, np.float64(sp))  # a float64 divisor: the quotients in float64
        np.rint(q, out=q)  # in place: a rounding that stores float32 would take NumPy's slower casting loop
        return q.astype(self.payload_dtype, copy=False)  # integers of at most 127: stored exactly

    def _payloads(self, vals: np.ndarray, sp: float, is_input: bool) -> np.ndarray:
        """A layer's events feed two accumulations (the next layer now, its own recurrence next step) with one
        array of payloads: quantised once, as the PE sends one int8 packet to both."""
        if is_input:
            return self._quantize(vals, sp, True)
        for seen, q in self._recent:
            if seen is vals:
                return q
        q = self._quantize(vals, sp, False)
        self._recent = [*self._recent[-2 * len(self.hidden) - 1:], (vals, q)]  # bounded: two per layer at most
        return q

    def accumulate(self, group: int, kind: str, cols: np.ndarray, vals: np.ndarray) -> np.ndarray:
        wt = self.w[group][kind]
        if len(cols) == 0:
            return self.zeros[group].copy()
        is_input = group == 0 and kind == "ih"
        if is_input and self.input_scale is None:  # gesture input: a scale per timestep
            sp = max_abs_scale(vals)
            scaled, p = self._input_scaled(sp), self._quantize_by_own_max(vals, sp)
        else:  # s_w · s_p per row, fixed for unit events and language input: computed once (the same product)
            sp, scaled = (self.input_scale if is_input else Y_PAYLOAD_SCALE), self.scaled[group][kind]
            p = self._payloads(vals, sp, is_input)
        sparse = self.csc[group][kind]
        if sparse is not None and sparse.worth_it(cols):
            return rescale(sparse.matvec(cols, p), scaled)
        return rescale(column_sums(wt, cols, p), scaled)

    def _fused(self, layer: int, cols: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`Kernel._fused` with `FusedEvents.gates` written out for gathered rows (the common case of a step): the
        same payloads, product, rescale and bias, with fewer calls."""
        fused = self.fused[layer]
        last = fused.last
        if last is not None and last[0] is cols and last[1] is vals:
            return last[2], last[3]
        w8 = self._w8_fused[layer]
        if w8 is not None and len(cols):  # one compiled call (`int8_jit.event_gates`): the same bits
            out = self._jit.event_gates(vals, cols, self._y_bounds, w8, fused.scaled, fused.bias)
            rec, nxt = out[:fused.split], out[fused.split:]
            fused.last = (cols, vals, rec, nxt)
            return rec, nxt
        w = fused.w
        if not len(cols) or len(cols) * DENSE_GATHER_RATIO > w.shape[0]:
            return super()._fused(layer, cols, vals)
        p = self._y_bounds.searchsorted(vals, "right").astype(w.dtype)  # `event_payloads`, in w's dtype at once
        # `column_sums` then `rescale`; ndarray.dot has less overhead per call than @, and exact integer sums do
        # not depend on how BLAS groups them
        out = rescale(p.dot(w.take(cols, 0)), fused.scaled)
        split = fused.split
        rec, nxt = out[:split], out[split:]
        if len(fused.bias) == len(out):
            out += fused.bias
        else:
            rec += fused.bias
        fused.last = (cols, vals, rec, nxt)
        return rec, nxt

    def gates_in(self, layer: int, cols: np.ndarray, vals: np.ndarray) -> np.ndarray:
        """Gesture input (layer 0, a payload scale per timestep) over gathered rows with `accumulate`'s arithmetic
        written out (fewer calls); everything else as `Kernel.gates_in`."""
        if layer or self.input_scale is not None or not len(cols) or self.csc[0]["ih"] is not None:
            return super().gates_in(layer, cols, vals)
        if self._w8_in is not None:  # one compiled call (`int8_jit.input_gates`): the same bits
            out = self._jit.input_gates(vals, cols, self._w8_in, self.scale[0]["ih"], self.bias_ih[0])
            if len(out):
                return out
        wt = self.w[0]["ih"]
        if len(cols) * DENSE_GATHER_RATIO > wt.shape[0]:
            return super().gates_in(layer, cols, vals)
        sp = max_abs_scale(vals)
        q = np.divide(vals, np.float64(sp))  # `_quantize_by_own_max`
        np.rint(q, out=q)
        acc = rescale(q.astype(wt.dtype).dot(wt.take(cols, 0)), self._input_scaled(sp))
        acc += self.bias_ih[0]
        return acc

    def _input_scaled(self, sp: float) -> np.ndarray:
        """s_w · s_p of gesture input for this timestep's payload scale, as a PE computes it on its FPU: float32
        s_w times the float32 s_p that the host sends with the timestep. s_p = max|x_t| / 127 takes few values (binned
        counts), so the products are kept per scale: the same float32 products, computed once each."""
        scaled = self._scaled_by_sp.get(sp)
        if scaled is None:
            if len(self._scaled_by_sp) >= INPUT_SCALES_KEPT:
                self._scaled_by_sp.clear()
            scaled = self._scaled_by_sp[sp] = self.scale[0]["ih"] * F32(sp)
        return scaled

    def static_scale(self, group: int, kind: str) -> float | None:
        """The payload scale of a source kind when it does not change per timestep (None for gesture input)."""
        if group == 0 and kind == "ih":
            return self.input_scale
        return Y_PAYLOAD_SCALE

    @staticmethod
    def input_scales(act: ActiveSources) -> np.ndarray:
        """Gesture input's payload scale of each stream (max|x| / 127, as `max_abs_scale`): [streams] float64."""
        m = np.zeros(act.shape[0])
        n = act.per_stream()
        has = n > 0
        if has.any():
            m[has] = np.maximum.reduceat(np.abs(act.vals), (np.cumsum(n) - n)[has])
        return np.where(m > 0, m / _Q, 1.0)

    def accumulate_many(self, group: int, kind: str, x: np.ndarray, act: ActiveSources | None = None) -> np.ndarray:
        """act: x's active sources, when the caller has them."""
        act = ActiveSources.of(x) if act is None else act
        if not len(act.flat):
            return np.zeros((act.shape[0], self.w[group][kind].shape[1]), F32)
        # quantize_payload of the non-zeros only (the same float64 quotients); exact integer sums in any order
        sp = self.static_scale(group, kind)
        if sp is None:  # gesture input: a scale per stream and timestep
            sps = self.input_scales(act)
            p = np.divide(act.vals, sps[act.streams], dtype=np.float64)
            scaled = np.multiply.outer(sps.astype(F32), self.scale[group][kind])  # s_w · s_p, as `_input_scaled`
        else:
            p = np.divide(act.vals, np.float64(sp), dtype=np.float64)
            scaled = self.scaled[group][kind]
        acc = batch_product(self.w[group][kind], self.csc[group][kind], act._replace(vals=self._levels_of(p)),
                            byte_rows=self.byte_rows[group, kind])
        return self._rescale_many(acc, scaled)

    def accumulate_events_many(self, layer: int, y: np.ndarray,
                               act: ActiveSources) -> tuple[np.ndarray, np.ndarray] | None:
        """Several streams' events of a layer (payloads y [streams, H], active sources act) into both their
        accumulations at once through the layer's `FusedEvents`: (recurrent, for the next step; the next layer's
        input or the decoder's), each bit-identical to `accumulate_many`'s; None where the layer has none."""
        fused = self.fused[layer]
        if fused is None:
            return None
        if not len(act.flat):
            out = np.zeros((act.shape[0], fused.w.shape[1]), F32)
        else:
            p = self._levels_of(np.divide(act.vals, np.float64(Y_PAYLOAD_SCALE), dtype=np.float64))
            acc = batch_product(fused.w, None, act._replace(vals=p), byte_rows=self.byte_rows[layer, "events"])
            out = self._rescale_many(acc, fused.scaled)
        return out[:, :fused.split], out[:, fused.split:]

    @cached_property
    def byte_rows(self) -> dict[tuple[int, str], ByteRows | None]:
        """Each matrix (and each layer's fused pair, kind "events") as `ByteRows` for the batched products: made on a
        batch's first use, not by a lone node."""
        rows = {(g, k): ByteRows.of(wt) for g, w in enumerate(self.w) for k, wt in w.items()}
        rows.update({(li, "events"): None if f is None else ByteRows.of(f.w) for li, f in enumerate(self.fused)})
        return rows

    @staticmethod
    def _levels_of(q: np.ndarray) -> np.ndarray:
        """Payload quotients (float64) -> their int8 levels, rounded and clipped as quantize_payload (in place)."""
        np.rint(q, out=q)
        np.maximum(q, -_Q, out=q)
        return np.minimum(q, _Q, out=q)

    @staticmethod
    def _rescale_many(acc: np.ndarray, scaled: np.ndarray) -> np.ndarray:
        """`rescale` of several streams: acc converted to float32, times the float32 factors s_w · s_p."""
        return np.multiply(acc, scaled, dtype=F32)
