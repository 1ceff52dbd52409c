"""Movements of the planar twin model: standing, gait, walk, squat and sit-to-stand.

Every movement returns coordinate values on a uniform time grid, in radians and metres, with the
pelvis translations placed so that the stance feet stay on the ground (gait, walk) or fixed in place
(standing, squat, sit-to-stand; their ankle angle keeps the centre of mass over the mid-foot).
Foot contact phases are returned with them so that ground reaction forces can be distributed.

``walk`` replays a recorded human walk (:class:`WalkTemplate`, e.g. the treadmill walk of OpenSim's
gait10dof18musc example subject) on the twin's own body: joint angles from the recording (time-scaled,
amplitude-scaled, optionally mirrored left for right), the pelvis moved so that the loaded foot's
rolling contact point stays in place, and the recorded vertical ground reactions for the load
transfer between the feet. Unlike the parametric ``gait``, whose constant pelvis speed put the
centre of pressure up to 0.25 m off the foot, a real walk's joint angles carry the body's own
balance, so the centre of pressure that the dynamics require stays under the stance foot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.interpolate import CubicSpline
from scipy.optimize import brentq

from musculo.errors import MusculoError
from musculo.signals import lowpass, runs
from musculo.twin.model import COORDINATES, FOOT_CONTACT_POINTS

MOVEMENTS = ("static", "gait", "walk", "squat", "sit2stand")


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
    horizontal: np.ndarray | None = None
    """(T, 2) N, optional forward ground reaction on the right and the left foot from a recording
    (braking on the leading foot, propulsion on the trailing one in double support); the
    dynamics add the rest of the required force by load share."""


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


def _foot_points(model: Any, q: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Heel and toe (x, y) of each foot relative to the pelvis translations, at every frame of ``q``
    (``rel[side][point]``, (T, 2) m); ``q``'s pelvis translations should be zero."""
    kin = _Kinematics(model)
    rel = {s: {p: np.zeros((len(q), 2)) for p in ("heel", "toe")} for s in ("r", "l")}
    for i in range(len(q)):
        kin.set(q[i])
        for s in ("r", "l"):
            for p in ("heel", "toe"):
                rel[s][p][i] = kin.foot(s, p)
    return rel


def _floor_height(rel: dict[str, dict[str, np.ndarray]], share: np.ndarray, *, rate: float) -> np.ndarray:
    """Pelvis height that keeps the loaded foot's lowest point (a soft minimum of heel and toe) on
    the floor, blended by load share and low-pass filtered at 4 Hz."""
    low = {
        s: -np.log(np.exp(-rel[s]["heel"][:, 1] / 0.01) + np.exp(-rel[s]["toe"][:, 1] / 0.01)) * 0.01
        for s in ("r", "l")
    }
    return lowpass(-(share * low["r"] + (1 - share) * low["l"]), rate=rate, cutoff=4.0, order=2)


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
    rel = _foot_points(model, q)
    contact = {}
    for s, frac in (("r", cop[:, 0]), ("l", cop[:, 1])):
        w = _smoothstep((frac - 0.3) / 0.4)[:, None]
        contact[s] = (1 - w) * rel[s]["heel"] + w * rel[s]["toe"]
    vx = {s: np.gradient(contact[s][:, 0], t) for s in ("r", "l")}
    pelvis_vx = -(share * vx["r"] + (1 - share) * vx["l"])
    q[:, 1] = float(np.mean(pelvis_vx)) * t
    q[:, 2] = _floor_height(rel, share, rate=rate)
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


@dataclass
class WalkTemplate:
    """A recorded planar walk: joint angles and each foot's vertical ground reaction."""

    time: np.ndarray
    """(T,) s, uniform."""
    q: np.ndarray
    """(T, 9) coordinates in COORDINATES order (rad, m); the trunk's lumbar angle is folded into
    the pelvis (the twin's trunk is welded to its pelvis), the hips keep the thighs' orientation."""
    vertical: np.ndarray
    """(T, 2) N, vertical ground reaction on the right and the left foot."""
    horizontal: np.ndarray
    """(T, 2) N, forward ground reaction on the right and the left foot."""
    source: str
    """Where the template came from, for messages."""


@dataclass(frozen=True)
class WalkSource:
    """Where a registered walk's files are and how to read them."""

    coordinates: str
    """Coordinates file in the dataset (IK .mot or a states .sto)."""
    grf: str
    """Ground reaction file in the dataset."""
    vertical_columns: tuple[str, str]
    """Right and left foot's vertical force columns (the forward ones end in ``x``)."""


WALK_TEMPLATES: dict[str, WalkSource] = {
    "gait10dof18musc-subject01": WalkSource(
        "OutputReference/IK/subject01_walk_IK.mot",
        "OutputReference/ExperimentalData/subject01_walk_grf.mot",
        ("ground_force_vy", "1_ground_force_vy"),
    ),
}
"""Registered walks by dataset. ``gait10dof18musc-subject01``: OpenSim's planar example subject on
a treadmill (2.5 s, two gait cycles; its model shares the twin's coordinates, segments and muscle
paths). The sagittal angles of a 3-D walk (the Rajagopal et al. 2016 subject of
``opensim-example3dwalking``) do not balance the planar twin: the centre of pressure they require
runs up to 0.3 m behind the heel after each foot strike, so that walk is not offered."""


def walk_template(
    *,
    coordinates: pd.DataFrame,
    grf: pd.DataFrame,
    vertical_columns: tuple[str, str] = ("ground_force_vy", "1_ground_force_vy"),
    source: str = "template",
) -> WalkTemplate:
    """A :class:`WalkTemplate` from an OpenSim coordinates table of a model with the twin's
    coordinates (IK ``.mot``, degrees or radians as its header says; ``lumbar_extension`` optional,
    other columns left out) and a ground-reaction table with the right and the left foot's vertical
    forces in ``vertical_columns`` and their forward forces in the same names ending in ``x``."""
    missing = [c for c in COORDINATES if c not in coordinates.columns]
    if missing:
        raise MovementError(f"{source}: walk template coordinates lack columns {missing}")
    for col in vertical_columns:
        if col not in grf.columns:
            raise MovementError(f"{source}: walk template ground reactions lack column {col!r} "
                                f"(expected the right and left vertical forces {list(vertical_columns)})")
    time = coordinates.index.to_numpy(dtype=float)
    in_degrees = str(coordinates.attrs.get("inDegrees", "yes")).strip().lower() == "yes"
    q = np.zeros((len(time), len(COORDINATES)))
    for j, name in enumerate(COORDINATES):
        values = coordinates[name].to_numpy(dtype=float)
        q[:, j] = values if name in ("pelvis_tx", "pelvis_ty") or not in_degrees else np.radians(values)
    if "lumbar_extension" in coordinates.columns:
        lumbar = coordinates["lumbar_extension"].to_numpy(dtype=float)
        lumbar = np.radians(lumbar) if in_degrees else lumbar
        q[:, 0] += lumbar
        for col in (3, 6):  # the thighs keep their orientation in the room
            q[:, col] -= lumbar
    grf_time = grf.index.to_numpy(dtype=float)
    forward = [col[:-1] + "x" for col in vertical_columns]
    missing = [col for col in forward if col not in grf.columns]
    if missing:
        raise MovementError(f"{source}: walk template ground reactions lack forward force columns {missing}")
    vertical, horizontal = (
        np.column_stack([np.interp(time, grf_time, grf[col].to_numpy(dtype=float)) for col in cols])
        for cols in (vertical_columns, forward)
    )
    vertical = np.clip(vertical, 0.0, None)
    horizontal = np.where(vertical > _CONTACT_FORCE, horizontal, 0.0)
    return WalkTemplate(time=time, q=q, vertical=vertical, horizontal=horizontal, source=source)


_CONTACT_FORCE = 20.0  # N, vertical force above which a template foot is loaded


def _contact_fraction(t: np.ndarray, loaded: np.ndarray) -> np.ndarray:
    """0 at each contact's start, 1 at its end (0 in the air): where the contact rolls along the foot."""
    frac = np.zeros(len(t))
    for a, b in runs(loaded):
        span = max(t[b - 1] - t[a], 1e-9)
        frac[a:b] = (t[a:b] - t[a]) / span
    return frac


def walk(
    *,
    model: Any,
    rate: float,
    template: WalkTemplate,
    start: float,
    duration: float,
    cadence: float = 1.0,
    amplitude: float = 1.0,
    mirror: bool = False,
) -> Movement:
    """Replay ``duration`` s of a recorded walk from ``start`` (template clock) on ``model``.

    ``cadence`` > 1 walks faster (the recording is replayed ``cadence`` times as fast);
    ``amplitude`` scales the hip, knee and ankle excursions about their mean; ``mirror`` swaps the
    legs (the left leg's stride becomes the right's). The whole recording is processed, then the
    span is cut out, so filters have no end effects inside it: angles are low-pass filtered at
    6 Hz; the pelvis moves so that the loaded foot's contact point (heel, then toe) stays in
    place, and its height keeps the lowest stance-foot point on the floor. The recording's
    vertical ground reactions give the share of load on each foot and its contact phases.
    """
    if cadence <= 0 or amplitude <= 0:
        raise MovementError(f"twin movement 'walk': cadence {cadence} and amplitude {amplitude} must be > 0")
    t0, t1 = float(template.time[0]), float(template.time[-1])
    if start < t0 - 1e-9 or start + duration * cadence > t1 + 1e-9 or duration <= 0:
        raise MovementError(
            f"twin movement 'walk': {template.source} spans {t0:.3f}-{t1:.3f} s; start {start} s and "
            f"duration {duration} s at cadence {cadence} need {start:.3f}-"
            f"{start + duration * cadence:.3f} s; move the start or shorten the trial"
        )
    first = int(np.ceil((start - t0) / cadence * rate - 1e-6))  # frames of the span on the new clock
    n_all = int(np.floor((t1 - t0) / cadence * rate + 1e-6)) + 1
    t = np.arange(n_all) / rate
    src = t0 + t * cadence
    q = CubicSpline(template.time, template.q, axis=0)(src)
    vertical, horizontal = (
        np.column_stack([np.interp(src, template.time, forces[:, k]) for k in (0, 1)])
        for forces in (template.vertical, template.horizontal)
    )
    # the recording's forward forces, scaled from its body weight (mean vertical force) to the model's
    weight = model.getTotalMass(model.initSystem()) * abs(model.getGravity().get(1))
    horizontal *= weight / max(float(template.vertical.sum(axis=1).mean()), 1.0)
    if mirror:
        q[:, [3, 4, 5, 6, 7, 8]] = q[:, [6, 7, 8, 3, 4, 5]]
        vertical, horizontal = vertical[:, ::-1], horizontal[:, ::-1]
    joints = [3, 4, 5, 6, 7, 8]
    mean = q[:, joints].mean(axis=0)
    q[:, joints] = mean + amplitude * (q[:, joints] - mean)
    q[:, [0, *joints]] = lowpass(q[:, [0, *joints]], rate=rate, cutoff=6.0, order=2)
    total = vertical.sum(axis=1)
    share = np.where(total > 1.0, vertical[:, 0] / np.maximum(total, 1.0), 0.5)
    loaded = vertical > _CONTACT_FORCE
    cop = np.column_stack([_contact_fraction(t, loaded[:, k]) for k in (0, 1)])
    q[:, 1] = q[:, 2] = 0.0
    rel = _foot_points(model, q)
    vx = {}
    for s, frac in (("r", cop[:, 0]), ("l", cop[:, 1])):
        w = _smoothstep((frac - 0.3) / 0.4)  # blend the points' velocities, not their positions
        vx[s] = (1 - w) * np.gradient(rel[s]["heel"][:, 0], t) + w * np.gradient(rel[s]["toe"][:, 0], t)
    pelvis_vx = -(share * vx["r"] + (1 - share) * vx["l"])
    tx = np.concatenate([[0.0], np.cumsum(0.5 * (pelvis_vx[1:] + pelvis_vx[:-1]) * np.diff(t))])
    q[:, 1] = lowpass(tx, rate=rate, cutoff=6.0, order=2)
    q[:, 2] = _floor_height(rel, share, rate=rate)
    keep = slice(first, min(first + int(round(duration * rate)) + 1, n_all))
    q = q[keep]
    q[:, 1] -= q[0, 1]
    return Movement(time=t[keep] - t[keep][0], q=q, load_share_right=share[keep], cop_fraction=cop[keep],
                    horizontal=horizontal[keep])


def make_movement(
    *, movement: str, model: Any, rate: float, settings: dict[str, Any],
    template: WalkTemplate | None = None,
) -> Movement:
    """Dispatch to a movement by name with its settings (see the functions of this module);
    ``walk`` needs its recorded ``template``."""
    if movement == "walk":
        if template is None:
            raise MovementError("twin movement 'walk' needs a recorded walk (template)")
        return walk(model=model, rate=rate, template=template, **settings)
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
        horizontal=None if movement.horizontal is None else movement.horizontal[keep],
    )
