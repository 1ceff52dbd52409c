"""Model scaling from a static trial (OpenSim ScaleTool: measurement-based scaling + marker placement)."""

from __future__ import annotations

import itertools
import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from musculo import logger
from musculo.io.tables import read_sto
from musculo.opensim_tools.common import (
    ImplausibleScaleError,
    MarkerErrorTooLargeError,
    MarkerNotInModelError,
    OpenSimToolError,
    OutputCheckError,
    PathLike,
    TooFewMarkersError,
    import_opensim,
    is_rotational,
    load_model,
    publish,
    require_file,
    root_coordinates,
    route_opensim_log,
    time_window,
    work_dir,
)
from musculo.opensim_tools.ik import apply_marker_weights, trc_markers

MAX_PAIRS_PER_BODY = 6


def _frame_body(frame: str) -> str:
    return frame.rstrip("/").split("/")[-1]


def model_with_marker_set(*, model: Any, marker_set: PathLike) -> tuple[Any, list[str]]:
    """Attach the lab's marker set to a loaded model; return it and the model's marker names.

    Raises :class:`MarkerNotInModelError` when a marker is attached to a body the model lacks.
    """
    opensim = import_opensim()
    path = require_file(marker_set, what="marker set", field="marker_set")
    mset = opensim.MarkerSet(str(path))
    bodies = {model.getBodySet().get(i).getName() for i in range(model.getBodySet().getSize())}
    bodies.add("ground")
    for i in range(mset.getSize()):
        marker = mset.get(i)
        body = _frame_body(marker.getParentFrameName())
        if body not in bodies:
            raise MarkerNotInModelError(
                f"{path}: marker {marker.getName()!r} is attached to {body!r}, which is not a body "
                f"of the model; fix the marker set for this model"
            )
    model.updateMarkerSet(mset)
    model.initSystem()
    names = [model.getMarkerSet().get(i).getName() for i in range(model.getMarkerSet().getSize())]
    return model, names


def auto_measurements(*, model: Any, markers: Sequence[str]) -> Any:
    """A MeasurementSet scaling each body by the distances between markers on that body.

    Bodies with fewer than two trial markers take the measurement of their nearest ancestor.
    """
    opensim = import_opensim()
    on_body: dict[str, list[str]] = {}
    for i in range(model.getMarkerSet().getSize()):
        marker = model.getMarkerSet().get(i)
        if marker.getName() in markers:
            on_body.setdefault(_frame_body(marker.getParentFrameName()), []).append(marker.getName())
    parent: dict[str, str] = {}
    for joint in model.getJointSet():
        parent[_frame_body(joint.getChildFrame().findBaseFrame().getName())] = _frame_body(
            joint.getParentFrame().findBaseFrame().getName()
        )
    bodies = [model.getBodySet().get(i).getName() for i in range(model.getBodySet().getSize())]
    measured = [b for b in bodies if len(on_body.get(b, [])) >= 2]
    if not measured:
        raise TooFewMarkersError(
            "no body carries two markers of the static trial; give a scale_setup with a measurement set"
        )
    owner: dict[str, str] = {}
    for body in bodies:
        b = body
        while b not in measured and b in parent:
            b = parent[b]
        owner[body] = b if b in measured else max(measured, key=lambda m: len(on_body[m]))
    mset = opensim.MeasurementSet()
    for body in measured:
        meas = opensim.Measurement()
        meas.setName(body)
        meas.setApply(True)
        for a, b in itertools.islice(itertools.combinations(on_body[body], 2), MAX_PAIRS_PER_BODY):
            pair = opensim.MarkerPair()
            pair.setMarkerName(0, a)
            pair.setMarkerName(1, b)
            meas.getMarkerPairSet().cloneAndAppend(pair)
        for member in [b for b, o in owner.items() if o == body]:
            scale = opensim.BodyScale()
            scale.setName(member)
            axes = opensim.ArrayStr()
            for axis in ("X", "Y", "Z"):
                axes.append(axis)
            scale.setAxisNames(axes)
            meas.getBodyScaleSet().cloneAndAppend(scale)
        mset.cloneAndAppend(meas)
    return mset


def read_scale_factors(path: PathLike) -> dict[str, list[float]]:
    """Scale factors of a ScaleSet XML written by OpenSim: ``{segment: [x, y, z]}``."""
    factors: dict[str, list[float]] = {}
    for node in ET.parse(path).getroot().iter("Scale"):
        seg = (node.findtext("segment") or "").strip()
        scales = [float(v) for v in (node.findtext("scales") or "").split()]
        if seg and len(scales) == 3:
            factors[seg] = scales
    return factors


def marker_errors(
    *,
    model_file: PathLike,
    motion: PathLike,
    trc: PathLike,
    start: float,
    end: float,
    markers: Sequence[str],
    locations: Mapping[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """Distance (m) between each model marker in the static pose and its mean trial position.

    ``locations`` (marker -> position in its body, m) replaces the model's marker locations.
    """
    opensim = import_opensim()
    model = opensim.Model(str(model_file))
    for name, loc in (locations or {}).items():
        if model.getMarkerSet().contains(name):
            model.getMarkerSet().get(name).set_location(opensim.Vec3(*map(float, loc)))
    state = model.initSystem()
    pose = read_sto(motion)
    degrees = str(pose.attrs.get("inDegrees", "no")).lower() == "yes"
    row = pose.iloc[0]
    for coord in model.getCoordinateSet():
        name = coord.getName()
        key = next((k for k in (name, f"{coord.getAbsolutePathString()}/value") if k in row.index), None)
        if key is not None:
            value = float(row[key])
            if degrees and is_rotational(model, name):
                value = math.radians(value)
            coord.setValue(state, value, False)
    model.realizePosition(state)
    table = opensim.TimeSeriesTableVec3(str(trc))
    units = table.getTableMetaDataAsString("Units") if table.hasTableMetaDataKey("Units") else "m"
    to_m = {"mm": 1e-3, "cm": 1e-2, "m": 1.0}.get(units.strip().lower(), 1.0)
    positions = trc_markers(trc, start=start, end=end)
    errors = {}
    mset = model.getMarkerSet()
    for name in markers:
        if name not in positions or not mset.contains(name):
            continue
        exp = np.nanmean(positions[name], axis=0) * to_m
        loc = mset.get(name).getLocationInGround(state).to_numpy()
        errors[name] = float(np.linalg.norm(loc - exp))
    return errors


def clamped_copy(model: PathLike, out: PathLike) -> dict[str, bool]:
    """Write ``model`` with its joints' rotational coordinates clamped to their ranges.

    Marker placement solves the static pose by inverse kinematics from the model's default pose;
    unclamped, it can settle in a pose the joints do not allow (a femur turned half round with the
    ankle turned back, which fits thigh and shank markers almost as well). Markers placed on that
    pose are wrong on their bodies, and every later IK of the subject inherits the error. The
    coordinates of joints to ground stay free (a subject may face any direction in the lab).
    Returns each coordinate's original ``clamped`` flag, for :func:`restore_clamping`.
    """
    opensim = import_opensim()
    osim = opensim.Model(str(model))
    roots = set(root_coordinates(osim))
    original: dict[str, bool] = {}
    for coord in osim.getCoordinateSet():
        original[coord.getName()] = bool(coord.getDefaultClamped())
        if coord.getName() not in roots and coord.getMotionType() == 1:  # Coordinate.Rotational
            coord.setDefaultClamped(True)
    osim.printToXML(str(out))
    return original


def restore_clamping(model: PathLike, original: Mapping[str, bool]) -> None:
    """Set each coordinate's ``clamped`` flag of the model file back to ``original``'s, in place."""
    opensim = import_opensim()
    osim = opensim.Model(str(model))
    for coord in osim.getCoordinateSet():
        if coord.getName() in original:
            coord.setDefaultClamped(original[coord.getName()])
    osim.printToXML(str(model))


def scale_model(
    *,
    generic_model: PathLike,
    marker_set: PathLike,
    static_trc: PathLike,
    mass: float,
    height: float,
    output_model: PathLike,
    setup_out: PathLike,
    quality_out: PathLike,
    scale_setup: PathLike | None = None,
    time_range: Sequence[float] | None = None,
    max_marker_rms: float = 0.04,
    max_marker_error: float | None = None,
    scale_bounds: Sequence[float] = (0.5, 2.0),
    min_markers: int = 6,
    min_marker_coverage: float = 0.5,
    marker_weights: Mapping[str, float] | None = None,
    preserve_mass_distribution: bool = True,
    log: PathLike | None = None,
) -> dict[str, Any]:
    """Scale a generic model to a subject with OpenSim's ScaleTool and place its markers.

    The measurement set (marker pairs per body), the manual scale set and the marker-placement
    task weights come from ``scale_setup`` when given (its file paths are replaced); without it,
    each body is scaled by the distances between the trial markers on it. ``marker_weights``
    overrides marker-placement weights. A marker seen in fewer than ``min_marker_coverage`` of
    the static frames (a gap-filled ghost or a mislabelled blip) is left out of marker placement
    and of the marker error, with a warning. The static pose is solved with the joints clamped to
    their ranges (:func:`clamped_copy`); the scaled model keeps the generic model's flags. Stops
    with a specific error when a scale factor is outside ``scale_bounds`` or the RMS distance (m)
    between the scaled model's markers, before placement moves them, and the static trial exceeds
    ``max_marker_rms``. Writes the scaled model, the resolved setup and ``quality_out`` (JSON:
    scale factors, per-marker error, RMS and max, m).
    """
    route_opensim_log(log)
    opensim = import_opensim()
    generic = Path(generic_model).resolve()
    model = load_model(generic, field="generic_model")
    trc = require_file(static_trc, what="static marker file", field="static_trc")
    model, model_markers = model_with_marker_set(model=model, marker_set=marker_set)
    marker_set_path = Path(marker_set).resolve()
    times = np.asarray(opensim.TimeSeriesTableVec3(str(trc)).getIndependentColumn(), dtype=float)
    start, end = time_window(times, time_range=time_range, source=trc)
    seen = trc_markers(trc, start=start, end=end)
    coverage = {name: float(np.isfinite(xyz).all(axis=1).mean()) for name, xyz in seen.items()}
    sparse = sorted(n for n, c in coverage.items() if c < min_marker_coverage and n in model_markers)
    if sparse:
        logger.warning(
            "scale: %s: markers %s are seen in fewer than %.0f%% of the static frames (%s); "
            "they are left out of marker placement",
            trc.name,
            sparse,
            100 * min_marker_coverage,
            ", ".join(f"{n} {100 * coverage[n]:.0f}%" for n in sparse),
        )
    present = {n: xyz for n, xyz in seen.items() if n not in sparse}
    usable = sorted(set(present) & set(model_markers))
    if len(usable) < min_markers:
        raise TooFewMarkersError(
            f"{trc}: only {len(usable)} markers of the marker set are in the static trial "
            f"({usable}); scaling needs at least {min_markers}. Check the trial and the marker names"
        )

    if scale_setup is not None:
        setup_path = require_file(scale_setup, what="scale setup", field="scale_setup")
        tool = opensim.ScaleTool(str(setup_path))
    else:
        tool = opensim.ScaleTool()
    scaler = tool.getModelScaler()
    if scaler.getMeasurementSet().getSize() == 0 and scaler.getScaleSet().getSize() == 0:
        logger.info("scale: no measurement or scale set given; scaling each body by its markers")
        scaler.setMeasurementSet(auto_measurements(model=model, markers=usable))
        order = opensim.ArrayStr()
        order.append("measurements")
        tool.getModelScaler().setScalingOrder(order)
    tool.setName("scale")
    tool.setPathToSubject("")
    tool.setSubjectMass(float(mass))
    tool.setSubjectHeight(float(height) * 1000.0)  # OpenSim documents the height in mm

    for i in range(scaler.getMeasurementSet().getSize()):
        meas = scaler.getMeasurementSet().get(i)
        if not meas.getApply():
            continue
        for j in range(meas.getNumMarkerPairs()):
            for k in range(2):
                name = meas.getMarkerPair(j).getMarkerName(k)
                if name not in model_markers:
                    raise MarkerNotInModelError(
                        f"{scale_setup}: measurement {meas.getName()!r} uses marker {name!r}, which "
                        f"is not in the marker set {marker_set_path}; add it or fix the measurement"
                    )
                if name not in present:
                    raise TooFewMarkersError(
                        f"{trc}: measurement {meas.getName()!r} needs marker {name!r}, which the "
                        f"static trial lacks in {start:.3f}-{end:.3f} s; fix the trial or the setup"
                    )
    placer = tool.getMarkerPlacer()
    tasks = placer.getIKTaskSet()
    apply_marker_weights(tasks, marker_weights)
    for i in range(tasks.getSize()):
        if tasks.get(i).getName() in sparse:
            tasks.get(i).setApply(False)
    if tasks.getSize() == 0:
        for name in usable:
            task = opensim.IKMarkerTask()
            task.setName(name)
            weight = float((marker_weights or {}).get(name, 1.0))
            task.setWeight(weight)
            task.setApply(weight > 0)
            tasks.cloneAndAppend(task)
    weighted = []
    for i in range(tasks.getSize()):
        task = tasks.get(i)
        if task.getConcreteClassName() != "IKMarkerTask" or not task.getApply():
            continue
        if task.getWeight() <= 0:
            continue
        if task.getName() not in model_markers:
            raise MarkerNotInModelError(
                f"{scale_setup}: marker placement task names {task.getName()!r}, which is not in the "
                f"marker set {marker_set_path}; remove the task or add the marker"
            )
        if task.getName() in present:
            weighted.append(task.getName())

    window = opensim.ArrayDouble()
    window.append(start)
    window.append(end)
    tool.getGenericModelMaker().setMarkerSetFileName(str(marker_set_path))
    scaler.setApply(True)
    scaler.setMarkerFileName(str(trc))
    scaler.setTimeRange(window)
    scaler.setPreserveMassDist(bool(preserve_mass_distribution))
    scaler.setOutputModelFileName("Unassigned")
    placer.setApply(True)
    placer.setStaticPoseFileName(str(trc))
    placer.setTimeRange(window)
    placer.setCoordinateFileName("Unassigned")
    placer.setOutputMarkerFileName("Unassigned")
    placer.setMaxMarkerMovement(-1.0)

    out_model, out_setup, out_quality = Path(output_model), Path(setup_out), Path(quality_out)
    with work_dir(out_model) as tmp:

        def write_setup(
            path: Path, generic_in: Path, model_out: Path, scale_out: Path, motion_out: Path
        ) -> None:
            tool.getGenericModelMaker().setModelFileName(str(generic_in))
            scaler.setOutputScaleFileName(str(scale_out))
            placer.setOutputModelFileName(str(model_out))
            placer.setOutputMotionFileName(str(motion_out))
            tool.printToXML(str(path))

        folder = out_model.parent.resolve()
        write_setup(
            tmp / "scale_setup.xml",
            generic,
            out_model.resolve(),
            folder / "scale_set.xml",
            folder / "scale_static_pose.mot",
        )
        clamped = clamped_copy(generic, tmp / "generic_clamped.osim")
        write_setup(
            tmp / "run.xml",
            tmp / "generic_clamped.osim",
            tmp / "scaled.osim",
            tmp / "scale_set.xml",
            tmp / "pose.mot",
        )
        logger.info(
            "scale %s with %s: %.3f-%.3f s, %d markers, mass %.2f kg",
            generic.name,
            trc.name,
            start,
            end,
            len(usable),
            mass,
        )
        runner = opensim.ScaleTool(str(tmp / "run.xml"))
        runner.setPathToSubject("")
        if not runner.run():
            raise OpenSimToolError(f"ScaleTool failed on {trc}; see the job log")
        for name in ("scaled.osim", "scale_set.xml", "pose.mot"):
            if not (tmp / name).is_file():
                raise OutputCheckError(f"scale: OpenSim wrote no {name}; see the job log")
        restore_clamping(tmp / "scaled.osim", clamped)
        factors = read_scale_factors(tmp / "scale_set.xml")
        lo, hi = float(scale_bounds[0]), float(scale_bounds[1])
        bad = {seg: f for seg, f in factors.items() if min(f) < lo or max(f) > hi}
        if bad:
            raise ImplausibleScaleError(
                f"{trc}: scale factors outside [{lo}, {hi}] for {bad}; check the marker labels of "
                f"the static trial, its units, and the measurement set of {scale_setup}"
            )
        # the error of the scaled (not yet moved) markers in the static pose: once placement has
        # moved the markers onto the trial, their error is zero by construction
        scaled_locations = {}
        for i in range(model.getMarkerSet().getSize()):
            marker = model.getMarkerSet().get(i)
            body = _frame_body(marker.getParentFrameName())
            factor = np.asarray(factors.get(body, [1.0, 1.0, 1.0]))
            scaled_locations[marker.getName()] = marker.get_location().to_numpy() * factor
        errors = marker_errors(
            model_file=tmp / "scaled.osim",
            motion=tmp / "pose.mot",
            trc=trc,
            start=start,
            end=end,
            markers=weighted,
            locations=scaled_locations,
        )
        if not errors:
            raise OutputCheckError("scale: no weighted marker to measure the marker error with")
        values = np.array(list(errors.values()))
        rms, worst = float(np.sqrt(np.mean(values**2))), float(values.max())
        worst_name = max(errors, key=errors.get)
        if rms > max_marker_rms:
            raise MarkerErrorTooLargeError(
                f"{trc}: marker RMS after scaling {rms:.4f} m is over the limit {max_marker_rms} m "
                f"(worst {worst_name} {worst:.4f} m); check marker labels and the marker set"
            )
        if max_marker_error is not None and worst > max_marker_error:
            raise MarkerErrorTooLargeError(
                f"{trc}: marker {worst_name} is {worst:.4f} m from its model marker after scaling, "
                f"over the limit {max_marker_error} m; check its label and placement"
            )
        scaled = opensim.Model(str(tmp / "scaled.osim"))
        mass_out = float(scaled.getTotalMass(scaled.initSystem()))
        quality = {
            "generic_model": str(generic),
            "static_trc": str(trc),
            "time_range": [start, end],
            "mass": float(mass),
            "scaled_mass": mass_out,
            "height": float(height),
            "scale_factors": factors,
            "marker_rms": rms,
            "marker_max": worst,
            "marker_max_name": worst_name,
            "marker_errors": errors,
            "markers_used": len(errors),
        }
        (tmp / "quality.json").write_text(json.dumps(quality, indent=2))
        publish(
            [
                (tmp / "scale_set.xml", folder / "scale_set.xml"),
                (tmp / "pose.mot", folder / "scale_static_pose.mot"),
                (tmp / "scale_setup.xml", out_setup),
                (tmp / "quality.json", out_quality),
                (tmp / "scaled.osim", out_model),
            ]
        )
    logger.info("scale: marker RMS %.4f m, max %.4f m (%s)", rms, worst, worst_name)
    return quality
