"""Dynamics of a twin movement: ground reactions, inverse dynamics and muscle excitations.

Ground reaction forces are the external loads that make the movement dynamically consistent: the
generalized forces inverse dynamics asks of the planar pelvis joint (no external loads applied) are
the net force and moment the ground must supply. They are split between the feet by the movement's
load share, and the centres of pressure are placed along the feet so that the moment balances.
Muscle excitations come from OpenSim Moco's MocoInverse on the true model with DeGroote-Fregly
muscles and compliant tendons (implicit tendon dynamics).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.interpolate import CubicSpline

from musculo import logger
from musculo.errors import MusculoError
from musculo.io.tables import read_sto, write_sto
from musculo.twin.model import COORDINATES, FOOT_CONTACT_POINTS
from musculo.twin.movement import Movement

SIDES = ("r", "l")


class TwinDynamicsError(MusculoError):
    """The twin's dynamics cannot be computed (inconsistent movement, solver failure)."""


@dataclass
class GroundReactions:
    """Ground reaction on each foot, in the OpenSim ground frame (Y up)."""

    time: np.ndarray
    """(T,) s."""
    force: dict[str, np.ndarray]
    """side -> (T, 3) force on the foot, N."""
    cop: dict[str, np.ndarray]
    """side -> (T, 3) centre of pressure, m (y = 0, the floor)."""
    torque: dict[str, np.ndarray]
    """side -> (T, 3) free moment, N m (zero for the planar model)."""


def _speed_order(model: Any, state: Any) -> list[int]:
    """Index into the state's mobility vector of each coordinate in COORDINATES order."""
    cs = model.getCoordinateSet()
    for i, name in enumerate(COORDINATES):
        cs.get(name).setSpeedValue(state, float(i + 1))
    u = state.getU()
    index = {int(round(u.get(j))) - 1: j for j in range(u.size())}
    return [index[i] for i in range(len(COORDINATES))]


def generalized_forces(*, model: Any, time: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Inverse dynamics without external loads: (T, 9) generalized forces in COORDINATES order.

    Velocities and accelerations are derivatives of a cubic spline through ``q``.
    """
    import opensim as osim

    spline = CubicSpline(time, q, axis=0)
    qd, qdd = spline(time, 1), spline(time, 2)
    state = model.initSystem()
    forces = model.getForceSet()
    for i in range(forces.getSize()):  # inverse dynamics: no muscle or other model forces
        forces.get(i).setAppliesForce(state, False)
    order = _speed_order(model, state)
    cs = model.getCoordinateSet()
    solver = osim.InverseDynamicsSolver(model)
    out = np.zeros_like(q)
    udot = osim.Vector(len(COORDINATES), 0.0)
    for i in range(len(time)):
        for j, name in enumerate(COORDINATES):
            coord = cs.get(name)
            coord.setValue(state, float(q[i, j]), False)
            coord.setSpeedValue(state, float(qd[i, j]))
            udot.set(order[j], float(qdd[i, j]))
        model.realizeVelocity(state)
        tau = solver.solve(state, udot)
        out[i] = [tau.get(order[j]) for j in range(len(COORDINATES))]
    return out


def ground_reactions(*, model: Any, movement: Movement) -> GroundReactions:
    """Ground reactions consistent with ``movement`` on ``model`` (see the module docstring)."""
    import opensim as osim

    tau = generalized_forces(model=model, time=movement.time, q=movement.q)
    fx, fy, moment_pelvis = tau[:, 1], tau[:, 2], tau[:, 0]
    tx, ty = movement.q[:, 1], movement.q[:, 2]
    moment_origin = moment_pelvis + tx * fy - ty * fx
    if np.any(fy < 1.0):
        worst = float(movement.time[int(np.argmin(fy))])
        raise TwinDynamicsError(
            f"twin movement needs a pulling ground force (vertical {fy.min():.1f} N at t = "
            f"{worst:.3f} s); slow the movement down or reduce its amplitude"
        )
    state = model.initSystem()
    cs = model.getCoordinateSet()
    heel, toe = osim.Vec3(*FOOT_CONTACT_POINTS["heel"]), osim.Vec3(*FOOT_CONTACT_POINTS["toe"])
    n = len(movement.time)
    base = np.zeros((n, 2))
    for i in range(n):
        for j, name in enumerate(COORDINATES):
            cs.get(name).setValue(state, float(movement.q[i, j]), False)
        model.realizePosition(state)
        for k, side in enumerate(SIDES):
            foot = model.getBodySet().get(f"calcn_{side}")
            h = foot.findStationLocationInGround(state, heel).get(0)
            t = foot.findStationLocationInGround(state, toe).get(0)
            base[i, k] = h + movement.cop_fraction[i, k] * (t - h)
    share = np.column_stack([movement.load_share_right, 1.0 - movement.load_share_right])
    shift = (moment_origin - np.sum(base * share * fy[:, None], axis=1)) / fy
    force, cop, torque = {}, {}, {}
    for k, side in enumerate(SIDES):
        force[side] = np.column_stack([share[:, k] * fx, share[:, k] * fy, np.zeros(n)])
        z = model.getBodySet().get(f"calcn_{side}").getMassCenter().get(2)
        cop[side] = np.column_stack([base[:, k] + shift, np.zeros(n), np.full(n, z)])
        torque[side] = np.zeros((n, 3))
    return GroundReactions(time=movement.time.copy(), force=force, cop=cop, torque=torque)


def grf_table(grf: GroundReactions) -> pd.DataFrame:
    """The ground reactions as an OpenSim-style table (ground_force_r_vx ... ground_torque_l_z)."""
    cols: dict[str, np.ndarray] = {}
    for side in SIDES:
        for a, axis in enumerate("xyz"):
            cols[f"ground_force_{side}_v{axis}"] = grf.force[side][:, a]
        for a, axis in enumerate("xyz"):
            cols[f"ground_force_{side}_p{axis}"] = grf.cop[side][:, a]
        for a, axis in enumerate("xyz"):
            cols[f"ground_torque_{side}_{axis}"] = grf.torque[side][:, a]
    return pd.DataFrame(cols, index=pd.Index(grf.time, name="time"))


def write_external_loads(
    *, grf: GroundReactions, folder: str | os.PathLike[str], name: str = "grf"
) -> Path:
    """Write ``<name>.mot`` and ``<name>.xml`` (an OpenSim ExternalLoads) into ``folder``."""
    import opensim as osim

    folder = Path(folder)
    mot = write_sto(folder / f"{name}.mot", grf_table(grf), name=name)
    loads = osim.ExternalLoads()
    loads.setDataFileName(str(mot.resolve()))
    for side in SIDES:
        ext = osim.ExternalForce()
        ext.setName(f"ground_{side}")
        ext.setAppliedToBodyName(f"calcn_{side}")
        ext.setForceExpressedInBodyName("ground")
        ext.setPointExpressedInBodyName("ground")
        ext.setForceIdentifier(f"ground_force_{side}_v")
        ext.setPointIdentifier(f"ground_force_{side}_p")
        ext.setTorqueIdentifier(f"ground_torque_{side}_")
        loads.cloneAndAppend(ext)
    xml = folder / f"{name}.xml"
    loads.printToXML(str(xml))
    return xml


def write_coordinates(
    *, time: np.ndarray, q: np.ndarray, path: str | os.PathLike[str]
) -> Path:
    """Write coordinate values (rad, m) as an OpenSim .sto with coordinate names as columns."""
    df = pd.DataFrame(q, columns=list(COORDINATES), index=pd.Index(time, name="time"))
    return write_sto(path, df, name="coordinates", in_degrees=False)


def inverse_dynamics(
    *, model_file: str | os.PathLike[str], coordinates: str | os.PathLike[str],
    external_loads: str | os.PathLike[str], folder: str | os.PathLike[str],
) -> pd.DataFrame:
    """OpenSim's InverseDynamicsTool on the given files; returns its output table (N, N m)."""
    import opensim as osim

    folder = Path(folder)
    tool = osim.InverseDynamicsTool()
    tool.setModelFileName(str(Path(model_file).resolve()))
    tool.setCoordinatesFileName(str(Path(coordinates).resolve()))
    tool.setExternalLoadsFileName(str(Path(external_loads).resolve()))
    tool.setLowpassCutoffFrequency(-1.0)
    excluded = osim.ArrayStr()
    excluded.append("Muscles")
    tool.setExcludedForces(excluded)
    times = read_sto(coordinates).index
    tool.setStartTime(float(times[0]))
    tool.setEndTime(float(times[-1]))
    tool.setResultsDir(str(folder.resolve()))
    tool.setOutputGenForceFileName("id.sto")
    model = osim.Model(str(Path(model_file).resolve()))
    model.initSystem()
    tool.setModel(model)
    if not tool.run():
        raise TwinDynamicsError(f"{model_file}: InverseDynamicsTool failed on {coordinates}")
    return read_sto(folder / "id.sto")


def pelvis_residuals(id_table: pd.DataFrame) -> dict[str, float]:
    """RMS and peak of the pelvis generalized forces of an inverse-dynamics table."""
    out: dict[str, float] = {}
    for col in ("pelvis_tx_force", "pelvis_ty_force", "pelvis_tilt_moment"):
        values = id_table[col].to_numpy()
        out[f"{col}_rms"] = float(np.sqrt(np.mean(values**2)))
        out[f"{col}_max"] = float(np.max(np.abs(values)))
    return out


SOLVER = "MocoInverse"
"""OpenSim tool whose solution is a twin's truth (no estimator or pipeline stage uses Moco)."""

MUSCLE_MODEL = "DeGrooteFregly2016Muscle"
"""Muscle model of the truth problem (the pipeline's models use Millard2012EquilibriumMuscle)."""

COCONTRACTION_PAIRS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "hip_flexion": (("iliopsoas", "rect_fem"), ("glut_max", "hamstrings")),
    "knee_angle": (("vasti", "rect_fem"), ("hamstrings", "bifemsh", "gastroc")),
    "ankle_angle": (("tib_ant",), ("soleus", "gastroc")),
}
"""Per joint, the flexor (or dorsiflexor) and extensor (or plantarflexor) groups of one co-contraction
synergy (muscle names without side suffix)."""


@dataclass
class MuscleSolution:
    """Muscle states of a MocoInverse solution, on its mesh times."""

    time: np.ndarray
    muscles: list[str]
    excitation: np.ndarray
    """(T, M) 0..1."""
    activation: np.ndarray
    force: np.ndarray
    """(T, M) tendon force, N."""
    reserves: dict[str, np.ndarray]
    """coordinate -> (T,) reserve actuator generalized force (N m or N)."""
    info: dict[str, Any]
    """Solver facts: status, iterations, objective, seconds, mesh intervals, goal weights."""


def cocontraction_reference(
    *, time: np.ndarray, moments: np.ndarray, coordinates: list[str], muscles: list[str],
    base: float, gain: float, rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Synergy-structured co-contraction excitations (T, M) that the truth problem tracks.

    One synergy per joint of :data:`COCONTRACTION_PAIRS`: its activation is
    ``base + gain * |tau| / max|tau|`` (co-contraction rises with the joint's load, ``moments`` (T, C)
    in ``coordinates`` order) and drives every muscle of both antagonist groups with a weight drawn in
    [0.6, 1.0] (1 without ``rng``). A muscle in several synergies takes the largest drive.
    """
    ref = np.zeros((len(time), len(muscles)))
    for joint, (flexors, extensors) in COCONTRACTION_PAIRS.items():
        for side in SIDES:
            coord = f"{joint}_{side}"
            if coord not in coordinates:
                continue
            tau = np.abs(moments[:, coordinates.index(coord)])
            level = base + gain * tau / max(float(tau.max()), 1e-9)
            for base_name in flexors + extensors:
                m = f"{base_name}_{side}"
                if m in muscles:
                    w = 1.0 if rng is None else float(rng.uniform(0.6, 1.0))
                    j = muscles.index(m)
                    ref[:, j] = np.maximum(ref[:, j], w * level)
    return np.clip(ref, 0.0, 1.0)


def solve_truth(
    *, model_file: str | os.PathLike[str], coordinates: str | os.PathLike[str],
    external_loads: str | os.PathLike[str], mesh_interval: float, reference: pd.DataFrame | None = None,
    cocontraction_weight: float = 1.0, reserve_strength: float = 200.0, reserve_weight: float = 20.0,
    residual_strength: float = 1000.0, residual_weight: float = 100.0, tolerance: float = 1e-2,
    compliant_tendons: bool = True, max_iterations: int = 1000,
) -> MuscleSolution:
    """The truth: MocoInverse with DeGroote-Fregly 2016 muscles, excitation effort + co-contraction.

    The true model's Millard muscles are replaced by DeGroote-Fregly 2016 muscles (with implicit
    tendon compliance dynamics if ``compliant_tendons``) with first-order activation dynamics. The
    cost is the squared excitation effort plus ``cocontraction_weight`` times the squared distance
    of the excitations to ``reference`` (columns: muscle names; e.g. :func:`cocontraction_reference`),
    plus weighted reserve (joints) and residual (pelvis) actuator effort. Raises
    :class:`TwinDynamicsError` when the solver does not converge.
    """
    import time as _time

    import opensim as osim

    model = osim.Model(str(Path(model_file).resolve()))
    processor = osim.ModelProcessor(model)
    processor.append(osim.ModOpAddExternalLoads(str(Path(external_loads).resolve())))
    processor.append(osim.ModOpReplaceMusclesWithDeGrooteFregly2016())
    processor.append(osim.ModOpIgnorePassiveFiberForcesDGF())
    processor.append(osim.ModOpScaleActiveFiberForceCurveWidthDGF(1.5))
    if compliant_tendons:
        processor.append(osim.ModOpUseImplicitTendonComplianceDynamicsDGF())
    else:
        processor.append(osim.ModOpIgnoreTendonCompliance())
    processor.append(osim.ModOpAddReserves(1.0, 1.0, True))
    solved = processor.process()
    reserve_paths: dict[str, str] = {}
    for i in range(solved.getForceSet().getSize()):
        actuator = osim.CoordinateActuator.safeDownCast(solved.updForceSet().get(i))
        if actuator is None:
            continue
        coord = actuator.get_coordinate()
        actuator.setOptimalForce(residual_strength if coord.startswith("pelvis") else reserve_strength)
        reserve_paths[coord] = f"/forceset/{actuator.getName()}"
    solved.finalizeConnections()
    solved.initSystem()
    muscles = [solved.getMuscles().get(i).getName() for i in range(solved.getMuscles().getSize())]
    table = osim.TableProcessor(str(Path(coordinates).resolve()))
    table.append(osim.TabOpUseAbsoluteStateNames())
    inverse = osim.MocoInverse()
    inverse.setName("twin_truth")
    inverse.setModel(osim.ModelProcessor(solved))
    inverse.setKinematics(table)
    times = read_sto(coordinates).index
    inverse.set_initial_time(float(times[0]))
    inverse.set_final_time(float(times[-1]))
    inverse.set_mesh_interval(mesh_interval)
    inverse.set_kinematics_allow_extra_columns(True)
    inverse.set_convergence_tolerance(tolerance)
    inverse.set_constraint_tolerance(tolerance)
    inverse.set_max_iterations(max_iterations)
    study = inverse.initialize()
    problem = study.updProblem()
    effort = osim.MocoControlGoal.safeDownCast(problem.updGoal("excitation_effort"))
    for coord, path in reserve_paths.items():
        effort.setWeightForControl(path, residual_weight if coord.startswith("pelvis") else reserve_weight)
    weights = {"effort": 1.0, "cocontraction": 0.0}
    if reference is not None and cocontraction_weight > 0:
        ref = reference.copy()
        ref.columns = [f"/forceset/{c}" for c in ref.columns]
        ref_table = osim.TimeSeriesTable()
        labels = osim.StdVectorString()
        for c in ref.columns:
            labels.append(str(c))
        ref_table.setColumnLabels(labels)
        for t, row in zip(ref.index, ref.to_numpy(dtype=float), strict=True):
            ref_table.appendRow(float(t), osim.RowVector.createFromMat(row))
        tracking = osim.MocoControlTrackingGoal("cocontraction", float(cocontraction_weight))
        tracking.setReference(osim.TableProcessor(ref_table))
        tracking.setAllowUnusedReferences(True)
        problem.addGoal(tracking)
        weights["cocontraction"] = float(cocontraction_weight)
    start = _time.perf_counter()
    solution = study.solve()
    seconds = _time.perf_counter() - start
    info = {
        "solver": SOLVER, "muscle_model": MUSCLE_MODEL, "compliant_tendons": bool(compliant_tendons),
        "success": bool(solution.success()), "status": str(solution.getStatus()),
        "iterations": int(solution.getNumIterations()), "seconds": round(seconds, 2),
        "mesh_interval": float(mesh_interval), "weights": weights,
    }
    if not solution.success():
        solution.unseal()
        raise TwinDynamicsError(
            f"{coordinates}: MocoInverse did not converge ({solution.getStatus()}, "
            f"{solution.getNumIterations()} iterations); raise twin.moco.mesh_interval or shorten the trial"
        )
    info["objective"] = float(solution.getObjective())
    time = np.array(solution.getTimeMat()).ravel()
    control_names = list(solution.getControlNames())
    controls = np.array(solution.getControlsTrajectoryMat())
    state_names = list(solution.getStateNames())
    states = np.array(solution.getStatesTrajectoryMat())
    excitation = np.column_stack([controls[:, control_names.index(f"/forceset/{m}")] for m in muscles])
    activation = np.column_stack(
        [states[:, state_names.index(f"/forceset/{m}/activation")] for m in muscles]
    )
    outputs = osim.StdVectorString()
    outputs.append(".*tendon_force")
    analysed = study.analyze(solution, outputs)
    labels = list(analysed.getColumnLabels())
    mat = analysed.getMatrix().to_numpy()
    force = np.column_stack([mat[:, labels.index(f"/forceset/{m}|tendon_force")] for m in muscles])
    reserves = {}
    for coord, path in reserve_paths.items():
        strength = residual_strength if coord.startswith("pelvis") else reserve_strength
        reserves[coord] = controls[:, control_names.index(path)] * strength
    logger.info("MocoInverse truth: %d mesh points, objective %.4g, %d iterations, %.1f s",
                len(time), info["objective"], info["iterations"], seconds)
    return MuscleSolution(time=time, muscles=muscles, excitation=excitation, activation=activation,
                          force=force, reserves=reserves, info=info)
