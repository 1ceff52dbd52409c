"""Muscle analysis per dynamic trial (OpenSim AnalyzeTool + MuscleAnalysis + Kinematics).

Besides OpenSim's own ``.sto`` files, the results are packed in one ``muscle_analysis.npz`` that
the physics core loads directly: see docs/DEVELOPING.md for its keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from musculo import logger
from musculo.errors import InputDataError
from musculo.io.tables import read_sto
from musculo.opensim_tools.common import (
    OpenSimToolError,
    OutputCheckError,
    PathLike,
    check_table,
    free_coordinates,
    import_opensim,
    is_rotational,
    load_model,
    publish,
    publish_dir,
    require_file,
    route_opensim_log,
    table_times,
    time_window,
    work_dir,
)

NPZ_KEYS = (
    "time",
    "muscles",
    "coordinates",
    "mtu_length",
    "mtu_velocity",
    "fiber_length",
    "moment_arm",
    "max_isometric_force",
    "optimal_fiber_length",
    "tendon_slack_length",
    "pennation_angle",
    "max_contraction_velocity",
    "q",
    "qdot",
)


def muscle_parameters(model: Any, muscles: Sequence[str]) -> dict[str, np.ndarray]:
    """Hill-model parameters of ``muscles`` read from the model."""
    mset = model.getMuscles()
    rows = [mset.get(name) for name in muscles]
    return {
        "max_isometric_force": np.array([m.getMaxIsometricForce() for m in rows]),
        "optimal_fiber_length": np.array([m.getOptimalFiberLength() for m in rows]),
        "tendon_slack_length": np.array([m.getTendonSlackLength() for m in rows]),
        "pennation_angle": np.array([m.getPennationAngleAtOptimalFiberLength() for m in rows]),
        "max_contraction_velocity": np.array([m.getMaxContractionVelocity() for m in rows]),
    }


def _columns(df: Any, names: Sequence[str], path: Path) -> np.ndarray:
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise OutputCheckError(f"muscle analysis: {path.name} lacks columns {missing[:10]}")
    return df[list(names)].to_numpy(dtype=float)


def run_muscle_analysis(
    *,
    model: PathLike,
    coordinates_mot: PathLike,
    output_npz: PathLike,
    sto_dir: PathLike,
    setup_out: PathLike,
    time_range: Sequence[float] | None = None,
    max_frames: int | None = None,
    muscles: Sequence[str] | None = None,
    lowpass_hz: float = 6.0,
    log: PathLike | None = None,
) -> dict[str, Any]:
    """Run OpenSim's MuscleAnalysis (and Kinematics) on IK coordinates; pack them in an npz.

    The npz holds, on OpenSim's time base, MTU and fibre lengths, moment arms of every muscle
    about every free coordinate, filtered coordinates ``q`` (rad or m) and speeds ``qdot``,
    and the model's muscle parameters. MTU velocity is ``-sum_c moment_arm_c * qdot_c`` (moment
    arms are ``-dL/dq``), exact for the filtered kinematics. OpenSim's ``.sto`` files go to
    ``sto_dir``.
    """
    route_opensim_log(log, level="Warn")
    opensim = import_opensim()
    coords_file = require_file(coordinates_mot, what="coordinates file", field="coordinates_mot")
    osim = load_model(model)
    model_path = Path(model).resolve()
    all_muscles = [osim.getMuscles().get(i).getName() for i in range(osim.getMuscles().getSize())]
    names = list(muscles) if muscles else all_muscles
    unknown = [m for m in names if m not in all_muscles]
    if unknown:
        raise InputDataError(f"muscles: {unknown} are not muscles of {model_path}; fix the list")
    if not names:
        raise OpenSimToolError(f"model {model_path} has no muscles to analyse")
    coords = free_coordinates(osim)
    start, end = time_window(
        table_times(coords_file), time_range=time_range, max_frames=max_frames, source=coords_file
    )
    out_npz, out_dir, out_setup = Path(output_npz), Path(sto_dir), Path(setup_out)
    with work_dir(out_npz) as tmp:
        results = tmp / "sto"
        results.mkdir()
        tool = opensim.AnalyzeTool()
        tool.setName("ma")
        tool.setModelFilename(str(model_path))
        tool.setCoordinatesFileName(str(coords_file))
        tool.setLowpassCutoffFrequency(float(lowpass_hz))
        tool.setInitialTime(start)
        tool.setFinalTime(end)
        tool.setSolveForEquilibrium(True)
        ma = opensim.MuscleAnalysis()
        ma.setStartTime(start)
        ma.setEndTime(end)
        ma.setComputeMoments(True)
        mus = opensim.ArrayStr()
        for name in names:
            mus.append(name)
        ma.setMuscles(mus)
        crd = opensim.ArrayStr()
        for name in coords:
            crd.append(name)
        ma.setCoordinates(crd)
        kin = opensim.Kinematics()
        kin.setStartTime(start)
        kin.setEndTime(end)
        kin.setInDegrees(False)
        tool.getAnalysisSet().cloneAndAppend(ma)
        tool.getAnalysisSet().cloneAndAppend(kin)
        tool.setResultsDir(str(out_dir.resolve()))
        tool.printToXML(str(tmp / "ma_setup.xml"))
        tool.setResultsDir(str(results))
        tool.printToXML(str(tmp / "run_setup.xml"))
        runner = opensim.AnalyzeTool(str(tmp / "run_setup.xml"))
        logger.info(
            "MA %s: %.3f-%.3f s, %d muscles x %d coordinates",
            coords_file.name,
            start,
            end,
            len(names),
            len(coords),
        )
        if not runner.run():
            raise OpenSimToolError(f"muscle analysis failed on {coords_file}; see the job log")

        def table(suffix: str, columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
            path = results / f"ma_{suffix}.sto"
            df = check_table(path, tool="muscle analysis")
            return df.index.to_numpy(dtype=float), _columns(df, columns, path)

        time, length = table("MuscleAnalysis_Length", names)
        _, fiber = table("MuscleAnalysis_FiberLength", names)
        arms = np.stack([table(f"MuscleAnalysis_MomentArm_{c}", names)[1] for c in coords], axis=2)
        q_df = read_sto(results / "ma_Kinematics_q.sto")
        u_df = read_sto(results / "ma_Kinematics_u.sto")
        q = _columns(q_df, coords, results / "ma_Kinematics_q.sto")
        qdot = _columns(u_df, coords, results / "ma_Kinematics_u.sto")
        if q_df.attrs.get("inDegrees", "no").lower() == "yes":
            rot = np.array([is_rotational(osim, c) for c in coords])
            q[:, rot] = np.deg2rad(q[:, rot])
            qdot[:, rot] = np.deg2rad(qdot[:, rot])
        if not (len(q) == len(qdot) == len(time)):
            raise OutputCheckError(
                f"muscle analysis: {len(time)} frames of lengths but {len(q)} of kinematics"
            )
        velocity = -np.einsum("tmc,tc->tm", arms, qdot)
        params = muscle_parameters(osim, names)
        if np.any(length <= 0) or np.any(fiber <= 0):
            raise OutputCheckError("muscle analysis: non-positive muscle-tendon or fibre lengths")
        payload = {
            "time": time,
            "muscles": np.array(names, dtype=str),
            "coordinates": np.array(coords, dtype=str),
            "mtu_length": length,
            "mtu_velocity": velocity,
            "fiber_length": fiber,
            "moment_arm": arms,
            **params,
            "q": q,
            "qdot": qdot,
        }
        for key, value in payload.items():
            if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                raise OutputCheckError(f"muscle analysis: non-finite values in {key}")
        np.savez_compressed(tmp / "muscle_analysis.npz", **payload)
        publish_dir(results, out_dir)
        publish([(tmp / "ma_setup.xml", out_setup), (tmp / "muscle_analysis.npz", out_npz)])
    return {
        "start": start,
        "end": end,
        "frames": int(time.size),
        "muscles": len(names),
        "coordinates": len(coords),
    }
