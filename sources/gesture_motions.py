"""Hand trajectories of the 11 DVS128 Gesture classes for a 2-D upper body, and the arm's inverse kinematics.

Units are body units (1 = one pixel at scale 1), y grows downwards, the subject faces the camera, so the
subject's RIGHT arm appears on the image's LEFT (side = -1) and the left arm on the right (side = +1).
"Clockwise" is as the camera sees it. Each gesture returns hand targets relative to the shoulder midpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# tonic.datasets.DVSGesture.classes, same order (index = label).
GESTURE_CLASSES: tuple[str, ...] = (
    "Hand clapping", "Right hand wave", "Left hand wave", "Right arm cw", "Right arm ccw",
    "Left arm cw", "Left arm ccw", "Arm roll", "Air drums", "Air guitar", "Other gestures",
)

RIGHT, LEFT = -1.0, 1.0


@dataclass(frozen=True)
class Body:
    """Per-subject body geometry (pixels) and motion style."""

    cx: float = 64.0  # shoulder midpoint, x
    sy: float = 52.0  # shoulder line, y
    scale: float = 1.0
    speed: float = 1.0  # multiplies every gesture frequency
    amplitude: float = 1.0  # multiplies every gesture excursion
    phase: float = 0.0

    @property
    def shoulder_half(self) -> float:
        return 17.0 * self.scale

    @property
    def upper_len(self) -> float:
        return 19.0 * self.scale

    @property
    def fore_len(self) -> float:
        return 17.0 * self.scale


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def rest_target(b: Body, side: float, n: int) -> np.ndarray:
    """Hand position of a hanging arm, relative to the shoulder midpoint: [n, 2]."""
    p = np.array([side * (b.shoulder_half + 4.0 * b.scale), 33.0 * b.scale])
    return np.broadcast_to(p, (n, 2)).copy()


def hand_targets(
    label: int, t_s: np.ndarray, b: Body, rng: np.random.Generator, rest_at_s: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(right hand, left hand) targets [n, 2] relative to the shoulder midpoint for class `label` at times t_s.

    With `rest_at_s` the hands also return to rest over the 0.3 s before it (gestures performed back to back).
    """
    s, a = b.scale, b.amplitude
    w = 2.0 * np.pi * b.speed
    ph = b.phase
    n = t_s.size
    sh = b.shoulder_half
    right, left = rest_target(b, RIGHT, n), rest_target(b, LEFT, n)

    def circle(cx: float, cy: float, r: float, ang: np.ndarray) -> np.ndarray:
        return np.stack([cx + r * np.cos(ang), cy + r * np.sin(ang)], 1)

    if label == 0:  # hand clapping: hands meet in front of the chest
        gap = 2.0 * s + 11.0 * a * s * 0.5 * (1.0 + np.cos(w * 1.6 * t_s + ph))
        right = np.stack([-gap - 3.0 * s, np.full(n, 20.0 * s)], 1)
        left = np.stack([gap + 3.0 * s, np.full(n, 20.0 * s)], 1)
    elif label in (1, 2):  # hand wave: forearm up, swinging about the elbow
        side = RIGHT if label == 1 else LEFT
        ang = 0.55 * a * np.sin(w * 2.0 * t_s + ph)
        elbow = np.array([side * (sh + 10.0 * s), 4.0 * s])
        hand = np.stack([elbow[0] + b.fore_len * np.sin(ang), elbow[1] - b.fore_len * np.cos(ang)], 1)
        if side == RIGHT:
            right = hand
        else:
            left = hand
    elif label in (3, 4, 5, 6):  # arm circles, cw / ccw as seen by the camera (y down: +angle is cw)
        side = RIGHT if label in (3, 4) else LEFT
        sense = 1.0 if label in (3, 5) else -1.0
        ang = sense * w * 1.0 * t_s + ph
        hand = circle(side * (sh + 8.0 * s), 12.0 * s, 13.0 * a * s, ang)
        if side == RIGHT:
            right = hand
        else:
            left = hand
    elif label == 7:  # arm roll: hands circle around each other in front of the chest
        ang = w * 1.5 * t_s + ph
        right = circle(0.0, 20.0 * s, 6.0 * a * s, ang) + np.array([-3.0 * s, 0.0])
        left = circle(0.0, 20.0 * s, 6.0 * a * s, ang + np.pi) + np.array([3.0 * s, 0.0])
    elif label == 8:  # air drums: hands beat up and down in alternation
        beat = 7.0 * a * s * np.sin(w * 3.0 * t_s + ph)
        right = np.stack([np.full(n, -11.0 * s), 26.0 * s + beat], 1)
        left = np.stack([np.full(n, 11.0 * s), 26.0 * s - beat], 1)
    elif label == 9:  # air guitar: left hand holds the neck, right hand strums
        left = np.stack([sh + 18.0 * s + 3.0 * s * np.sin(w * 0.5 * t_s + ph), np.full(n, 8.0 * s)], 1)
        strum = 7.0 * a * s * np.sin(w * 2.5 * t_s + ph)
        right = np.stack([-4.0 * s + 2.0 * s * np.sin(w * 2.5 * t_s), 27.0 * s + strum], 1)
    else:  # other gestures: random smooth motion of both hands (a fresh draw per recording)
        for k in range(2):
            f = rng.uniform(0.3, 1.4, size=(3, 2)) * b.speed
            amp = rng.uniform(3.0, 9.0, size=(3, 2)) * s * a
            p0 = rng.uniform(0, 2 * np.pi, size=(3, 2))
            off = np.array([rng.uniform(-4, 10) * s, rng.uniform(-25, -5) * s])
            motion = (amp[None] * np.sin(2 * np.pi * f[None] * t_s[:, None, None] + p0[None])).sum(1)
            if k == 0:
                right = right + off * np.array([-1.0, 1.0]) + motion
            else:
                left = left + off + motion
    # start from rest and blend into the gesture over ~0.3 s, as a person does
    ramp = _smoothstep(t_s / 0.3)[:, None]
    if rest_at_s is not None:
        ramp = ramp * _smoothstep((rest_at_s - t_s) / 0.3)[:, None]
    right = rest_target(b, RIGHT, n) + ramp * (right - rest_target(b, RIGHT, n))
    left = rest_target(b, LEFT, n) + ramp * (left - rest_target(b, LEFT, n))
    return right, left


def arm_ik(
    shoulder: np.ndarray, target: np.ndarray, l1: float, l2: float, side: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Two-link inverse kinematics: (elbow, hand) [n, 2]; the elbow bends outwards and downwards."""
    d_vec = target - shoulder
    d = np.linalg.norm(d_vec, axis=1)
    d_c = np.clip(d, abs(l1 - l2) + 1e-3, l1 + l2 - 1e-3)
    phi = np.arctan2(d_vec[:, 1], d_vec[:, 0])
    alpha = np.arccos(np.clip((l1 * l1 + d_c * d_c - l2 * l2) / (2 * l1 * d_c), -1.0, 1.0))
    cands = [shoulder + l1 * np.stack([np.cos(phi + sg * alpha), np.sin(phi + sg * alpha)], 1) for sg in (1, -1)]
    score = [side * (c[:, 0] - shoulder[:, 0]) + (c[:, 1] - shoulder[:, 1]) for c in cands]
    elbow = np.where((score[0] >= score[1])[:, None], cands[0], cands[1])
    hand = shoulder + d_c[:, None] * np.stack([np.cos(phi), np.sin(phi)], 1)
    return elbow, hand
