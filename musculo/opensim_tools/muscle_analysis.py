"""Muscle analysis per dynamic trial (OpenSim AnalyzeTool + MuscleAnalysis + Kinematics).

Besides OpenSim's own ``.sto`` files, the results are packed in one ``muscle_analysis.npz`` that
the physics core loads directly: see docs/DEVELOPING.md for its keys.
"""

from __future__ import annotations

import time as _time
from collections.abc import Mapping, Sequence
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


def spanned_coordinates(
    *, model: Any, muscles: Sequence[str], coordinates: Sequence[str]
) -> dict[str, list[str]]:
    """The coordinates of ``coordinates`` that each muscle spans, from the model's topology.

    A muscle spans the coordinates of every joint between the bodies its path points sit on (up
    to their nearest common ancestor in the body tree); a coordinate coupled to others by a
    CoordinateCouplerConstraint (e.g. a patella driven by the knee angle) stands for the
    coordinates it depends on. Its moment arm about any other coordinate is zero.
    """
    opensim = import_opensim()
    parent: dict[str, tuple[str, Any]] = {}
    for joint in model.getJointSet():
        child = joint.getChildFrame().findBaseFrame().getName()
        parent[child] = (joint.getParentFrame().findBaseFrame().getName(), joint)
    coupled: dict[str, list[str]] = {}
    for constraint in model.getConstraintSet():
        coupler = opensim.CoordinateCouplerConstraint.safeDownCast(constraint)
        if coupler is not None:
            ind = coupler.getIndependentCoordinateNames()
            coupled[coupler.getDependentCoordinateName()] = [ind.get(k) for k in range(ind.getSize())]

    def ancestors(body: str) -> list[str]:
        chain = [body]
        while chain[-1] in parent and parent[chain[-1]][0] != chain[-1]:
            chain.append(parent[chain[-1]][0])
        return chain

    def independent(name: str, seen: frozenset[str] = frozenset()) -> list[str]:
        if name not in coupled or name in seen:
            return [name]
        return [c for dep in coupled[name] for c in independent(dep, seen | {name})]

    wanted = set(coordinates)
    out: dict[str, list[str]] = {}
    for name in muscles:
        points = model.getMuscles().get(name).getGeometryPath().getPathPointSet()
        bodies = {points.get(i).getParentFrame().findBaseFrame().getName() for i in range(points.getSize())}
        chains = [ancestors(b) for b in sorted(bodies)]
        common = set.intersection(*(set(c) for c in chains)) if chains else set()
        spanned: set[str] = set()
        for chain in chains:
            for body in chain:
                if body in common:
                    break
                joint = parent[body][1]
                for i in range(joint.numCoordinates()):
                    spanned.update(independent(joint.get_coordinates(i).getName()))
        out[name] = [c for c in coordinates if c in spanned and c in wanted]
    return out


def analysis_groups(
    *, spanned: Mapping[str, Sequence[str]], coordinates: Sequence[str]
) -> list[tuple[list[str], list[str]]]:
    """Split muscles into groups that share no coordinate: ``[(muscles, coordinates), ...]``.

    Each group's moment arms are computed only about its own coordinates (one MuscleAnalysis
    per group), which skips the muscle-coordinate pairs whose moment arm is zero by topology.
    Muscles that span none of the coordinates form a last group without coordinates. Muscle
    order follows ``spanned``, coordinate order ``coordinates``.
    """
    groups: list[tuple[list[str], set[str]]] = []
    idle: list[str] = []
    for muscle, coords in spanned.items():
        if not coords:
            idle.append(muscle)
            continue
        merged = ([muscle], set(coords))
        for group in [g for g in groups if g[1] & merged[1]]:
            groups.remove(group)
            merged = (group[0] + merged[0], group[1] | merged[1])
        groups.append(merged)
    order = {m: i for i, m in enumerate(spanned)}
    result = [(sorted(ms, key=order.__getitem__), [c for c in coordinates if c in cs]) for ms, cs in groups]
    if idle:
        result.append((idle, []))
    return result


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
    spanned_only: bool = True,
    coordinates: Sequence[str] | None = None,
    log: PathLike | None = None,
) -> dict[str, Any]:
    """Run OpenSim's MuscleAnalysis (and Kinematics) on IK coordinates; pack them in an npz.

    The npz holds, on OpenSim's time base, MTU and fibre lengths, moment arms of every muscle
    about every free coordinate, filtered coordinates ``q`` (rad or m) and speeds ``qdot``,
    and the model's muscle parameters. MTU velocity is ``-sum_c moment_arm_c * qdot_c`` (moment
    arms are ``-dL/dq``), exact for the filtered kinematics. OpenSim's ``.sto`` files go to
    ``sto_dir``. With ``spanned_only``, moment arms are computed only about the coordinates each
    muscle spans (:func:`spanned_coordinates`; the others are zero by topology), one
    MuscleAnalysis per group of muscles sharing coordinates (``ma_MuscleAnalysis<k>_*.sto``);
    otherwise about every free coordinate in one MuscleAnalysis (``ma_MuscleAnalysis_*.sto``).
    ``coordinates`` (e.g. the coordinates a subject tracks) restricts the analysis to those free
    coordinates, for short runs: MTU velocity is then the time derivative of a cubic spline through
    the MTU lengths, because moment arms about the other coordinates are not computed.
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
    if coordinates:
        known = {osim.getCoordinateSet().get(i).getName() for i in range(osim.getNumCoordinates())}
        wrong = [c for c in coordinates if c not in known]
        if wrong:
            raise InputDataError(
                f"coordinates: {wrong} are not coordinates of {model_path} (free ones: {coords}); "
                f"fix `coordinates` in the subject file"
            )
        fixed = [c for c in coordinates if c not in coords]
        if fixed:
            logger.warning("MA: coordinates %s are locked or constrained in %s; left out", fixed, model_path)
        coords = [c for c in coords if c in set(coordinates)]
        if not coords:
            raise InputDataError(
                f"coordinates: none of {list(coordinates)} is a free coordinate of {model_path}; "
                f"fix `coordinates` in the subject file"
            )
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
        if spanned_only:
            spanned = spanned_coordinates(model=osim, muscles=names, coordinates=coords)
            groups = analysis_groups(spanned=spanned, coordinates=coords)
            labels = [f"MuscleAnalysis{k + 1}" for k in range(len(groups))]
        else:
            groups, labels = [(names, coords)], ["MuscleAnalysis"]
        for label, (group_muscles, group_coords) in zip(labels, groups, strict=True):
            ma = opensim.MuscleAnalysis()
            ma.setName(label)
            ma.setStartTime(start)
            ma.setEndTime(end)
            ma.setComputeMoments(bool(group_coords))
            mus = opensim.ArrayStr()
            for name in group_muscles:
                mus.append(name)
            ma.setMuscles(mus)
            crd = opensim.ArrayStr()
            for name in group_coords or coords[:1]:
                crd.append(name)
            ma.setCoordinates(crd)
            tool.getAnalysisSet().cloneAndAppend(ma)
        kin = opensim.Kinematics()
        kin.setStartTime(start)
        kin.setEndTime(end)
        kin.setInDegrees(False)
        tool.getAnalysisSet().cloneAndAppend(kin)
        tool.setResultsDir(str(out_dir.resolve()))
        tool.printToXML(str(tmp / "ma_setup.xml"))
        tool.setResultsDir(str(results))
        tool.printToXML(str(tmp / "run_setup.xml"))
        runner = opensim.AnalyzeTool(str(tmp / "run_setup.xml"))
        logger.info(
            "MA %s: %.3f-%.3f s, %d muscles x %d coordinates, %d moment arms per frame in %d group(s)",
            coords_file.name,
            start,
            end,
            len(names),
            len(coords),
            sum(len(m) * len(c) for m, c in groups),
            len(groups),
        )
        t0 = _time.perf_counter()
        if not runner.run():
            raise OpenSimToolError(f"muscle analysis failed on {coords_file}; see the job log")
        seconds = _time.perf_counter() - t0

        def table(suffix: str, columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
            path = results / f"ma_{suffix}.sto"
            df = check_table(path, tool="muscle analysis")
            return df.index.to_numpy(dtype=float), _columns(df, columns, path)

        column = {m: j for j, m in enumerate(names)}
        crd_index = {c: k for k, c in enumerate(coords)}
        time = np.empty(0)
        length = fiber = arms = np.empty(0)
        for g, (label, (group_muscles, group_coords)) in enumerate(zip(labels, groups, strict=True)):
            cols = [column[m] for m in group_muscles]
            t_g, len_g = table(f"{label}_Length", group_muscles)
            if g == 0:
                time = t_g
                length = np.zeros((time.size, len(names)))
                fiber = np.zeros((time.size, len(names)))
                arms = np.zeros((time.size, len(names), len(coords)))
            elif t_g.shape != time.shape or not np.allclose(t_g, time):
                raise OutputCheckError(f"muscle analysis: {label} has other frames than {labels[0]}")
            length[:, cols] = len_g
            fiber[:, cols] = table(f"{label}_FiberLength", group_muscles)[1]
            for c in group_coords:
                arms[:, cols, crd_index[c]] = table(f"{label}_MomentArm_{c}", group_muscles)[1]
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
        if coordinates:
            from scipy.interpolate import CubicSpline

            velocity = CubicSpline(time, length, axis=0)(time, 1)
        else:
            velocity = -np.einsum("tmc,tc->tm", arms, qdot)
        params = muscle_parameters(osim, names)
        if np.any(length <= 0) or np.any(fiber < 0):
            raise OutputCheckError("muscle analysis: non-positive muscle-tendon or negative fibre lengths")
        slack = [f"{names[j]} ({int(n)} frames)" for j, n in enumerate((fiber <= 0).sum(axis=0)) if n]
        if slack:
            # a muscle-tendon unit shorter than its tendon slack length: OpenSim clamps the fibre
            logger.warning("MA %s: fibre length 0 (slack muscle-tendon unit) in %s", coords_file.name, slack)
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
        "seconds": seconds,
    }
