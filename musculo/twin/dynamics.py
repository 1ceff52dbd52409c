"""Dynamics of a twin movement: ground reactions, inverse dynamics and muscle excitations.

Ground reaction forces are the external loads that make the movement dynamically consistent: the
generalized forces inverse dynamics asks of the planar pelvis joint (no external loads applied) are
the net force and moment the ground must supply. They are split between the feet by the movement's
load share (a replayed walk also brings its recorded forward force on each foot, braking on the
leading foot and propulsion on the trailing one, and only the rest is split by load share), and
each centre of pressure moves off its nominal point along its foot, in proportion to the foot's
load share, so that the moment balances.
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
    if movement.horizontal is None:
        fx_feet = share * fx[:, None]
    else:  # the recording's pattern, plus the rest of the required force by load share
        fx_feet = movement.horizontal + share * (fx - movement.horizontal.sum(axis=1))[:, None]
    # each centre of pressure moves off its nominal point by a shift proportional to its load share
    # (all of it in single support), so that the moments about the origin balance
    moment_base = np.sum(base * share * fy[:, None], axis=1)
    delta = (moment_origin - moment_base) / (fy * np.maximum(np.sum(share**2, axis=1), 1e-9))
    force, cop, torque = {}, {}, {}
    for k, side in enumerate(SIDES):
        force[side] = np.column_stack([fx_feet[:, k], share[:, k] * fy, np.zeros(n)])
        z = model.getBodySet().get(f"calcn_{side}").getMassCenter().get(2)
        cop[side] = np.column_stack([base[:, k] + delta * share[:, k], np.zeros(n), np.full(n, z)])
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


def solve_excitations(
    *, model: Any, coordinates: str | os.PathLike[str], external_loads: str | os.PathLike[str],
    mesh_interval: float, reserve_strength: float = 50.0, reserve_weight: float = 100.0,
    tolerance: float = 1e-3, start: float | None = None, end: float | None = None,
) -> MuscleSolution:
    """Muscle excitations reproducing the motion: MocoInverse with compliant tendons.

    ``model`` is the true model; its muscles become DeGroote-Fregly 2016 muscles with implicit
    tendon compliance dynamics and activation dynamics, and the cost is the integral of squared
    excitations (not static optimisation's instantaneous squared activations with rigid tendons).
    Reserve actuators of ``reserve_strength`` on every coordinate keep the problem feasible; their
    controls cost ``reserve_weight`` times a muscle's, so the muscles carry the load. Tendon forces
    come from the solution's normalised tendon force states.
    """
    import opensim as osim

    processor = osim.ModelProcessor(model)
    processor.append(osim.ModOpAddExternalLoads(str(Path(external_loads).resolve())))
    processor.append(osim.ModOpReplaceMusclesWithDeGrooteFregly2016())
    processor.append(osim.ModOpScaleActiveFiberForceCurveWidthDGF(1.5))
    processor.append(osim.ModOpIgnorePassiveFiberForcesDGF())
    processor.append(osim.ModOpUseImplicitTendonComplianceDynamicsDGF())
    processor.append(osim.ModOpAddReserves(reserve_strength, 1.0, True))
    times = read_sto(coordinates).index.to_numpy(dtype=float)
    inverse = osim.MocoInverse()
    inverse.setName("twin")
    inverse.setModel(processor)
    inverse.setKinematics(osim.TableProcessor(str(Path(coordinates).resolve())))
    inverse.set_initial_time(float(times[0] if start is None else start))
    inverse.set_final_time(float(times[-1] if end is None else end))
    inverse.set_mesh_interval(mesh_interval)
    inverse.set_kinematics_allow_extra_columns(True)
    inverse.set_convergence_tolerance(tolerance)
    inverse.set_constraint_tolerance(tolerance)
    study = inverse.initialize()
    effort = osim.MocoControlGoal.safeDownCast(study.updProblem().updGoal("excitation_effort"))
    effort.setWeightForControlPattern(".*reserve.*", float(reserve_weight))
    solution = study.solve()
    if not solution.success():
        status = solution.getStatus()
        solution.unseal()
        raise TwinDynamicsError(
            f"{coordinates}: MocoInverse did not converge ({status}); change twin.truth.mesh_interval, "
            "shorten the trial, or set twin.truth.solver: so"
        )
    rep = study.getProblem().createRep()  # owns the model: keep it alive while the model is used
    solved_model = rep.getModelBase()
    muscle_set = solved_model.getMuscles()
    muscles = [muscle_set.get(i).getName() for i in range(muscle_set.getSize())]
    max_force = np.array([muscle_set.get(i).getMaxIsometricForce() for i in range(muscle_set.getSize())])
    time = np.array(solution.getTimeMat()).ravel()
    control_names = list(solution.getControlNames())
    controls = np.array(solution.getControlsTrajectoryMat())
    state_names = list(solution.getStateNames())
    states = np.array(solution.getStatesTrajectoryMat())

    def state(path: str) -> np.ndarray:
        return states[:, state_names.index(path)]

    excitation = np.column_stack([controls[:, control_names.index(f"/forceset/{m}")] for m in muscles])
    activation = np.column_stack([state(f"/forceset/{m}/activation") for m in muscles])
    force = np.column_stack([state(f"/forceset/{m}/normalized_tendon_force") for m in muscles]) * max_force
    reserves = {}
    for name in control_names:
        if name.startswith("/forceset/reserve_"):
            coord = name.rsplit("/", 1)[-1].removeprefix("reserve_")
            coord = coord.split("jointset_")[-1].split("_", 1)[-1] if "jointset_" in coord else coord
            reserves[coord] = controls[:, control_names.index(name)] * reserve_strength
    logger.info(
        "MocoInverse: %d mesh points, objective %.4g, %d iterations, largest reserve %.2f",
        len(time), solution.getObjective(), solution.getNumIterations(),
        max((float(np.abs(v).max()) for v in reserves.values()), default=0.0),
    )
    return MuscleSolution(
        time=time, muscles=muscles, excitation=excitation, activation=activation, force=force,
        reserves=reserves,
    )
