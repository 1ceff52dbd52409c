"""Static optimisation of all frames of a trial at once: the problem of OpenSim's StaticOptimization.

OpenSim's StaticOptimization (activation exponent 2, muscle physiology on) solves, frame by frame,

    minimise  sum_i x_i ** 2   over every actuator's control x_i (muscles, reserves, residuals)
    subject to  sum_m r_mc F_m x_m + sum_a o_ac x_a = tau_c   for every free coordinate c
                min_control_i <= x_i <= max_control_i

where ``F_m`` is the muscle's active fibre force along the tendon at full activation with a rigid
tendon (``calcInextensibleTendonActiveFiberForce``: force-length, force-velocity, pennation; no
passive force), ``r_mc`` the moment arms, ``o_ac`` a coordinate actuator's optimal force and
``tau_c`` the generalised force the motion needs with muscles excluded (inverse dynamics with the
same external loads and filtered kinematics). The constraint is linear in ``x`` and the cost
strictly convex, so each frame has one solution. Here every frame is solved at once through the
dual: ``x(lambda) = clip(A^T lambda, lo, hi)``, with a batched semismooth Newton iteration on the
multipliers (exact up to round-off, no per-frame loop).

Muscle lengths, speeds and moment arms come from the fitted polynomial paths
(:mod:`musculo.opensim_tools.path_fit`) so they are those of every other stage. The force-length
and force-velocity curves are the model's own: tabulated from each muscle through OpenSim
(``calcActiveFiberForceAlongTendon``) once per trial and interpolated.
"""

from __future__ import annotations

import json
import math
import time as _time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from musculo import logger
from musculo.errors import InputDataError
from musculo.opensim_tools.common import (
    OpenSimToolError,
    OutputCheckError,
    PathLike,
    import_opensim,
    load_model,
    publish,
    require_file,
    route_opensim_log,
    stats,
    table_times,
    time_window,
    work_dir,
)
from musculo.opensim_tools.inverse_dynamics import check_external_loads
from musculo.opensim_tools.path_fit import PolynomialPaths, muscle_kinematics
from musculo.opensim_tools.static_optimization import reserve_force_set

#: normalised fibre lengths and velocities at which each muscle's curves are tabulated
LENGTH_GRID = np.linspace(0.0, 2.0, 401)
VELOCITY_GRID = np.linspace(-1.2, 1.2, 401)


class MuscleCurves:
    """Each muscle's active force-length and force-velocity multipliers, from OpenSim, tabulated."""

    def __init__(self, model: Any, muscles: Sequence[str]):
        opensim = import_opensim()
        self.muscles = list(muscles)
        mset = model.getMuscles()
        n = len(self.muscles)
        self.max_force = np.empty(n)
        self.optimal_length = np.empty(n)
        self.slack_length = np.empty(n)
        self.width = np.empty(n)
        self.max_velocity = np.empty(n)
        self.min_length = np.empty(n)
        self.fal = np.empty((n, LENGTH_GRID.size))
        self.fv = np.empty((n, VELOCITY_GRID.size))
        cache: dict[tuple[float, ...], tuple[np.ndarray, np.ndarray]] = {}
        for k, name in enumerate(self.muscles):
            base = mset.get(name)
            muscle = None
            for cls in (opensim.Millard2012EquilibriumMuscle, opensim.Thelen2003Muscle):
                muscle = cls.safeDownCast(base)
                if muscle is not None:
                    break
            if muscle is None:
                raise InputDataError(
                    f"muscle {name} is a {base.getConcreteClassName()}; the batched static "
                    "optimisation supports Millard2012EquilibriumMuscle and Thelen2003Muscle: set "
                    "opensim.so_method to opensim for this model"
                )
            f0, lopt = muscle.getMaxIsometricForce(), muscle.getOptimalFiberLength()
            alpha0, vmax = muscle.getPennationAngleAtOptimalFiberLength(), muscle.getMaxContractionVelocity()
            self.max_force[k], self.optimal_length[k] = f0, lopt
            self.slack_length[k], self.max_velocity[k] = muscle.getTendonSlackLength(), vmax
            self.width[k] = lopt * math.sin(alpha0)
            self.min_length[k] = muscle.getMinimumFiberLength()

            def along(lce: float, dlce: float, m: Any = muscle, f: float = f0) -> float:
                return float(m.calcActiveFiberForceAlongTendon(1.0, lce, dlce)) / f

            def cos_pen(lce: float, w: float = self.width[k]) -> float:
                return math.sqrt(max(lce * lce - w * w, 0.0)) / lce

            # a few points identify the curves; muscles with the same ones share a table
            probe = (
                *(along(x * lopt, 0.0) / cos_pen(x * lopt) for x in (0.7, 1.0, 1.3)),
                *(along(lopt, v * lopt * vmax) / cos_pen(lopt) for v in (-0.5, 0.5)),
            )
            key = tuple(round(p, 12) for p in probe)
            if key not in cache:
                lce = np.maximum(LENGTH_GRID * lopt, self.min_length[k] * 1.0000001)
                fal = np.array([along(x, 0.0) / cos_pen(x) for x in lce])
                fal[LENGTH_GRID * lopt <= self.min_length[k]] = 0.0
                ref = along(lopt, 0.0)
                fv = np.array([along(lopt, v * lopt * vmax) for v in VELOCITY_GRID]) / ref
                cache[key] = (fal, fv)
            self.fal[k], self.fv[k] = cache[key]
        self.tables = len(cache)

    def force_at_full_activation(self, mtu_length: np.ndarray, mtu_velocity: np.ndarray) -> np.ndarray:
        """Active fibre force along the tendon at activation 1 with a rigid tendon (T, M), N."""
        along = mtu_length - self.slack_length
        lce = np.sqrt(np.maximum(along, 0.0) ** 2 + self.width**2)
        cos_pen = np.where(along > 0, along / lce, 0.0)
        dlce = mtu_velocity * cos_pen
        out = np.empty_like(mtu_length)
        for k in range(len(self.muscles)):
            fal = np.interp(lce[:, k] / self.optimal_length[k], LENGTH_GRID, self.fal[k])
            fv = np.interp(
                dlce[:, k] / (self.optimal_length[k] * self.max_velocity[k]), VELOCITY_GRID, self.fv[k]
            )
            out[:, k] = self.max_force[k] * fal * fv * cos_pen[:, k]
        out[(lce <= self.min_length) | (along <= 0)] = 0.0
        return out


def solve_batched_qp(
    a: np.ndarray,
    b: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    tol: float = 1e-9,
    max_iter: int = 1000,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Solve ``min ||x||^2 s.t. A x = b, lower <= x <= upper`` for every frame at once.

    ``a`` (T, C, N), ``b`` (T, C), bounds (N,). Semismooth Newton on the dual with a backtracking
    line search per frame. Returns ``x`` (T, N) and ``{"iterations", "max_residual"}``. Raises
    when a frame is infeasible within the bounds (its residual does not vanish).
    """
    t_n, c_n, _ = a.shape
    lam = np.zeros((t_n, c_n))
    scale = 1.0 + np.abs(b).max(axis=1)

    def primal(lmb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z = np.einsum("tcn,tc->tn", a, lmb)
        x = np.clip(z, lower, upper)
        dual = 0.5 * (x * x).sum(axis=1) - (z * x).sum(axis=1) + (lmb * b).sum(axis=1)
        return z, x, dual

    z, x, dual = primal(lam)
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 - reported after the loop
        resid = b - np.einsum("tcn,tn->tc", a, x)
        err = np.abs(resid).max(axis=1) / scale
        active = err > tol
        if not active.any():
            break
        free = ((z > lower) & (z < upper)).astype(float)
        jac = np.einsum("tcn,tn,tdn->tcd", a[active], free[active], a[active])
        jac += 1e-12 * np.eye(c_n) * np.trace(jac, axis1=1, axis2=2)[:, None, None]
        step = np.linalg.solve(jac, resid[active][..., None])[..., 0]
        slope = (resid[active] * step).sum(axis=1)
        size = np.ones(active.sum())
        base, base_dual = lam[active], dual[active]
        new_lam = base + step
        for _ in range(40):
            zz = np.einsum("tcn,tc->tn", a[active], new_lam)
            xx = np.clip(zz, lower, upper)
            dd = 0.5 * (xx * xx).sum(axis=1) - (zz * xx).sum(axis=1) + (new_lam * b[active]).sum(axis=1)
            ok = dd >= base_dual + 1e-4 * size * slope - 1e-12 * np.abs(base_dual)
            if ok.all():
                break
            size = np.where(ok, size, 0.5 * size)
            new_lam = base + size[:, None] * step
        lam[active] = new_lam
        z, x, dual = primal(lam)
    resid = b - np.einsum("tcn,tn->tc", a, x)
    worst = float((np.abs(resid).max(axis=1) / scale).max())
    if worst > 1e-6:
        raise OutputCheckError(
            f"batched static optimisation: constraints not met (relative residual {worst:.3g}) "
            "within the actuator bounds; check the reserve actuators"
        )
    return x, {"iterations": iterations, "max_residual": worst}


def _id_column(columns: Sequence[str], coordinate: str) -> str | None:
    for suffix in ("_moment", "_force"):
        if f"{coordinate}{suffix}" in columns:
            return f"{coordinate}{suffix}"
    return None


def run_batched_so(
    *,
    model: PathLike,
    coordinates_mot: PathLike,
    external_loads_xml: PathLike,
    inverse_dynamics: PathLike,
    paths: PathLike,
    activation_out: PathLike,
    force_out: PathLike,
    setup_out: PathLike,
    reserves_out: PathLike,
    reserve_optimal_force: float = 1.0,
    residual_optimal_force: float = 100.0,
    lowpass_hz: float = 6.0,
    activation_exponent: float = 2.0,
    time_range: Sequence[float] | None = None,
    max_frames: int | None = None,
    log: PathLike | None = None,
) -> dict[str, Any]:
    """The static optimisation stage solved for all frames at once; outputs as :func:`run_so`.

    ``inverse_dynamics`` is the ID stage's ``id.sto`` of the same trial (same external loads,
    filter and window); ``paths`` the subject's fitted polynomial paths (``paths.json``). Writes
    ``activation_out`` and ``force_out`` (columns: the model's actuators then the reserves, as
    OpenSim's StaticOptimization writes them), ``setup_out`` (an XML record of the settings, with
    the reserve ForceSet beside it as ``so_reserve_actuators.xml``) and ``reserves_out``.
    """
    import pandas as pd

    from musculo.io.tables import covers, read_sto, write_sto

    if activation_exponent != 2.0:
        raise InputDataError(
            f"activation_exponent: the batched static optimisation solves exponent 2 only (got "
            f"{activation_exponent}); use opensim.so_method: opensim"
        )
    route_opensim_log(log, level="Warn")
    opensim = import_opensim()
    coords_file = require_file(coordinates_mot, what="coordinates file", field="coordinates_mot")
    loads = check_external_loads(external_loads_xml)
    id_file = require_file(inverse_dynamics, what="inverse dynamics file", field="inverse_dynamics")
    fitted = PolynomialPaths.load(paths)
    osim = load_model(model)
    model_path = Path(model).resolve()
    start, end = time_window(
        table_times(coords_file), time_range=time_range, max_frames=max_frames, source=coords_file
    )
    out_act, out_force = Path(activation_out), Path(force_out)
    out_setup, out_res = Path(setup_out), Path(reserves_out)
    reserve_final = out_setup.parent / "so_reserve_actuators.xml"
    t0 = _time.perf_counter()
    with work_dir(out_act) as tmp:
        reserves = reserve_force_set(
            model=osim,
            path=tmp / "so_reserve_actuators.xml",
            reserve_optimal_force=reserve_optimal_force,
            residual_optimal_force=residual_optimal_force,
        )
        # the actuators in the order OpenSim's StaticOptimization lists them: the model's, then ours
        actuators: list[dict[str, Any]] = []
        for i in range(osim.getActuators().getSize()):
            act = osim.getActuators().get(i)
            if not act.get_appliesForce():
                continue
            if opensim.Muscle.safeDownCast(act) is not None:
                kind = "muscle"
                coord = None
                strength = float("nan")
            else:
                ca = opensim.CoordinateActuator.safeDownCast(act)
                if ca is None:
                    raise InputDataError(
                        f"{model_path}: actuator {act.getName()} is a {act.getConcreteClassName()}; the "
                        "batched static optimisation handles muscles and coordinate actuators only: set "
                        "opensim.so_method to opensim"
                    )
                kind, coord, strength = "coordinate", ca.get_coordinate(), ca.getOptimalForce()
            scalar = opensim.ScalarActuator.safeDownCast(act)
            actuators.append(
                {
                    "name": act.getName(),
                    "kind": kind,
                    "coordinate": coord,
                    "optimal_force": strength,
                    "lower": scalar.getMinControl(),
                    "upper": scalar.getMaxControl(),
                }
            )
        for name, info in reserves.items():
            actuators.append(
                {
                    "name": name,
                    "kind": "coordinate",
                    "coordinate": info["coordinate"],
                    "optimal_force": info["optimal_force"],
                    "lower": -math.inf,
                    "upper": math.inf,
                }
            )
        muscles = [a["name"] for a in actuators if a["kind"] == "muscle"]
        if not muscles:
            raise OpenSimToolError(f"model {model_path} has no muscles; static optimization needs some")
        kin = muscle_kinematics(
            model=osim,
            coordinates_mot=coords_file,
            paths=fitted,
            muscles=muscles,
            start=start,
            end=end,
            lowpass_hz=lowpass_hz,
        )
        coords, time = kin["coordinates"], kin["time"]
        curves = MuscleCurves(osim, muscles)
        strength = curves.force_at_full_activation(kin["mtu_length"], kin["mtu_velocity"])  # (T, M)
        id_df = read_sto(id_file)
        missing = [c for c in coords if _id_column(list(id_df.columns), c) is None]
        if missing:
            raise InputDataError(f"{id_file}: no inverse-dynamics column for coordinates {missing}; rerun ID")
        id_time = id_df.index.to_numpy(dtype=float)
        if not covers(id_time, float(time[0]), float(time[-1])):
            raise InputDataError(
                f"{id_file}: covers {id_time[0]:.3f}-{id_time[-1]:.3f} s but static optimisation needs "
                f"{time[0]:.3f}-{time[-1]:.3f} s; rerun ID with the same time window"
            )
        tau = np.column_stack(
            [
                np.interp(time, id_time, id_df[_id_column(list(id_df.columns), c)].to_numpy(dtype=float))
                for c in coords
            ]
        )
        n_t, n_c, n_a = len(time), len(coords), len(actuators)
        a = np.zeros((n_t, n_c, n_a))
        cidx = {c: k for k, c in enumerate(coords)}
        midx = {m: k for k, m in enumerate(muscles)}
        for j, act in enumerate(actuators):
            if act["kind"] == "muscle":
                k = midx[act["name"]]
                a[:, :, j] = kin["moment_arm"][:, k, :] * strength[:, k, None]
            elif act["coordinate"] in cidx:
                a[:, cidx[act["coordinate"]], j] = act["optimal_force"]
        lower = np.array([a_["lower"] for a_ in actuators], dtype=float)
        upper = np.array([a_["upper"] for a_ in actuators], dtype=float)
        x, info = solve_batched_qp(a, tau, lower, upper)
        force = x.copy()
        for j, act in enumerate(actuators):
            force[:, j] = x[:, j] * (
                strength[:, midx[act["name"]]] if act["kind"] == "muscle" else act["optimal_force"]
            )
        seconds = _time.perf_counter() - t0
        names = [a_["name"] for a_ in actuators]
        index = pd.Index(time, name="time")
        write_sto(
            tmp / "activation.sto",
            pd.DataFrame(x, index=index, columns=names),
            name="so_StaticOptimization_activation",
        )
        write_sto(
            tmp / "force.sto",
            pd.DataFrame(force, index=index, columns=names),
            name="so_StaticOptimization_force",
        )
        if np.any(x[:, [midx[m] for m in muscles]] < -1e-9) or not np.all(np.isfinite(x)):
            raise OutputCheckError("batched static optimisation: activations out of bounds or non-finite")
        report: dict[str, Any] = {
            "start": start,
            "end": end,
            "frames": n_t,
            "reserve_optimal_force": reserve_optimal_force,
            "residual_optimal_force": residual_optimal_force,
            "actuators": {},
        }
        for j, act in enumerate(actuators):
            if act["name"] in reserves:
                report["actuators"][act["name"]] = {**reserves[act["name"]], **stats(force[:, j])}
        (tmp / "so_reserves.json").write_text(json.dumps(report, indent=2))
        setup = ET.Element("BatchedStaticOptimization")
        for key, value in {
            "model_file": str(model_path),
            "coordinates_file": str(coords_file),
            "external_loads_file": str(loads),
            "inverse_dynamics_file": str(id_file),
            "paths_file": str(Path(paths).resolve()),
            "force_set_files": str(reserve_final.resolve()),
            "initial_time": repr(start),
            "final_time": repr(end),
            "lowpass_cutoff_frequency_for_coordinates": repr(float(lowpass_hz)),
            "activation_exponent": repr(float(activation_exponent)),
            "use_muscle_physiology": "true",
        }.items():
            ET.SubElement(setup, key).text = value
        ET.ElementTree(setup).write(tmp / "so_setup.xml", encoding="utf-8", xml_declaration=True)
        publish(
            [
                (tmp / "activation.sto", out_act),
                (tmp / "force.sto", out_force),
                (tmp / "so_reserve_actuators.xml", reserve_final),
                (tmp / "so_setup.xml", out_setup),
                (tmp / "so_reserves.json", out_res),
            ]
        )
    logger.info(
        "SO (batched) %s: %d frames, %d muscles, %d actuators, %d Newton steps, %.3f s (%d curve tables)",
        coords_file.name,
        n_t,
        len(muscles),
        n_a,
        info["iterations"],
        seconds,
        curves.tables,
    )
    return {**report, "seconds": seconds, "iterations": info["iterations"]}
