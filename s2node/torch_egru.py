"""The EGRU layer in PyTorch: the reference model every other backend is checked against.

Equations (DESIGN.md, PyTorch GRU gate order r, z, n along the 3H axis), per step, y = c = 0 at t = 0:

    r = σ(W_ir x + b_ir + W_hr y_prev + b_hr)
    z = σ(W_iz x + b_iz + W_hz y_prev + b_hz)
    n = tanh(W_in x + b_in + r ⊙ (W_hn y_prev + b_hn))
    ĉ = (1 − z) ⊙ n + z ⊙ c_prev
    ĉ ← zoneout(ĉ, c_prev)            # train: random keep of c_prev; eval: p·c_prev + (1−p)·ĉ
    o = H(ĉ − θ)                      # H(0) = 0; backward: triangular pseudo-derivative
    y = o ⊙ ĉ                         # graded event
    c = ĉ − o ⊙ θ                     # subtractive reset

Unlike the EvNN reference code (see shared/reference): the surrogate is the documented triangle on every
device, zoneout is correct in eval, and `step()` carries both y and c.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from s2node.errors import S2NodeError

# Thresholds are clamped to this floor in every forward, and saved clamped, so that file and layer agree.
THRESHOLD_MIN = 1e-3


class SpikeFunction(torch.autograd.Function):
    """Heaviside forward (H(0) = 0); triangular pseudo-derivative γ·max(0, 1 − s·|x|) backward."""

    @staticmethod
    def forward(ctx, x: Tensor, gamma: float, support: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.gamma, ctx.support = gamma, support
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        surrogate = ctx.gamma * torch.clamp(1.0 - ctx.support * x.abs(), min=0.0)
        return grad_out * surrogate, None, None


def spike(x: Tensor, gamma: float = 0.7, support: float = 1.0) -> Tensor:
    return SpikeFunction.apply(x, gamma, support)


class EGRUState(NamedTuple):
    y: Tensor  # [B, H] graded output of the last step (what the units sent)
    c: Tensor  # [B, H] internal state after the subtractive reset


class EGRUOutput(NamedTuple):
    y: Tensor  # [B, T, H] graded events
    state: EGRUState  # final (y, c), to carry into the next window or step
    o: Tensor  # [B, T, H] event indicator (1 where the unit fired); for activity statistics/regularisers
    c_hat: Tensor  # [B, T, H] pre-event state ĉ; for the "voltage" activity regulariser


class EGRU(nn.Module):
    """One EGRU layer, batch-first. Parameter names and layouts match torch.nn.GRU (without the _l0)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        dropconnect: float = 0.0,
        zoneout: float = 0.0,
        gamma: float = 0.7,
        support: float = 1.0,
        threshold_init: float = 0.1,
        threshold_spread: float = 0.0,
        learn_threshold: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropconnect < 1.0 or not 0.0 <= zoneout < 1.0:
            raise S2NodeError(f"dropconnect and zoneout must lie in [0, 1), not {dropconnect} and {zoneout}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.dropconnect, self.zoneout = dropconnect, zoneout
        self.gamma, self.support = gamma, support
        h3 = 3 * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(h3, input_size))
        self.weight_hh = nn.Parameter(torch.empty(h3, hidden_size))
        self.bias_ih = nn.Parameter(torch.zeros(h3))
        self.bias_hh = nn.Parameter(torch.zeros(h3))
        self.threshold = nn.Parameter(torch.empty(hidden_size), requires_grad=learn_threshold)
        self.threshold_init, self.threshold_spread = threshold_init, threshold_spread
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Uniform(±1/√H) as torch.nn.GRU; thresholds start at threshold_init (optionally log-normal spread
        # so that units differ), a documented choice: EvNN's Beta init is tuned to its own recipes.
        k = 1.0 / math.sqrt(self.hidden_size)
        for w in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh):
            nn.init.uniform_(w, -k, k)
        with torch.no_grad():
            thr = torch.full((self.hidden_size,), float(self.threshold_init))
            if self.threshold_spread > 0:
                thr = thr * torch.exp(self.threshold_spread * torch.randn(self.hidden_size))
            self.threshold.copy_(thr)

    def effective_threshold(self) -> Tensor:
        return self.threshold.clamp(min=THRESHOLD_MIN)

    def initial_state(self, batch: int, device=None, dtype=None) -> EGRUState:
        z = torch.zeros(batch, self.hidden_size, device=device, dtype=dtype)
        return EGRUState(z, z.clone())

    def _recurrent_weight(self) -> Tensor:
        if self.training and self.dropconnect > 0:
            return nn.functional.dropout(self.weight_hh, self.dropconnect, training=True)
        return self.weight_hh

    def _cell(self, gx: Tensor, state: EGRUState, w_hh: Tensor, thr: Tensor, zmask: Tensor | None):
        """One step from the input pre-activation gx = W_ih x + b_ih ([B, 3H])."""
        gh = torch.nn.functional.linear(state.y, w_hh, self.bias_hh)
        xr, xz, xn = gx.chunk(3, dim=-1)
        hr, hz, hn = gh.chunk(3, dim=-1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        c_hat = (1.0 - z) * n + z * state.c
        if self.zoneout > 0:
            if zmask is not None:
                c_hat = state.c + zmask * (c_hat - state.c)
            else:
                c_hat = self.zoneout * state.c + (1.0 - self.zoneout) * c_hat
        o = spike(c_hat - thr, self.gamma, self.support)
        y = o * c_hat
        c = c_hat - o * thr
        return EGRUState(y, c), o, c_hat

    def forward(self, x: Tensor, state: EGRUState | None = None) -> EGRUOutput:
        """x: [B, T, I] -> EGRUOutput. The input projection is one matmul over all steps."""
        b, t, _ = x.shape
        if state is None:
            state = self.initial_state(b, x.device, x.dtype)
        gx_all = torch.nn.functional.linear(x, self.weight_ih, self.bias_ih)
        w_hh, thr = self._recurrent_weight(), self.effective_threshold()
        ys, os_, cs = [], [], []
        for i in range(t):
            zmask = None
            if self.training and self.zoneout > 0:
                zmask = torch.bernoulli(torch.full_like(state.c, 1.0 - self.zoneout))
            state, o, c_hat = self._cell(gx_all[:, i], state, w_hh, thr, zmask)
            ys.append(state.y)
            os_.append(o)
            cs.append(c_hat)
        return EGRUOutput(torch.stack(ys, 1), state, torch.stack(os_, 1), torch.stack(cs, 1))

    @torch.no_grad()
    def step(self, x: Tensor, state: EGRUState | None = None) -> EGRUState:
        """One streaming step (inference): x [B, I] -> new (y, c). Equals forward() one step at a time."""
        if state is None:
            state = self.initial_state(x.shape[0], x.device, x.dtype)
        gx = torch.nn.functional.linear(x, self.weight_ih, self.bias_ih)
        new, _, _ = self._cell(gx, state, self.weight_hh, self.effective_threshold(), None)
        return new

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, dropconnect={self.dropconnect}, "
            f"zoneout={self.zoneout}, gamma={self.gamma}, support={self.support}"
        )
