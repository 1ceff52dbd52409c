"""Generate a digital-twin subject: lab-like recordings of a "true" subject and their ground truth.

For a subject folder whose ``subject.yaml`` has a ``twin:`` block, :func:`generate_twin` writes
every file the subject file names:

- ``model`` (e.g. ``model.osim``): the GENERIC twin model (1.80 m, 75.2 kg, literature muscle
  parameters), which the pipeline scales like any generic model; ``marker_set``: its markers.
- one C3D per trial: markers from forward kinematics of the TRUE model (segment lengths, mass and
  muscle parameters perturbed from the generic ones, markers displaced on their segments) plus
  seeded noise, in mm in a Z-up lab frame (``lab_frame`` of the subject file); TYPE 2 force plates
  carrying ground reactions that make the motion dynamically consistent (standing tasks: plate 1
  under the right foot, plate 2 under the left; walks: one plate per footfall, in the order the
  feet land); raw EMG (V) of the subject's EMG channels.
- ``truth.npz`` (see :data:`TRUTH_KEYS`): every muscle's excitation, activation and force per
  dynamic trial, the true coordinates and joint moments, and the true parameters.

Excitations (``twin.truth.solver``): by default OpenSim's StaticOptimization (AnalyzeTool, in a
child process) on the true model with the generated external loads gives activations with the
true model's own Millard muscles (compliant tendons, Millard curves); the first-order activation
dynamics of the Millard model,
``da/dt = (u - a) / tau``, ``tau = tau_act (0.5 + 1.5 a)`` when activating and
``tau_deact / (0.5 + 1.5 a)`` when deactivating, is inverted to ``u = a + tau(a) da/dt``,
clipped to [0, 1]. With ``solver: moco``, MocoInverse on the true model with compliant-tendon
DeGrooteFregly2016 muscles and activation dynamics gives them instead (:mod:`musculo.twin.dynamics`).
The solver is chosen by the config's ``twin.truth``, then the twin's own ``twin.truth``, then the
trial's ``truth``; ``truth.npz`` records which one made each trial (``<trial>/truth``).
The estimators' physics core uses its own curves and the generic parameters.

EMG of a channel: the sum over its muscles of band-limited Gaussian noise (Butterworth band-pass)
amplitude-modulated by the excitation, plus a share of a neighbouring muscle's signal
(crosstalk), times an electrode gain, plus a band-limited noise floor. A trial of role ``mvc`` holds each
channel's muscles at full excitation in turn (:func:`mvc_excitation`), recorded with the same
electrode gains, so the pipeline normalises twin EMG by MVC as labs do.

Everything random derives from the twin's seed, so a generation is reproducible byte for byte.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.interpolate import CubicSpline

from musculo import logger
from musculo.errors import MusculoError
from musculo.io.atomic import atomic_output
from musculo.io.c3d_writer import ForcePlate, write_c3d
from musculo.io.tables import read_sto
from musculo.signals import bandpass, runs
from musculo.subject import Subject, load_subject
from musculo.twin import dynamics, movement
from musculo.twin.model import (
    COORDINATES,
    MUSCLES,
    NOMINAL_HEIGHT,
    ModelParameters,
    build_model,
    generic_mass,
    write_model,
)

TRUTH_KEYS: dict[str, str] = {
    "trials": "(K,) names of the dynamic trials; per-trial keys are '<trial>/<key>'",
    "<trial>/time": "(T,) s, the trial's C3D time base (first_frame / marker rate + i / rate)",
    "muscles": "(M,) every muscle of the model",
    "<trial>/excitation": "(T, M) true excitations, 0..1",
    "<trial>/activation": "(T, M) true activations (static optimization on the true model), 0..1",
    "<trial>/force": "(T, M) true muscle (tendon) forces, N",
    "coordinates": "(C,) coordinate names",
    "<trial>/q": "(T, C) true coordinate values, rad (rotations) or m (pelvis translations)",
    "<trial>/moments": "(T, C) true generalized forces from inverse dynamics with the ground "
                       "reactions, N m (rotations) or N (translations); pelvis ones are residuals",
    "<trial>/residuals": "JSON text: RMS and peak pelvis residuals of the generator's own check, and "
                         "how far the centre of pressure strays off the sole (m)",
    "<trial>/truth": "JSON text: how the true muscle states were made (solver: so or moco; Moco's "
                     "largest reserves)",
    "max_isometric_force": "(M,) N, true",
    "optimal_fiber_length": "(M,) m, true",
    "tendon_slack_length": "(M,) m, true",
    "pennation_angle": "(M,) rad, at optimal fibre length",
    "activation_time_constant": "(M,) s",
    "deactivation_time_constant": "(M,) s",
    "generic_max_isometric_force": "(M,) N, of the generic model the pipeline scales",
    "generic_optimal_fiber_length": "(M,) m",
    "generic_tendon_slack_length": "(M,) m",
    "parameters": "JSON text: the ModelParameters of the true model, mass, height, seed",
}
"""Keys of ``truth.npz`` and what they hold."""

SURFACE_MUSCLES: tuple[str, ...] = (
    "rect_fem", "vasti", "hamstrings", "gastroc", "soleus", "tib_ant", "glut_max",
)  # fmt: skip
"""Muscles (without side suffix) that surface EMG can record."""

CROSSTALK_NEIGHBOUR: dict[str, str] = {
    "rect_fem": "vasti", "vasti": "rect_fem", "hamstrings": "glut_max", "glut_max": "hamstrings",
    "gastroc": "soleus", "soleus": "gastroc", "tib_ant": "soleus",
}  # fmt: skip
"""Muscle whose signal leaks into an electrode over the given muscle."""

DEFAULT_PERTURBATION: dict[str, float] = {
    "segment": 0.03,
    "max_isometric_force": 0.15,
    "optimal_fiber_length": 0.05,
    "tendon_slack_length": 0.03,
    "marker_offset": 0.004,
}
"""Default SDs: log-normal factors for segments and muscle parameters, metres for markers."""

DEFAULT_EMG: dict[str, Any] = {
    "band": [20.0, 450.0],
    "gain": [0.5e-3, 2.0e-3],
    "crosstalk": 0.1,
    "noise_floor": 5.0e-6,
}
"""Default EMG synthesis: band (Hz), gain range (V at full excitation), crosstalk share, floor (V RMS)."""


class TwinGenerationError(MusculoError):
    """A twin cannot be generated from its settings, or fails its own consistency check."""


def _side(muscle: str) -> tuple[str, str]:
    base, side = muscle.rsplit("_", 1)
    return base, side


def true_parameters(
    *, rng: np.random.Generator, height: float, mass: float, perturbation: Mapping[str, float]
) -> ModelParameters:
    """Segment lengths scaled to ``height`` and perturbed, ``mass``, perturbed muscle parameters.

    Perturbation factors are log-normal with the SDs of ``perturbation`` (keys of
    :data:`DEFAULT_PERTURBATION`); muscles of both sides are perturbed independently. Maximal
    isometric forces also follow the body's mass, by ``(mass / generic mass) ** (2/3)``
    (geometric similarity: force follows cross-sectional area), so a heavy twin is not left with
    the muscles of the 75 kg generic model.
    """
    base = height / NOMINAL_HEIGHT
    seg_sd = float(perturbation["segment"])
    segment_scale = {
        b: float(base * np.exp(rng.normal(0.0, seg_sd)))
        for b in ("pelvis", "torso", "femur", "tibia", "calcn")
    }
    factors: dict[str, dict[str, float]] = {}
    for key in ("max_isometric_force", "optimal_fiber_length", "tendon_slack_length"):
        sd = float(perturbation[key])
        factors[key] = {
            f"{b}_{s}": float(np.exp(rng.normal(0.0, sd))) for s in ("r", "l") for b in MUSCLES
        }
    strength = (float(mass) / generic_mass()) ** (2.0 / 3.0)
    factors["max_isometric_force"] = {k: v * strength for k, v in factors["max_isometric_force"].items()}
    return ModelParameters(
        segment_scale=segment_scale, mass=float(mass), **factors
    )


def _muscle_table(model: Any) -> dict[str, np.ndarray]:
    import opensim as osim

    muscles = model.getMuscles()
    rows = []
    names = []
    for i in range(muscles.getSize()):
        m = osim.Millard2012EquilibriumMuscle.safeDownCast(muscles.get(i))
        names.append(m.getName())
        rows.append((
            m.getMaxIsometricForce(), m.getOptimalFiberLength(), m.getTendonSlackLength(),
            m.getPennationAngleAtOptimalFiberLength(), m.get_activation_time_constant(),
            m.get_deactivation_time_constant(),
        ))  # fmt: skip
    arr = np.array(rows)
    return {
        "muscles": np.array(names),
        "max_isometric_force": arr[:, 0],
        "optimal_fiber_length": arr[:, 1],
        "tendon_slack_length": arr[:, 2],
        "pennation_angle": arr[:, 3],
        "activation_time_constant": arr[:, 4],
        "deactivation_time_constant": arr[:, 5],
    }


def _displace_markers(model: Any, rng: np.random.Generator, sd: float) -> None:
    """Move every marker of ``model`` on its segment by a seeded offset (placement error)."""
    import opensim as osim

    markers = model.updMarkerSet()
    for i in range(markers.getSize()):
        marker = markers.get(i)
        loc = marker.get_location().to_numpy()
        offset = rng.normal(0.0, sd, 3)
        marker.set_location(osim.Vec3(*(loc + offset)))
    model.finalizeConnections()
    model.initSystem()


def _marker_trajectories(model: Any, q: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Forward kinematics of every marker: names and (T, N, 3) ground positions (m)."""
    state = model.initSystem()
    cs = model.getCoordinateSet()
    markers = model.getMarkerSet()
    names = [markers.get(i).getName() for i in range(markers.getSize())]
    out = np.zeros((len(q), len(names), 3))
    for i, qi in enumerate(q):
        for j, name in enumerate(COORDINATES):
            cs.get(name).setValue(state, float(qi[j]), False)
        model.realizePosition(state)
        for k in range(len(names)):
            out[i, k] = markers.get(k).getLocationInGround(state).to_numpy()
    return names, out


def _foot_z(model: Any, q: np.ndarray) -> dict[str, float]:
    """Lateral (z) position in ground of each foot's origin at the first frame."""
    state = model.initSystem()
    cs = model.getCoordinateSet()
    for j, name in enumerate(COORDINATES):
        cs.get(name).setValue(state, float(q[j]), False)
    model.realizePosition(state)
    return {
        s: float(model.getBodySet().get(f"calcn_{s}").getPositionInGround(state).get(2))
        for s in dynamics.SIDES
    }


def invert_activation(
    *, time: np.ndarray, activation: np.ndarray, tau_act: np.ndarray, tau_deact: np.ndarray
) -> np.ndarray:
    """Excitations from activations by inverting Millard first-order activation dynamics.

    ``activation`` is (T, M); ``tau_act`` and ``tau_deact`` are (M,) s. Returns (T, M) in [0, 1].
    """
    a = np.clip(np.asarray(activation, dtype=float), 0.0, 1.0)
    dadt = CubicSpline(time, a, axis=0)(time, 1)
    shape = 0.5 + 1.5 * a
    tau = np.where(dadt > 0, tau_act[None, :] * shape, tau_deact[None, :] / shape)
    return np.clip(a + tau * dadt, 0.0, 1.0)


def _bandlimited(rng: np.random.Generator, n: int, rate: float, band: tuple[float, float]) -> np.ndarray:
    """Unit-RMS Gaussian noise band-passed by a 4th-order zero-phase Butterworth filter."""
    x = bandpass(rng.normal(size=n), rate=rate, band=(float(band[0]), min(float(band[1]), 0.45 * rate)))
    return x / np.sqrt(np.mean(x**2))


def synthesize_emg(
    *,
    rng: np.random.Generator,
    channels: Mapping[str, list[str]],
    excitation: Mapping[str, np.ndarray],
    rate: float,
    band: tuple[float, float] = (20.0, 450.0),
    gain: tuple[float, float] = (0.5e-3, 2.0e-3),
    crosstalk: float = 0.1,
    noise_floor: float = 5.0e-6,
    gains: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Raw EMG (samples, channels) in V for ``channels`` (label -> muscles under the electrode).

    ``excitation`` maps each muscle (and crosstalk neighbour) to its excitation at the analog
    samples. A channel's gain comes from ``gains`` or is drawn log-uniformly from ``gain``.
    Only muscles with an excitation entry contribute; a channel with none raises.
    """
    n = len(next(iter(excitation.values())))
    carriers = {m: _bandlimited(rng, n, rate, band) * excitation[m] for m in sorted(excitation)}
    out = np.zeros((n, len(channels)))
    for c, (label, muscles) in enumerate(channels.items()):
        own = [m for m in muscles if m in carriers]
        if not own:
            raise TwinGenerationError(
                f"twin EMG channel {label!r}: none of its muscles {muscles} has an excitation; "
                "map EMG channels to surface muscles of the twin model"
            )
        signal = sum(carriers[m] for m in own)
        for m in own:
            base, side = _side(m)
            neighbour = f"{CROSSTALK_NEIGHBOUR.get(base, '')}_{side}"
            if neighbour in carriers and neighbour not in own:
                signal = signal + crosstalk * carriers[neighbour]
        g = (gains or {}).get(label)
        if g is None:
            g = float(np.exp(rng.uniform(np.log(gain[0]), np.log(gain[1]))))
        out[:, c] = g * signal + noise_floor * _bandlimited(rng, n, rate, (10.0, 0.45 * rate))
    return out


def channel_gains_for(
    *, rng: np.random.Generator, channels: Sequence[str], gain: tuple[float, float],
    fixed: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """One gain (V at full excitation) per EMG channel: ``fixed``'s, else drawn log-uniformly."""
    out = {}
    for label in channels:
        drawn = float(np.exp(rng.uniform(np.log(gain[0]), np.log(gain[1]))))
        out[label] = float((fixed or {}).get(label, drawn))
    return out


def mvc_excitation(
    *, channels: Mapping[str, list[str]], muscles: Sequence[str], time: np.ndarray, rest: float = 0.01,
    ramp: float = 0.2,
) -> dict[str, np.ndarray]:
    """Excitations of a maximal voluntary contraction trial: each channel's muscles contract fully
    in turn (one equal share of the trial each, held between ``ramp`` s ramps), the others rest."""
    u = {m: np.full(len(time), rest) for m in muscles}
    t0, span = float(time[0]), (float(time[-1]) - float(time[0])) / max(len(channels), 1)
    for k, own in enumerate(channels.values()):
        lo, hi = t0 + (k + 0.15) * span, t0 + (k + 0.85) * span
        shape = np.clip(np.minimum((time - lo) / ramp, (hi - time) / ramp), 0.0, 1.0)
        for m in own:
            if m in u:
                u[m] = np.maximum(u[m], rest + (1.0 - rest) * shape)
    return u


def _resample(time: np.ndarray, values: np.ndarray, new_time: np.ndarray) -> np.ndarray:
    """Cubic-spline resampling, held constant beyond the ends."""
    return CubicSpline(time, values, axis=0)(np.clip(new_time, time[0], time[-1]))


def _run_so(
    *, model_file: Path, coordinates: Path, loads: Path, folder: Path, so: Mapping[str, float]
) -> tuple[Any, Any]:
    from musculo.opensim_tools.isolated import run_isolated

    run_isolated(
        "so",
        model=str(model_file),
        coordinates_mot=str(coordinates),
        external_loads_xml=str(loads),
        activation_out=str(folder / "so_activation.sto"),
        force_out=str(folder / "so_force.sto"),
        setup_out=str(folder / "so_setup.xml"),
        reserves_out=str(folder / "so_reserves.json"),
        reserve_optimal_force=float(so.get("reserve_optimal_force", 1.0)),
        residual_optimal_force=float(so.get("residual_optimal_force", 100.0)),
        lowpass_hz=-1.0,
        log=str(folder / "so_opensim.log"),
    )
    return read_sto(folder / "so_activation.sto"), read_sto(folder / "so_force.sto")


DEFAULT_TRUTH: dict[str, Any] = {
    "solver": "so", "mesh_interval": 0.05, "reserve_strength": 50.0, "reserve_weight": 100.0,
}


def _true_muscles(
    *, truth_cfg: Mapping[str, Any], true_model: Any, true_file: Path, coords: Path, loads: Path,
    folder: Path, so: Mapping[str, float], muscles: list[str], time: np.ndarray,
    truth_params: Mapping[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """True excitations, activations and forces (T, M) of one trial at the marker frames."""
    if truth_cfg["solver"] == "moco":
        # the first and last frames are left to the kinematics spline's ends (held in the truth)
        sol = dynamics.solve_excitations(
            model=true_model, coordinates=coords, external_loads=loads, start=float(time[1]),
            end=float(time[-2]), mesh_interval=float(truth_cfg["mesh_interval"]),
            reserve_strength=float(truth_cfg["reserve_strength"]),
            reserve_weight=float(truth_cfg["reserve_weight"]),
        )
        order = [sol.muscles.index(m) for m in muscles]
        excitation = np.clip(_resample(sol.time, sol.excitation[:, order], time), 0.0, 1.0)
        activation = np.clip(_resample(sol.time, sol.activation[:, order], time), 0.0, 1.0)
        force = _resample(sol.time, sol.force[:, order], time)
        peaks = {c: float(np.abs(v).max()) for c, v in sol.reserves.items()}
        joints = [v for c, v in peaks.items() if not c.startswith("pelvis")]
        pelvis = [v for c, v in peaks.items() if c.startswith("pelvis")]
        return excitation, activation, force, {
            "solver": "moco", "max_joint_reserve": max(joints, default=0.0),
            "max_pelvis_residual": max(pelvis, default=0.0), "mesh_points": len(sol.time),
        }
    act_table, force_table = _run_so(model_file=true_file, coordinates=coords, loads=loads,
                                     folder=folder, so=so)
    so_time = act_table.index.to_numpy(dtype=float)
    activation = np.clip(_resample(so_time, act_table[muscles].to_numpy(dtype=float), time), 0.0, 1.0)
    force = _resample(so_time, force_table[muscles].to_numpy(dtype=float), time)
    excitation = invert_activation(
        time=time, activation=activation, tau_act=truth_params["activation_time_constant"],
        tau_deact=truth_params["deactivation_time_constant"],
    )
    return excitation, activation, force, {"solver": "so"}


DEFAULT_WALK_TEMPLATE = "gait10dof18musc-subject01"
"""The recorded walk that ``walk`` trials replay unless their settings name another ``template``."""

SOLE_LENGTH = 0.25
"""m, heel to toe tip of the twin's foot (the toe point of :data:`FOOT_CONTACT_POINTS` is the
metatarsal head at 0.19 m); the centre-of-pressure check measures against it."""


def _walk_template(
    name: str, *, mirrors: Sequence[str | os.PathLike[str]] | None, subject: Path, trial: str
) -> movement.WalkTemplate:
    """The registered recorded walk ``name`` (see :data:`musculo.twin.movement.WALK_TEMPLATES`)."""
    from musculo.datasets import dataset_path

    if name not in movement.WALK_TEMPLATES:
        raise TwinGenerationError(
            f"{subject}: twin.trials.{trial}.template {name!r} is not a registered walk; known: "
            f"{sorted(movement.WALK_TEMPLATES)}"
        )
    src = movement.WALK_TEMPLATES[name]
    coords = dataset_path(name, src.coordinates, mirrors=list(mirrors or []))
    grf = dataset_path(name, src.grf, mirrors=list(mirrors or []))
    return movement.walk_template(coordinates=read_sto(coords), grf=read_sto(grf),
                                  vertical_columns=src.vertical_columns, source=f"{name}/{src.coordinates}")


def _plate_spans(
    grf: dynamics.GroundReactions,
) -> list[tuple[str, tuple[int, int], tuple[float, float]]]:
    """Force plates of a trial: (side, [a, b) frames it carries, size mm).

    A foot that stays down the whole trial (standing, squats) gets one 600 x 160 mm plate; a foot
    that steps gets one 450 x 300 mm plate per contact, as on a walkway of plates where each
    footfall lands on a plate of its own.
    """
    n = len(grf.time)
    out = []
    for s in dynamics.SIDES:
        spans = runs(grf.force[s][:, 1] > 1.0)  # [a, b) frames the foot carries load
        if spans == [(0, n)] or not spans:
            out.append((s, (0, n), (600.0, 160.0)))
            continue
        out += [(s, span, (450.0, 300.0)) for span in spans]
    return sorted(out, key=lambda item: (item[1][0], item[0] != "r"))


def cop_off_sole(
    *, model: Any, mov: movement.Movement, grf: dynamics.GroundReactions, min_force: float = 100.0
) -> dict[str, float]:
    """How far the centre of pressure strays off the sole of its foot, m: ``cop_behind_heel_max``
    and ``cop_beyond_toe_max`` over the frames where a foot carries more than ``min_force`` N and
    more than half the body's load (behind the heel point, beyond the toe tip at
    :data:`SOLE_LENGTH`)."""
    import opensim as osim

    state = model.initSystem()
    cs = model.getCoordinateSet()
    behind, beyond = 0.0, 0.0
    total = sum(grf.force[s][:, 1] for s in dynamics.SIDES)
    for i in range(len(grf.time)):
        feet = [s for s in dynamics.SIDES if grf.force[s][i, 1] > max(min_force, 0.5 * total[i])]
        if not feet:
            continue
        for j, name in enumerate(COORDINATES):
            cs.get(name).setValue(state, float(mov.q[i, j]), False)
        model.realizePosition(state)
        for s in feet:
            foot = model.getBodySet().get(f"calcn_{s}")
            heel = foot.findStationLocationInGround(state, osim.Vec3(0.0, 0.0, 0.0)).get(0)
            tip = foot.findStationLocationInGround(state, osim.Vec3(SOLE_LENGTH, 0.0, 0.0)).get(0)
            cop = float(grf.cop[s][i, 0])
            lo, hi = min(heel, tip), max(heel, tip)
            behind, beyond = max(behind, lo - cop), max(beyond, cop - hi)
    return {"cop_behind_heel_max": float(behind), "cop_beyond_toe_max": float(beyond)}


def generate_twin(
    *,
    subject: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    seed: int | None = None,
    marker_rate: float = 100.0,
    analog_rate: float = 1500.0,
    marker_noise: float = 0.001,
    perturbation: Mapping[str, float] | None = None,
    emg: Mapping[str, Any] | None = None,
    so: Mapping[str, float] | None = None,
    truth: Mapping[str, Any] | None = None,
    max_residual_fraction: float = 0.01,
    first_frame: int = 1,
    mirrors: Sequence[str | os.PathLike[str]] | None = None,
) -> dict[str, Any]:
    """Generate every file of a twin subject (see the module docstring); return a summary.

    Args:
        subject: the twin's ``subject.yaml`` (or its folder); its ``twin`` block gives ``seed``,
            ``height``, ``mass`` and per trial name the movement and its settings
            (``trials: {name: {movement: squat, duration: 2.0, depth: 0.9}}``).
        out_dir: where to write (default: the subject folder); file names are those of the
            subject file (``model``, ``marker_set``, each trial's ``file``) plus ``truth.npz``.
        seed: overrides the twin block's seed.
        marker_rate, analog_rate: Hz; their ratio must be an integer (C3D stores a whole number
            of analog samples per frame).
        marker_noise: SD (m) of the Gaussian noise added to every marker coordinate.
        perturbation: SDs overriding :data:`DEFAULT_PERTURBATION`.
        emg: settings overriding :data:`DEFAULT_EMG`.
        so: ``reserve_optimal_force`` and ``residual_optimal_force`` of static optimization.
        truth: how the true excitations are made: ``solver`` ``so`` (default: OpenSim static
            optimization on the true model, the pipeline's own SO tool, so the truth favours SO) or
            ``moco`` (MocoInverse with compliant tendons, activation dynamics and an
            excitation-effort cost, see :func:`musculo.twin.dynamics.solve_excitations`, with
            ``mesh_interval``, ``reserve_strength`` and ``reserve_weight``). A twin's own
            ``twin.truth`` block in its subject file overrides these keys, and a trial's
            ``truth`` block (``twin.trials.<name>.truth``) overrides them for that trial.
        max_residual_fraction: the generator's own check: inverse dynamics of the true motion with
            the generated ground reactions on the true model must leave pelvis residual force RMS
            below this fraction of body weight, or :class:`TwinGenerationError` is raised.
        first_frame: C3D first frame (the trial's time starts at ``first_frame / marker_rate``).
        mirrors: local dataset mirror folders (config ``data.mirror``) for the recorded walks that
            ``walk`` trials replay (``template``: a dataset of :data:`musculo.twin.movement.WALK_TEMPLATES`).
    """
    from musculo.log import opensim_log_to

    sub: Subject = load_subject(subject)
    twin = dict(sub.raw.get("twin") or {})
    if not twin:
        raise TwinGenerationError(f"{sub.path}: no 'twin' block; only twin subjects can be generated")
    out = Path(out_dir) if out_dir is not None else sub.dir
    out.mkdir(parents=True, exist_ok=True)
    seed = int(twin.get("seed", 0) if seed is None else seed)
    pert = {**DEFAULT_PERTURBATION, **(perturbation or {})}
    emg_cfg = {**DEFAULT_EMG, **(emg or {})}
    ratio = analog_rate / marker_rate
    if abs(ratio - round(ratio)) > 1e-9:
        raise TwinGenerationError(
            f"twin.analog_rate {analog_rate} Hz is not a whole multiple of twin.marker_rate "
            f"{marker_rate} Hz; C3D stores a whole number of analog samples per frame"
        )
    trial_settings = dict(twin.get("trials") or {})
    missing = [t.name for t in sub.trials if t.name not in trial_settings]
    if missing:
        raise TwinGenerationError(
            f"{sub.path}: twin.trials has no settings for trial(s) {missing}; add "
            "'<name>: {movement: ..., ...}' for each"
        )
    truth_cfg = {**DEFAULT_TRUTH, **(truth or {}), **dict(twin.get("truth") or {})}  # the twin's own first
    for where, cfg in [("twin.truth", truth_cfg)] + [
        (f"twin.trials.{name}.truth", {**truth_cfg, **dict(spec.get("truth") or {})})
        for name, spec in trial_settings.items() if isinstance(spec, Mapping)
    ]:
        if cfg["solver"] not in ("moco", "so"):
            raise TwinGenerationError(
                f"{sub.path}: {where}.solver {cfg['solver']!r}: expected 'moco' or 'so'"
            )
    rng = np.random.default_rng(seed)
    height, mass = float(twin.get("height", sub.height)), float(twin.get("mass", sub.mass))
    params = true_parameters(rng=rng, height=height, mass=mass, perturbation=pert)
    # one gain per electrode for the whole session: MVC and movement trials share it
    channel_gains = channel_gains_for(rng=rng, channels=list(sub.emg_channels),
                                      gain=tuple(emg_cfg["gain"]), fixed=twin.get("emg_gains"))
    rot = sub.lab_to_opensim()
    weight = mass * 9.80665
    summary: dict[str, Any] = {"subject": sub.id, "seed": seed, "trials": {}}

    with tempfile.TemporaryDirectory(prefix="musculo-twin-") as tmpname:
        tmp = Path(tmpname)
        opensim_log_to(tmp / "opensim.log", level="warn")
        generic = build_model(name="musculo_twin")
        true_model = build_model(name=f"{sub.id}_true", parameters=params)
        _displace_markers(true_model, rng, float(pert["marker_offset"]))
        true_file = write_model(model=true_model, path=tmp / "true_model.osim")
        truth_params = _muscle_table(true_model)
        generic_params = _muscle_table(generic)
        muscles = list(truth_params["muscles"])
        truth: dict[str, Any] = {
            **truth_params,
            "coordinates": np.array(COORDINATES),
            "generic_max_isometric_force": generic_params["max_isometric_force"],
            "generic_optimal_fiber_length": generic_params["optimal_fiber_length"],
            "generic_tendon_slack_length": generic_params["tendon_slack_length"],
            "parameters": json.dumps({**params.to_dict(), "height": height, "seed": seed}),
        }
        dynamic: list[str] = []
        c3d_files: dict[str, Path] = {}
        for trial in sub.trials:
            settings = dict(trial_settings[trial.name])
            trial_truth = {**truth_cfg, **dict(settings.pop("truth", None) or {})}  # a trial's own first
            kind = settings.pop("movement", "static" if trial.role == "static" else None)
            if kind is None:
                raise TwinGenerationError(f"{sub.path}: twin.trials.{trial.name}.movement is missing")
            template = None
            if kind == "walk":
                template = _walk_template(str(settings.pop("template", DEFAULT_WALK_TEMPLATE)),
                                          mirrors=mirrors, subject=sub.path, trial=trial.name)
            mov = movement.make_movement(movement=kind, model=true_model, rate=marker_rate,
                                         settings=settings, template=template)
            n = len(mov.time)
            time = (first_frame + np.arange(n)) / marker_rate
            mov = movement.Movement(time=time, q=mov.q, load_share_right=mov.load_share_right,
                                    cop_fraction=mov.cop_fraction, horizontal=mov.horizontal)
            grf = dynamics.ground_reactions(model=true_model, movement=mov)
            foot_z = _foot_z(true_model, mov.q[0])
            for s in dynamics.SIDES:
                grf.cop[s][:, 2] = foot_z[s]
            # markers: forward kinematics of the true model + noise, lab frame, mm
            names, xyz = _marker_trajectories(true_model, mov.q)
            xyz = xyz + rng.normal(0.0, marker_noise, xyz.shape)
            markers_mm = (xyz @ rot) * 1000.0
            # force plates (see _plate_spans): one per foot, or one per footfall when the feet step
            analog_time = first_frame / marker_rate + np.arange(n * int(round(ratio))) / analog_rate
            plates, plate_analog = [], []
            for s, (a, b), size in _plate_spans(grf):
                loaded = np.zeros(n, dtype=bool)
                loaded[a:b] = True
                heel_x = float(np.mean(grf.cop[s][a:b, 0]))
                center_lab = np.array([heel_x, 0.0, foot_z[s]]) @ rot * 1000.0
                plate = ForcePlate(center=(float(center_lab[0]), float(center_lab[1])), size=size)
                # plates report the reaction on the body (as ezc3d reads lab files: up in stance)
                force_lab = _resample(time, grf.force[s] * loaded[:, None] @ rot, analog_time)
                cop_lab = _resample(time, grf.cop[s] @ rot * 1000.0, analog_time)
                free = _resample(time, (grf.torque[s] * loaded[:, None] @ rot)[:, 2] * 1000.0, analog_time)
                plates.append(plate)
                plate_analog.append(plate.analog(force=force_lab, cop=cop_lab, free_moment=free))
            emg_volts = np.zeros((len(analog_time), len(sub.emg_channels)))
            trial_summary: dict[str, Any] = {"movement": kind, "frames": n}
            if trial.role == "dynamic":
                folder = tmp / trial.name
                folder.mkdir()
                coords = dynamics.write_coordinates(time=time, q=mov.q, path=folder / "q.sto")
                loads = dynamics.write_external_loads(grf=grf, folder=folder)
                id_table = dynamics.inverse_dynamics(
                    model_file=true_file, coordinates=coords, external_loads=loads, folder=folder
                )
                residuals = dynamics.pelvis_residuals(id_table)
                residuals.update(cop_off_sole(model=true_model, mov=mov, grf=grf))
                worst = max(residuals["pelvis_tx_force_rms"], residuals["pelvis_ty_force_rms"])
                logger.info("twin %s %s: pelvis residuals %s", sub.id, trial.name,
                            {k: round(v, 4) for k, v in residuals.items()})
                if worst > max_residual_fraction * weight:
                    raise TwinGenerationError(
                        f"{sub.path}: twin trial {trial.name}: pelvis residual force RMS {worst:.2f} N "
                        f"exceeds {max_residual_fraction:.2%} of body weight; the movement is not "
                        "dynamically consistent (slow it down or reduce its amplitude)"
                    )
                moment_cols = [
                    f"{c}_force" if c in ("pelvis_tx", "pelvis_ty") else f"{c}_moment" for c in COORDINATES
                ]
                excitation, activation, force, truth_info = _true_muscles(
                    truth_cfg=trial_truth, true_model=true_model, true_file=true_file, coords=coords,
                    loads=loads, folder=folder, so=so or {}, muscles=muscles, time=time,
                    truth_params=truth_params,
                )
                trial_summary["truth"] = truth_info
                truth.update({
                    f"{trial.name}/time": time,
                    f"{trial.name}/excitation": excitation,
                    f"{trial.name}/activation": activation,
                    f"{trial.name}/force": force,
                    f"{trial.name}/q": mov.q,
                    f"{trial.name}/moments": id_table[moment_cols].to_numpy(dtype=float),
                    f"{trial.name}/residuals": json.dumps(residuals),
                    f"{trial.name}/truth": json.dumps(truth_info),
                })  # fmt: skip
                dynamic.append(trial.name)
                if sub.emg_channels:
                    u_analog = {
                        m: _resample(time, excitation[:, muscles.index(m)], analog_time)
                        for m in muscles if _side(m)[0] in SURFACE_MUSCLES
                    }
                    emg_volts = synthesize_emg(
                        rng=rng, channels=sub.emg_channels, excitation=u_analog, rate=analog_rate,
                        band=tuple(emg_cfg["band"]), gain=tuple(emg_cfg["gain"]),
                        crosstalk=float(emg_cfg["crosstalk"]), noise_floor=float(emg_cfg["noise_floor"]),
                        gains=channel_gains,
                    )
                trial_summary.update(residuals=residuals,
                                     peak_excitation={m: float(excitation[:, i].max())
                                                      for i, m in enumerate(muscles)})
            elif trial.role == "mvc" and sub.emg_channels:
                surface = [m for m in muscles if _side(m)[0] in SURFACE_MUSCLES]
                emg_volts = synthesize_emg(
                    rng=rng, channels=sub.emg_channels,
                    excitation=mvc_excitation(channels=sub.emg_channels, muscles=surface, time=analog_time),
                    rate=analog_rate, band=tuple(emg_cfg["band"]), gain=tuple(emg_cfg["gain"]),
                    crosstalk=float(emg_cfg["crosstalk"]), noise_floor=float(emg_cfg["noise_floor"]),
                    gains=channel_gains,
                )
            elif sub.emg_channels:
                emg_volts = emg_cfg["noise_floor"] * rng.normal(size=emg_volts.shape)
            if not isinstance(trial.file, str):
                raise TwinGenerationError(f"{sub.path}: trial {trial.name}: a twin's file must be a path")
            c3d_files[trial.name] = out / trial.file
            write_c3d(
                path=tmp / f"{trial.name}.c3d", point_rate=marker_rate, marker_labels=names,
                markers_mm=markers_mm, analog_rate=analog_rate, plates=plates,
                plate_analog=plate_analog, emg_labels=list(sub.emg_channels), emg_volts=emg_volts,
                first_frame=first_frame,
            )
            summary["trials"][trial.name] = trial_summary
        truth["trials"] = np.array(dynamic)
        model_ref, marker_ref = sub.raw["model"], sub.raw["marker_set"]
        if not isinstance(model_ref, str) or not isinstance(marker_ref, str):
            raise TwinGenerationError(f"{sub.path}: a twin's model and marker_set must be paths")
        write_model(model=generic, path=tmp / "generic.osim", marker_set_path=tmp / "markerset.xml")
        # publish: every file atomically, once everything succeeded
        pairs = [(tmp / "generic.osim", out / model_ref), (tmp / "markerset.xml", out / marker_ref)]
        pairs += [(tmp / f"{name}.c3d", path) for name, path in c3d_files.items()]
        for src, dst in pairs:
            dst.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(dst) as target:
                Path(target).write_bytes(src.read_bytes())
        with atomic_output(out / "truth.npz") as target, open(target, "wb") as handle:
            np.savez(handle, **truth)
    logger.info("twin %s generated in %s (seed %d)", sub.id, out, seed)
    return summary


def load_truth(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``truth.npz`` into a dict (see :data:`TRUTH_KEYS`)."""
    path = Path(path)
    if not path.is_file():
        raise TwinGenerationError(f"{path}: twin truth file not found; run the twin_generate rule")
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
