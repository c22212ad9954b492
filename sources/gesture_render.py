"""Render an articulated 2-D upper body performing a DVS128 gesture, and turn it into events.

A subject (`Subject`, drawn from `draw_subject(rng)`) fixes body size and position, speed, amplitude, clothing
and background textures, lighting and contrast, and camera jitter. `render_gesture_events` renders linear
intensity frames at `fps` (each part drawn with an anti-aliased edge inside its bounding box only, so a frame
costs little) and feeds them to the event-camera model of `sources.dvs_sim`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sources.dvs_sim import DVSConfig, DVSSimulator
from sources.events import EVENT_DTYPE
from sources.gesture_motions import LEFT, RIGHT, Body, arm_ik, hand_targets

SIZE = 128
LIGHTINGS = ("fluorescent", "led", "lab", "natural")


@dataclass(frozen=True)
class Subject:
    """Everything that differs between two people (and two recordings) in front of the camera."""

    body: Body
    skin: float  # linear intensities in [0, 1] before the lighting gain
    shirt: float
    shirt_stripe: float  # stripe contrast of the clothing texture
    stripe_period: float
    stripe_angle: float
    background_seed: int
    background_level: float
    background_contrast: float
    gain: float  # lighting
    jitter_px: float  # camera shake, standard deviation of a slow random walk
    lighting: str = "lab"
    dvs: DVSConfig = DVSConfig()  # noqa: RUF009 (frozen, so a shared default is safe)


MIN_VISIBLE_FRACTION = 0.15  # below it a person hardly makes events (`visible_fraction`)


def draw_subject(rng: np.random.Generator, lighting: str = "lab") -> Subject:
    """A random subject the camera can see; the lighting condition sets gain, drift and sensor noise ranges.

    A draw whose skin and clothing match the background within the sensor's threshold (`visible_fraction` below
    MIN_VISIBLE_FRACTION) is drawn again from the same rng: its arms would make almost no events (such a stream
    carries background activity only), so no model could be right on it. Visible draws are unchanged."""
    while True:
        s = _draw_subject(rng, lighting)
        if visible_fraction(s) >= MIN_VISIBLE_FRACTION:
            return s


def visible_fraction(s: Subject) -> float:
    """The fraction of background pixels from which the skin or the clothing (whichever more) differs by more than
    the sensor's ON threshold in log intensity, after the lighting gain and the frame's clip to [0, 1]: where a
    moving arm can make events at all."""
    bg = np.log(np.clip(_background(s, 0) * s.gain, 1e-3, 1.0))
    return max(float(np.mean(np.abs(np.log(min(1.0, part * s.gain)) - bg) > s.dvs.threshold_on))
               for part in (s.skin, s.shirt))


def _draw_subject(rng: np.random.Generator, lighting: str) -> Subject:
    body = Body(
        cx=64.0 + rng.uniform(-9, 9), sy=52.0 + rng.uniform(-7, 7), scale=rng.uniform(0.82, 1.15),
        speed=rng.uniform(0.75, 1.3), amplitude=rng.uniform(0.75, 1.25), phase=rng.uniform(0, 2 * np.pi),
    )
    gain = {"fluorescent": 1.0, "led": 1.2, "lab": 0.9, "natural": 0.7}.get(lighting, 1.0) * rng.uniform(0.8, 1.2)
    noise = {"natural": 0.3, "lab": 0.1}.get(lighting, 0.15) * rng.uniform(0.5, 1.5)
    thr = rng.uniform(0.18, 0.26)
    return Subject(
        body=body, skin=rng.uniform(0.45, 0.85), shirt=rng.uniform(0.1, 0.9), shirt_stripe=rng.uniform(0.0, 0.5),
        stripe_period=rng.uniform(4.0, 12.0), stripe_angle=rng.uniform(0, np.pi),
        background_seed=int(rng.integers(2**31)), background_level=rng.uniform(0.15, 0.6),
        background_contrast=rng.uniform(0.05, 0.5), gain=gain, jitter_px=rng.uniform(0.0, 0.6), lighting=lighting,
        dvs=DVSConfig(threshold_on=thr, threshold_off=thr * rng.uniform(0.9, 1.1), noise_hz=noise),
    )


def _background(s: Subject, pad: int) -> np.ndarray:
    """Smooth random texture (sum of a few oriented sinusoids), larger than the image by `pad` for jitter."""
    rng = np.random.default_rng(s.background_seed)
    n = SIZE + 2 * pad
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    tex = np.zeros((n, n), np.float32)
    for _ in range(6):
        k = rng.uniform(0.02, 0.25)
        th = rng.uniform(0, np.pi)
        tex += np.sin(k * (xx * np.cos(th) + yy * np.sin(th)) + rng.uniform(0, 2 * np.pi)).astype(np.float32)
    tex /= 6.0
    return np.clip(s.background_level * (1.0 + 2.0 * s.background_contrast * tex), 0.02, 1.0).astype(np.float32)


class _Canvas:
    """Paint capsules (segments with a radius) onto one frame, touching only their bounding boxes."""

    def __init__(self, frame: np.ndarray) -> None:
        self.f = frame

    def capsule(self, p0, p1, r: float, value, stripe: tuple[float, float] | None = None) -> None:
        x0 = int(max(0, np.floor(min(p0[0], p1[0]) - r - 1)))
        x1 = int(min(SIZE, np.ceil(max(p0[0], p1[0]) + r + 2)))
        y0 = int(max(0, np.floor(min(p0[1], p1[1]) - r - 1)))
        y1 = int(min(SIZE, np.ceil(max(p0[1], p1[1]) + r + 2)))
        if x0 >= x1 or y0 >= y1:
            return
        ys = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5
        xs = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5
        ax, ay = xs - p0[0], ys - p0[1]
        bx, by = p1[0] - p0[0], p1[1] - p0[1]
        ll = bx * bx + by * by
        u = np.clip((ax * bx + ay * by) / ll, 0.0, 1.0) if ll > 1e-9 else np.zeros_like(ax * ay)
        dist = np.hypot(ax - u * bx, ay - u * by)
        alpha = np.clip(r - dist + 0.5, 0.0, 1.0)  # one-pixel anti-aliased edge
        val = value
        if stripe is not None:  # stripes along the segment: clothing texture moves with the limb
            contrast, period = stripe
            val = value * (1.0 + contrast * np.sin(2 * np.pi * u * np.sqrt(ll) / period))
        win = self.f[y0:y1, x0:x1]
        win += alpha * (val - win)


def render_frames(label: int, s: Subject, times_s: np.ndarray, rng: np.random.Generator,
                  rest_at_s: float | None = None):
    """Yield one linear-intensity frame [128, 128] float32 per time in times_s."""
    right_t, left_t = hand_targets(label, times_s, s.body, rng, rest_at_s)
    yield from render_frames_from_targets(s, times_s, right_t, left_t, rng)


def render_frames_from_targets(s: Subject, times_s: np.ndarray, right_t: np.ndarray, left_t: np.ndarray,
                               rng: np.random.Generator):
    """Yield one frame per time in times_s with the hands at the given targets [n, 2] (relative to the shoulders).

    A continuous stream of several gestures is one call: one camera shake, one sway, one sensor memory.
    """
    b = s.body
    n = times_s.size
    # camera shake and body sway: a smooth random walk (low-passed noise), shared by all parts and the background
    pad = 4
    # knots at 100 Hz whatever the render rate, so that the same seed shakes the same way at any fps
    t_end = float(times_s[-1]) if n else 0.0
    knots_t = np.arange(0.0, t_end + 0.02, 0.01)
    walk = np.cumsum(rng.normal(0.0, 1.0, size=(knots_t.size, 2)), 0)
    walk = np.stack([np.convolve(walk[:, j], np.ones(8) / 8, mode="same") for j in range(2)], 1)
    walk -= walk.mean(0)
    std = walk.std(0).max()
    walk = walk / std * s.jitter_px if std > 0 else walk * 0
    shake = np.stack([np.interp(times_s, knots_t, walk[:, j]) for j in range(2)], 1)
    shake = np.clip(shake, -pad + 1, pad - 1)
    sway = np.stack([1.2 * b.scale * np.sin(2 * np.pi * 0.3 * times_s + b.phase), np.zeros(n)], 1)
    bg = _background(s, pad)
    mid = np.array([b.cx, b.sy])
    sh_r, sh_l = mid + np.array([RIGHT * b.shoulder_half, 0.0]), mid + np.array([LEFT * b.shoulder_half, 0.0])
    el_r, ha_r = arm_ik(np.broadcast_to(sh_r, (n, 2)), mid + right_t, b.upper_len, b.fore_len, RIGHT)
    el_l, ha_l = arm_ik(np.broadcast_to(sh_l, (n, 2)), mid + left_t, b.upper_len, b.fore_len, LEFT)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    stripe_img = np.sin(2 * np.pi * (xs * np.cos(s.stripe_angle) + ys * np.sin(s.stripe_angle)) / s.stripe_period)
    sc = b.scale
    drift = 1.0 + (0.05 * np.sin(2 * np.pi * 0.1 * times_s + b.phase) if s.lighting == "natural" else 0.0 * times_s)
    for i in range(n):
        off = shake[i]
        ox, oy = off
        ix, iy = int(np.floor(ox)), int(np.floor(oy))
        fx, fy = ox - ix, oy - iy
        sl = bg[pad + iy: pad + iy + SIZE + 1, pad + ix: pad + ix + SIZE + 1]
        upper, lower = (1 - fx) * sl[:-1, :-1] + fx * sl[:-1, 1:], (1 - fx) * sl[1:, :-1] + fx * sl[1:, 1:]
        frame = (1 - fy) * upper + fy * lower  # bilinear: the camera shakes by sub-pixel amounts
        frame = np.ascontiguousarray(frame, dtype=np.float32)
        c = _Canvas(frame)
        d = off + sway[i]
        # torso: a wide column from the neck down, its clothing texture fixed to the body
        top = mid + d + np.array([0.0, 8.0 * sc])
        moved = np.roll(np.roll(stripe_img, round(d[0]), 1), round(d[1]), 0)
        shirt = s.shirt * (1.0 + s.shirt_stripe * moved)
        torso_alpha = np.zeros_like(frame)
        _Canvas(torso_alpha).capsule(top, top + np.array([0.0, 200.0]), b.shoulder_half + 1.5 * sc, 1.0)
        frame += torso_alpha * (shirt - frame)
        c.capsule(mid + d + np.array([0.0, -5.0 * sc]), mid + d + np.array([0.0, 2.0 * sc]), 4.0 * sc, s.skin)  # neck
        c.capsule(mid + d + np.array([0.0, -17.0 * sc]), mid + d + np.array([0.0, -15.0 * sc]), 9.5 * sc, s.skin * 0.9)
        for sh, el, ha in ((sh_r, el_r[i], ha_r[i]), (sh_l, el_l[i], ha_l[i])):
            c.capsule(sh + d, el + d, 4.5 * sc, s.shirt, (s.shirt_stripe, s.stripe_period))
            c.capsule(el + d, ha + d, 3.6 * sc, s.skin)
            c.capsule(ha + d, ha + d, 4.6 * sc, s.skin * 1.05)
        yield np.clip(frame * s.gain * drift[i], 0.0, 1.0)


def render_gesture_events(
    label: int, subject: Subject, duration_s: float, rng: np.random.Generator, fps: float = 250.0,
    rest_at_end: bool = False,
) -> np.ndarray:
    """Events (EVENT_DTYPE, sorted by t, µs from 0) of `subject` doing gesture `label` for duration_s."""
    n = round(duration_s * fps) + 1
    times_s = np.arange(n) / fps
    sim = DVSSimulator(SIZE, SIZE, subject.dvs, rng)
    frames = render_frames(label, subject, times_s, rng, duration_s if rest_at_end else None)
    out = [sim.step(f, round(t * 1e6)) for f, t in zip(frames, times_s, strict=True)]
    return np.concatenate(out) if out else np.empty(0, EVENT_DTYPE)


def with_lighting(s: Subject, lighting: str, rng: np.random.Generator) -> Subject:
    """The same person recorded under another lighting condition (gain, noise and clothing contrast change)."""
    while True:  # the gain and threshold of a lighting can hide a person, as in `draw_subject`
        other = _draw_subject(rng, lighting)
        lit = replace(s, lighting=lighting, gain=other.gain, dvs=other.dvs)
        if visible_fraction(lit) >= MIN_VISIBLE_FRACTION:
            return lit
