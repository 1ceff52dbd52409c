"""Parametric movements of the planar twin model: standing, gait, squat and sit-to-stand.

Every movement returns coordinate values on a uniform time grid, in radians and metres, with the
pelvis translations placed so that the stance feet stay on the ground (gait) or fixed in place
(standing, squat, sit-to-stand; their ankle angle keeps the centre of mass over the mid-foot).
Foot contact phases are returned with them so that ground reaction forces can be distributed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.optimize import brentq

from musculo.errors import MusculoError
from musculo.signals import lowpass
from musculo.twin.model import COORDINATES, FOOT_CONTACT_POINTS

MOVEMENTS = ("static", "gait", "squat", "sit2stand")


class MovementError(MusculoError):
    """A movement cannot be generated with the given settings."""


@dataclass
class Movement:
    """Coordinates over time plus which foot carries load when (weights sum to 1)."""

    time: np.ndarray
    """(T,) s."""
    q: np.ndarray
    """(T, 9) coordinate values in COORDINATES order (rad, m)."""
    load_share_right: np.ndarray
    """(T,) fraction of the ground reaction carried by the right foot."""
    cop_fraction: np.ndarray
    """(T, 2) nominal centre-of-pressure position along each foot (0 heel, 1 toe), right, left."""


# Normative sagittal gait angles (deg) at percent of the cycle, right heel strike at 0 %
# (after Winter 2009, Biomechanics and Motor Control of Human Movement, appendix A).
_GAIT_HIP = ((0, 30), (15, 26), (30, 12), (50, -8), (60, -3), (73, 20), (87, 32), (100, 30))
_GAIT_KNEE_FLEX = ((0, 4), (15, 17), (30, 9), (42, 6), (60, 38), (72, 60), (85, 33), (96, 4),
                   (100, 4))  # fmt: skip
_GAIT_ANKLE = ((0, 0), (7, -5), (30, 7), (47, 10), (62, -17), (75, -4), (88, 2), (100, 0))


def _periodic(points: tuple[tuple[float, float], ...]) -> CubicSpline:
    x = np.array([p[0] for p in points], float) / 100.0
    y = np.radians([p[1] for p in points])
    return CubicSpline(x, y, bc_type="periodic")


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (x * (6 * x - 15) + 10)


class _Kinematics:
    """Forward kinematics of foot points and the centre of mass relative to the pelvis."""

    def __init__(self, model: Any) -> None:
        import opensim as osim

        self.osim = osim
        self.model = model
        self.state = model.initSystem()
        self.coords = [model.getCoordinateSet().get(name) for name in COORDINATES]
        self.feet = {s: model.getBodySet().get(f"calcn_{s}") for s in ("r", "l")}
        self.points = {k: osim.Vec3(*v) for k, v in FOOT_CONTACT_POINTS.items()}

    def set(self, q: np.ndarray) -> None:
        for coord, value in zip(self.coords, q, strict=True):
            coord.setValue(self.state, float(value), False)
        self.model.realizePosition(self.state)

    def foot(self, side: str, point: str) -> np.ndarray:
        v = self.feet[side].findStationLocationInGround(self.state, self.points[point])
        return np.array([v.get(0), v.get(1)])

    def com(self) -> np.ndarray:
        v = self.model.calcMassCenterPosition(self.state)
        return np.array([v.get(0), v.get(1)])


def gait(
    *, model: Any, rate: float, cycle_time: float, amplitude: float = 1.0, cycles: int = 3
) -> Movement:
    """Walk ``cycles`` gait cycles (right heel strike at t = 0) from normative joint angles.

    ``amplitude`` scales the joint excursions (1 = normative). The pelvis moves so that the
    rolling contact point (heel, then toe) of the stance foot has no velocity, blended across
    double support (its mean over the cycles gives the constant walking speed), and its height
    keeps the lowest stance-foot point on the ground (low-pass filtered at 4 Hz).
    """
    if cycle_time <= 0.5 or cycle_time > 2.5:
        raise MovementError(f"twin movement 'gait': cycle_time {cycle_time} s is outside 0.5..2.5")
    n = int(round(cycles * cycle_time * rate)) + 1
    t = np.arange(n) / rate
    phase = (t / cycle_time) % 1.0
    hip, knee, ankle = _periodic(_GAIT_HIP), _periodic(_GAIT_KNEE_FLEX), _periodic(_GAIT_ANKLE)
    q = np.zeros((n, len(COORDINATES)))
    q[:, 0] = np.radians(-2.0) + np.radians(1.5) * np.sin(4 * np.pi * phase)
    for col, shift in ((3, 0.0), (6, 0.5)):
        ph = (phase + shift) % 1.0
        q[:, col] = amplitude * (hip(ph) - np.radians(10)) + np.radians(10)
        q[:, col + 1] = -amplitude * knee(ph)
        q[:, col + 2] = amplitude * ankle(ph)
    # right stance 0-60 %, left stance 50-110 %: load transfers across double support
    share = np.empty(n)
    cop = np.empty((n, 2))
    for i, ph in enumerate(phase):
        if ph < 0.1:
            share[i] = _smoothstep(np.array(ph / 0.1))
        elif ph < 0.5:
            share[i] = 1.0
        elif ph < 0.6:
            share[i] = 1.0 - _smoothstep(np.array((ph - 0.5) / 0.1))
        else:
            share[i] = 0.0
        cop[i, 0] = _smoothstep(np.array(ph / 0.6)) if ph < 0.6 else 1.0
        lph = (ph - 0.5) % 1.0
        cop[i, 1] = _smoothstep(np.array(lph / 0.6)) if lph < 0.6 else 1.0
    kin = _Kinematics(model)
    rel = {s: {p: np.zeros((n, 2)) for p in ("heel", "toe")} for s in ("r", "l")}
    for i in range(n):
        kin.set(q[i])
        for s in ("r", "l"):
            for p in ("heel", "toe"):
                rel[s][p][i] = kin.foot(s, p)
    contact = {}
    for s, frac in (("r", cop[:, 0]), ("l", cop[:, 1])):
        w = _smoothstep((frac - 0.3) / 0.4)[:, None]
        contact[s] = (1 - w) * rel[s]["heel"] + w * rel[s]["toe"]
    vx = {s: np.gradient(contact[s][:, 0], t) for s in ("r", "l")}
    pelvis_vx = -(share * vx["r"] + (1 - share) * vx["l"])
    q[:, 1] = float(np.mean(pelvis_vx)) * t
    low = {
        s: -np.log(np.exp(-rel[s]["heel"][:, 1] / 0.01) + np.exp(-rel[s]["toe"][:, 1] / 0.01))
        * 0.01
        for s in ("r", "l")
    }
    q[:, 2] = lowpass(-(share * low["r"] + (1 - share) * low["l"]), rate=rate, cutoff=4.0, order=2)
    q[:, [0, 3, 4, 5, 6, 7, 8]] = lowpass(q[:, [0, 3, 4, 5, 6, 7, 8]], rate=rate, cutoff=8.0, order=2)
    return Movement(time=t, q=q, load_share_right=share, cop_fraction=cop)


def _balanced(
    *, model: Any, rate: float, trunk: np.ndarray, thigh: np.ndarray, straight: bool = False
) -> Movement:
    """Feet flat and fixed; for each frame solve the shank angle that puts the COM over mid-foot.

    ``thigh`` is the thigh's angle from vertical (flexion positive); with ``straight`` the knee is
    kept extended and ``thigh`` is ignored.
    """
    n = len(trunk)
    t = np.arange(n) / rate
    kin = _Kinematics(model)
    q = np.zeros((n, len(COORDINATES)))
    target_fraction = 0.3

    def frame(shank: float, i: int) -> np.ndarray:
        qi = np.zeros(len(COORDINATES))
        qi[0] = trunk[i]
        th = shank if straight else thigh[i]
        for col in (3, 6):
            qi[col] = th - trunk[i]
            qi[col + 1] = shank - th
            qi[col + 2] = -shank
        return qi

    def com_offset(shank: float, i: int) -> float:
        kin.set(frame(shank, i))
        heel = kin.foot("r", "heel")[0]
        toe = kin.foot("r", "toe")[0]
        return kin.com()[0] - (heel + target_fraction * (toe - heel))

    for i in range(n):
        try:
            shank = brentq(com_offset, -1.2, 0.4, args=(i,), xtol=1e-7)
        except ValueError as exc:
            raise MovementError(
                f"twin movement: no ankle angle balances frame {i} (trunk {trunk[i]:.2f} rad, "
                f"thigh {thigh[i]:.2f} rad); reduce the movement's depth or trunk lean"
            ) from exc
        q[i] = frame(shank, i)
        kin.set(q[i])
        heel = kin.foot("r", "heel")
        q[i, 1] = -heel[0]
        q[i, 2] = -heel[1]
    share = np.full(n, 0.5)
    cop = np.full((n, 2), target_fraction)
    return Movement(time=t, q=q, load_share_right=share, cop_fraction=cop)


def _raised(t: np.ndarray, start: float, duration: float) -> np.ndarray:
    return _smoothstep((t - start) / duration)


def squat(*, model: Any, rate: float, duration: float, depth: float = 1.0) -> Movement:
    """Stand, squat down to ``depth`` (1 = thigh about 70 deg from vertical) and back up."""
    n = int(round(duration * rate)) + 1
    t = np.arange(n) / rate
    hold = 0.15 * duration
    s = np.where(
        t < duration / 2, _raised(t, hold, duration / 2 - hold),
        1 - _raised(t, duration / 2, duration / 2 - hold),
    )  # fmt: skip
    thigh = np.radians(70.0) * depth * s
    trunk = -np.radians(30.0) * depth * s
    return _balanced(model=model, rate=rate, trunk=trunk, thigh=thigh)


def sit2stand(
    *, model: Any, rate: float, duration: float, lean: float = 1.0, seat: float = 80.0
) -> Movement:
    """Rise from a seated posture (from seat-off) to upright standing.

    ``seat`` is the thighs' angle from vertical when seated (deg; 80 = nearly horizontal thighs,
    lower = a higher seat); ``lean`` scales the extra forward trunk lean while rising.
    """
    n = int(round(duration * rate)) + 1
    t = np.arange(n) / rate
    s = _raised(t, 0.1 * duration, 0.7 * duration)
    thigh = np.radians(seat) * (1 - s)
    trunk = -(np.radians(40.0) * (1 - s) + np.radians(15.0) * lean * np.sin(np.pi * s))
    return _balanced(model=model, rate=rate, trunk=trunk, thigh=thigh)


def static(*, model: Any, rate: float, duration: float) -> Movement:
    """Quiet standing (a static trial)."""
    n = int(round(duration * rate)) + 1
    zeros = np.zeros(n)
    return _balanced(model=model, rate=rate, trunk=zeros, thigh=zeros, straight=True)


def make_movement(
    *, movement: str, model: Any, rate: float, settings: dict[str, float]
) -> Movement:
    """Dispatch to a movement by name with its settings (see the functions of this module)."""
    if movement == "gait":
        return gait(model=model, rate=rate, **settings)
    if movement == "squat":
        return squat(model=model, rate=rate, **settings)
    if movement == "sit2stand":
        return sit2stand(model=model, rate=rate, **settings)
    if movement == "static":
        return static(model=model, rate=rate, **settings)
    raise MovementError(f"twin.movement: unknown movement {movement!r}; known: {MOVEMENTS}")


def crop(movement: Movement, *, start: float, stop: float) -> Movement:
    """The part of ``movement`` with ``start <= t <= stop``, time shifted to start at 0."""
    keep = (movement.time >= start - 1e-9) & (movement.time <= stop + 1e-9)
    return Movement(
        time=movement.time[keep] - movement.time[keep][0],
        q=movement.q[keep],
        load_share_right=movement.load_share_right[keep],
        cop_fraction=movement.cop_fraction[keep],
    )
