"""Inverse kinematics per dynamic trial (OpenSim InverseKinematicsTool)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from musculo import logger
from musculo.errors import InputDataError
from musculo.io.events import contact_window
from musculo.opensim_tools.common import (
    MarkerNotInModelError,
    OpenSimToolError,
    OutputCheckError,
    PathLike,
    TooFewMarkersError,
    check_table,
    import_opensim,
    load_model,
    publish,
    require_file,
    route_opensim_log,
    time_window,
    work_dir,
)

MIN_IK_MARKERS = 3


def trc_markers(
    path: PathLike, *, start: float | None = None, end: float | None = None
) -> dict[str, np.ndarray]:
    """Marker trajectories of a TRC file (OpenSim's adapter), ``{name: (T, 3)}`` in file units.

    Markers that have no finite sample within ``start``-``end`` are left out.
    """
    opensim = import_opensim()
    table = opensim.TimeSeriesTableVec3(str(path))
    times = np.asarray(table.getIndependentColumn(), dtype=float)
    keep = np.ones(times.size, dtype=bool)
    if start is not None:
        keep &= times >= start - 1e-9
    if end is not None:
        keep &= times <= end + 1e-9
    flat = table.flatten()
    data = flat.getMatrix().to_numpy()
    out: dict[str, np.ndarray] = {}
    for i, name in enumerate(table.getColumnLabels()):
        xyz = data[keep, 3 * i : 3 * i + 3]
        if np.isfinite(xyz).all(axis=1).any():
            out[str(name)] = xyz
    return out


def _xml_root_tag(path: Path) -> str:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise InputDataError(f"{path}: not valid XML ({exc})") from exc
    children = list(root)
    return children[0].tag if root.tag == "OpenSimDocument" and children else root.tag


def load_task_set(path: PathLike) -> tuple[Any, dict[str, float]]:
    """Load an IKTaskSet from an IKTaskSet XML or from an InverseKinematicsTool setup.

    Returns ``(task_set, settings)``; ``settings`` holds ``accuracy`` and ``constraint_weight``
    when the file is a tool setup.
    """
    opensim = import_opensim()
    p = require_file(path, what="IK task set", field="task_set")
    tag = _xml_root_tag(p)
    if tag == "InverseKinematicsTool":
        tool = opensim.InverseKinematicsTool(str(p))
        settings = {"accuracy": tool.get_accuracy(), "constraint_weight": tool.get_constraint_weight()}
        return opensim.IKTaskSet(tool.getIKTaskSet()), settings
    if tag == "IKTaskSet":
        return opensim.IKTaskSet(str(p)), {}
    raise InputDataError(
        f"task_set: {p} holds a <{tag}>, expected an <IKTaskSet> or an <InverseKinematicsTool> setup"
    )


def default_task_set(
    *,
    model: Any,
    markers: Sequence[str],
    marker_weights: Mapping[str, float] | None = None,
    default_weight: float = 1.0,
) -> Any:
    """An IKTaskSet with one marker task per marker found in both the model and the trial.

    Weights come from ``marker_weights`` (marker name -> weight), ``default_weight`` otherwise.
    """
    opensim = import_opensim()
    weights = dict(marker_weights or {})
    model_markers = {model.getMarkerSet().get(i).getName() for i in range(model.getMarkerSet().getSize())}
    task_set = opensim.IKTaskSet()
    for name in markers:
        if name not in model_markers:
            continue
        task = opensim.IKMarkerTask()
        task.setName(name)
        weight = float(weights.get(name, default_weight))
        task.setWeight(weight)
        task.setApply(weight > 0)
        task_set.cloneAndAppend(task)
    return task_set


def apply_marker_weights(task_set: Any, marker_weights: Mapping[str, float] | None) -> None:
    """Override the weights of marker tasks named in ``marker_weights``."""
    if not marker_weights:
        return
    for i in range(task_set.getSize()):
        task = task_set.get(i)
        if task.getConcreteClassName() == "IKMarkerTask" and task.getName() in marker_weights:
            weight = float(marker_weights[task.getName()])
            task.setWeight(weight)
            task.setApply(weight > 0)


def add_coordinate_tasks(task_set: Any, model: Any, coordinate_weights: Mapping[str, float] | None) -> None:
    """Append a coordinate task per entry of ``coordinate_weights`` (coordinate -> weight).

    Each task pulls its coordinate towards the model's default value with that weight (OpenSim's
    IKCoordinateTask, value type ``default_value``): a weak prior for a coordinate the markers do
    not determine, e.g. the subtalar angle of a foot with two markers in view, which IK would
    otherwise leave to drift (a foot turned over). A coordinate task of the same name already in
    ``task_set`` is replaced. Raises :class:`InputDataError` for an unknown coordinate.
    """
    if not coordinate_weights:
        return
    opensim = import_opensim()
    coords = [model.getCoordinateSet().get(i).getName() for i in range(model.getCoordinateSet().getSize())]
    unknown = sorted(set(coordinate_weights) - set(coords))
    if unknown:
        raise InputDataError(
            f"opensim.ik_coordinate_weights: {unknown} are not coordinates of the model "
            f"({coords}); fix the names in the config or the subject file's config"
        )
    for name, weight in coordinate_weights.items():
        for i in reversed(range(task_set.getSize())):
            old = task_set.get(i)
            if old.getConcreteClassName() == "IKCoordinateTask" and old.getName() == name:
                task_set.remove(i)
        task = opensim.IKCoordinateTask()
        task.setName(name)
        task.setWeight(float(weight))
        task.setApply(float(weight) > 0)
        task.setValueType(opensim.IKCoordinateTask.DefaultValue)
        task_set.cloneAndAppend(task)


def check_tasks(*, task_set: Any, model: Any, trial_markers: Sequence[str], source: str) -> list[str]:
    """Check every applied task names something in the model; return usable marker names."""
    model_markers = {model.getMarkerSet().get(i).getName() for i in range(model.getMarkerSet().getSize())}
    coords = {model.getCoordinateSet().get(i).getName() for i in range(model.getCoordinateSet().getSize())}
    usable = []
    for i in range(task_set.getSize()):
        task = task_set.get(i)
        if not task.getApply():
            continue
        name = task.getName()
        if task.getConcreteClassName() == "IKMarkerTask":
            if name not in model_markers:
                raise MarkerNotInModelError(
                    f"{source}: IK task names marker {name!r}, which the model does not have; "
                    f"remove the task or add the marker to the marker set"
                )
            if name in trial_markers and task.getWeight() > 0:
                usable.append(name)
        elif name not in coords:
            raise OpenSimToolError(
                f"{source}: IK coordinate task names {name!r}, which is not a model coordinate"
            )
    return usable


def first_strike(events: PathLike, *, sides: Sequence[str] | None = None) -> float | None:
    """Time (s) of the earliest foot strike in an ``events.json`` (None when it has none).

    With ``sides`` (e.g. ``["right"]``), only those feet's strikes count.
    """
    import json

    p = require_file(events, what="events file", field="events")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise InputDataError(f"{p}: not valid JSON ({exc}); rerun the import stage") from exc
    values = [
        s
        for name, side in data.items()
        if isinstance(side, dict) and (not sides or name in sides)
        for s in side.get("strike", [])
    ]
    strikes = [float(s) for s in values if isinstance(s, int | float) and np.isfinite(s)]
    return min(strikes) if strikes else None


def _padded_end(
    trc: Path, times: np.ndarray, end: float, *, pad: float, markers: Sequence[str]
) -> float:
    """``end`` moved up to ``pad`` s later over frames where IK has markers to track.

    The padding stops at the first frame with fewer than ``MIN_IK_MARKERS`` of ``markers``, so
    that a trial ending without markers (left out by ``time_range``) is not brought back into IK.
    """
    if pad <= 0:
        return end
    traj = trc_markers(trc)
    seen = np.zeros(times.size, dtype=int)
    for name in markers:
        if name in traj:
            seen += np.isfinite(traj[name]).all(axis=1)
    i1 = int(np.searchsorted(times, end + 1e-9)) - 1
    while i1 < times.size - 1 and times[i1 + 1] <= end + pad + 1e-9 and seen[i1 + 1] >= MIN_IK_MARKERS:
        i1 += 1
    return float(times[i1])


def _crop(source: Path, target: Path, start: float, end: float) -> None:
    """Write the rows of OpenSim table ``source`` within ``start``-``end`` to ``target`` (Storage)."""
    opensim = import_opensim()
    table = opensim.Storage(str(source))
    times = opensim.ArrayDouble()
    table.getTimeColumn(times)
    t = np.array([times.get(i) for i in range(times.getSize())])
    inside = t[(t >= start - 1e-6) & (t <= end + 1e-6)]
    if inside.size < 2:
        raise OutputCheckError(f"ik: {source.name} has fewer than 2 frames within {start:.3f}-{end:.3f} s")
    # Storage.crop keeps the frame at or before each bound: nudge the bounds onto the wanted frames
    table.crop(float(inside[0]) + 1e-7, float(inside[-1]) + 1e-7)
    if table.getSize() != inside.size:
        raise OutputCheckError(
            f"ik: cropping {source.name} to {start:.3f}-{end:.3f} s kept {table.getSize()} frames, "
            f"expected {inside.size}"
        )
    table.printToFile(str(target), "w")


def _labels(table: Any) -> list[str]:
    """Data column labels (time excluded) of an OpenSim Storage."""
    return [table.getColumnLabels().get(i) for i in range(table.getColumnLabels().getSize())][1:]


def _column(table: Any, index: int) -> np.ndarray:
    """Data column ``index`` (0-based, time excluded) of an OpenSim Storage."""
    return np.array([table.getStateVector(i).getData().get(index) for i in range(table.getSize())])


def _body_poses(model: Any, state: Any) -> np.ndarray:
    """Every body's ground transform (rotation and position) at ``state``, flattened."""
    model.realizePosition(state)
    out = []
    for body in model.getBodySet():
        t = body.getTransformInGround(state)
        r, p = t.R(), t.p()
        out += [r.get(i, j) for i in range(3) for j in range(3)] + [p.get(i) for i in range(3)]
    return np.array(out)


def unwind_turns(
    model: Any, window: Path, others: Sequence[Path] = (), *, source: str | None = None
) -> dict[str, int]:
    """Take whole turns out of rotational coordinates that IK wound past +-180 deg.

    IK solves frame after frame from the previous solution, so a coordinate can end a full turn
    away from its anatomical value (the pelvis at -360 deg and the hip at +345 deg describe the
    same pose as 0 and -15 deg). Such values break everything that reads angles as numbers (fitted
    paths, networks, ranges). For each rotational coordinate of ``window`` (an IK .mot in degrees)
    whose median lies beyond +-180 deg, the nearest multiple of 360 deg is removed from its column
    in ``window`` and ``others`` (e.g. the padded motion), provided the model's pose at the
    window's first frame is unchanged by the shift (a coordinate that also drives translations,
    like a knee with coupled splines, is left as it is). ``source`` names the trial in the log.
    Returns ``{coordinate: turns removed}``.
    """
    from musculo.opensim_tools.common import is_rotational

    opensim = import_opensim()
    source = source or window.name
    table = opensim.Storage(str(window))
    labels = _labels(table)
    coords = model.getCoordinateSet()
    wound = {name: k for j, name in enumerate(labels) if coords.contains(name)
             and (k := int(np.round(np.median(_column(table, j)) / 360.0)))}
    if not wound:
        return {}
    state = model.initSystem()
    first = table.getStateVector(0).getData()
    rotational = {}
    for j, name in enumerate(labels):
        if coords.contains(name):
            rotational[name] = is_rotational(model, name)
            value = first.get(j)
            coords.get(name).setValue(state, np.radians(value) if rotational[name] else value, False)
    reference = _body_poses(model, state)
    turns: dict[str, int] = {}
    for name, k in wound.items():
        if not rotational[name]:
            continue
        coord = coords.get(name)
        value = coord.getValue(state)
        coord.setValue(state, value - 2 * np.pi * k, False)
        same = np.allclose(_body_poses(model, state), reference, atol=1e-7)
        coord.setValue(state, value, False)
        if same:
            turns[name] = k
        else:
            logger.warning("IK %s: %s lies %d turn(s) away but drives more than a rotation; left as "
                           "it is", source, name, k)
    if not turns:
        return turns
    for path in [window, *others]:
        data = opensim.Storage(str(path))
        names = _labels(data)
        for name, k in turns.items():
            j = names.index(name)
            for i in range(data.getSize()):
                row = data.getStateVector(i).getData()
                row.set(j, row.get(j) - 360.0 * k)
        data.printToFile(str(path), "w")
    logger.warning("IK %s: whole turns taken out of %s (the same pose)", source, turns)
    return turns


def run_ik(
    *,
    model: PathLike,
    markers_trc: PathLike,
    output_mot: PathLike,
    setup_out: PathLike,
    errors_out: PathLike,
    task_set: PathLike | None = None,
    time_range: Sequence[float] | None = None,
    max_frames: int | None = None,
    events: PathLike | None = None,
    strike_lead: float | None = None,
    strike_sides: Sequence[str] | None = None,
    off_lag: float | None = None,
    marker_weights: Mapping[str, float] | None = None,
    coordinate_weights: Mapping[str, float] | None = None,
    default_weight: float = 1.0,
    accuracy: float | None = None,
    constraint_weight: float | None = None,
    flag_limit: float = 0.04,
    pad: float = 0.0,
    padded_out: PathLike | None = None,
    log: PathLike | None = None,
) -> dict[str, Any]:
    """Run OpenSim inverse kinematics on one marker trial.

    Writes ``output_mot`` (coordinates, degrees), ``errors_out`` (OpenSim's per-frame marker
    errors: total squared, RMS and max in m) and the resolved setup ``setup_out``. Tasks come
    from ``task_set`` (an IKTaskSet XML, or an IK tool setup whose accuracy and constraint weight
    are used too), else one task per model marker present in the trial weighted by
    ``marker_weights``; ``coordinate_weights`` adds coordinate tasks towards the model's default
    values (:func:`add_coordinate_tasks`). Frames whose largest marker error exceeds ``flag_limit``
    (m) are flagged in the returned summary and the log. With ``events`` (the trial's ``events.json``) and
    ``strike_lead`` (s), the window starts that long before the first foot strike, so a short
    window (``max_frames``) still holds ground contact; with ``strike_sides`` (the sides whose
    moments are tracked) the first strike of those feet, so that their stance is in the window,
    else of either foot. With ``events`` and ``off_lag`` (s), the window ends that long after the
    trial's last foot off (either foot), so the frames after the force-plate contacts, which no
    analysis reads and where markers often leave the capture volume, are not solved. The later
    stages follow IK's window.

    With ``padded_out`` and ``pad`` > 0 (s), IK goes on for up to ``pad`` seconds of the trial
    after the window (as far as the trial has frames with markers) and writes the whole solve to
    ``padded_out``; ``output_mot`` and ``errors_out`` hold the window alone. The stages that
    differentiate the coordinates (inverse dynamics, static optimization, muscle analysis, joint
    reaction) read the padded file over IK's window, so their low-pass filter and splines do not
    end at the window's end: a window cut from a longer trial (``max_frames``, ``time_range``)
    then has no end spikes in its accelerations. The window's start is not padded: IK solves frame
    after frame from the first one, and a different first frame can settle in a different pose
    (a foot turned over, on motonms Walking5 0.2 s earlier), whereas frames solved after the window
    leave the window's solution as it is.
    """
    route_opensim_log(log)
    opensim = import_opensim()
    trc = require_file(markers_trc, what="marker file", field="markers_trc")
    osim = load_model(model)
    times = np.asarray(opensim.TimeSeriesTableVec3(str(trc)).getIndependentColumn(), dtype=float)
    if events is not None and strike_lead is not None:
        strike = first_strike(events, sides=strike_sides)
        if strike is None and strike_sides:
            strike = first_strike(events)
            if strike is not None:
                logger.warning(
                    "IK %s: no strike of the %s foot in %s; the window starts before the other foot's",
                    trc.name,
                    "/".join(strike_sides),
                    events,
                )
        if strike is None:
            logger.info("IK %s: no foot strike in %s; the window starts at the trial start", trc.name, events)
        else:
            lo = max(float(times[0]), strike - float(strike_lead))
            if time_range is not None:
                lo = max(lo, float(time_range[0]))
            hi = float(time_range[1]) if time_range is not None else float(times[-1])
            time_range = [lo, hi] if lo < hi else time_range
    if events is not None and off_lag is not None:
        span = contact_window(events)
        if span is None:
            logger.info("IK %s: no foot off in %s; the window ends at the trial end", trc.name, events)
        else:
            lo, hi = (float(times[0]), float(times[-1])) if time_range is None else map(float, time_range)
            hi = min(hi, span[1] + float(off_lag))
            time_range = [lo, hi] if lo < hi else time_range
    start, end = time_window(times, time_range=time_range, max_frames=max_frames, source=trc)
    present = sorted(trc_markers(trc, start=start, end=end))

    settings: dict[str, float] = {}
    if task_set is not None:
        tasks, settings = load_task_set(task_set)
        apply_marker_weights(tasks, marker_weights)
        source = str(task_set)
    else:
        tasks = default_task_set(
            model=osim, markers=present, marker_weights=marker_weights, default_weight=default_weight
        )
        source = str(trc)
    add_coordinate_tasks(tasks, osim, coordinate_weights)
    usable = check_tasks(task_set=tasks, model=osim, trial_markers=present, source=source)
    if len(usable) < MIN_IK_MARKERS:
        raise TooFewMarkersError(
            f"{trc}: only {len(usable)} weighted markers are both in the trial and the model "
            f"({usable}); IK needs at least {MIN_IK_MARKERS}. Check marker names against the "
            f"marker set"
        )
    solve_end = _padded_end(trc, times, end, pad=pad, markers=usable) if padded_out is not None else end
    acc = accuracy if accuracy is not None else settings.get("accuracy", 1e-5)
    cweight = (
        constraint_weight if constraint_weight is not None else settings.get("constraint_weight", math.inf)
    )

    out_mot, out_err, out_setup = Path(output_mot), Path(errors_out), Path(setup_out)
    with work_dir(out_mot) as tmp:
        tool = opensim.InverseKinematicsTool()
        tool.setName("ik")
        tool.set_IKTaskSet(tasks)
        tool.setMarkerDataFileName(str(trc))
        tool.set_accuracy(float(acc))
        tool.set_constraint_weight(float(cweight))
        tool.setStartTime(start)
        tool.setEndTime(solve_end)
        tool.set_report_errors(True)
        tool.set_model_file(str(Path(model).resolve()))
        # the setup beside the outputs names the final files (the padded motion when padding)
        tool.setResultsDir(str(out_err.parent.resolve()))
        tool.setOutputMotionFileName(str(Path(padded_out or out_mot).resolve()))
        tool.printToXML(str(tmp / "ik_setup.xml"))
        tool.setResultsDir(str(tmp))
        tool.setOutputMotionFileName(str(tmp / "ik.mot"))
        tool.setModel(osim)
        logger.info("IK %s: %.3f-%.3f s, %d marker tasks", trc.name, start, end, len(usable))
        if solve_end > end:
            logger.info("IK %s: solved on to %.3f s (padding for the filtering stages)", trc.name, solve_end)
        if not tool.run():
            raise OpenSimToolError(f"InverseKinematicsTool failed on {trc}; see the job log")
        outputs = []
        if padded_out is not None:
            n_solved = int(np.sum((times >= start - 1e-9) & (times <= solve_end + 1e-9)))
            check_table(tmp / "ik.mot", tool="ik", columns=[], min_rows=n_solved)
            outputs.append((tmp / "ik_padded.mot", Path(padded_out)))
            (tmp / "ik.mot").rename(tmp / "ik_padded.mot")
            _crop(tmp / "ik_padded.mot", tmp / "ik.mot", start, end)
            _crop(tmp / "ik_ik_marker_errors.sto", tmp / "ik_ik_marker_errors.sto", start, end)
        n_expected = int(np.sum((times >= start - 1e-9) & (times <= end + 1e-9)))
        coords = [osim.getCoordinateSet().get(i).getName() for i in range(osim.getNumCoordinates())]
        check_table(tmp / "ik.mot", tool="ik", columns=coords, min_rows=n_expected)
        turns = unwind_turns(osim, tmp / "ik.mot", [tmp / "ik_padded.mot"] if padded_out is not None else [],
                             source=trc.name)
        errors = check_table(
            tmp / "ik_ik_marker_errors.sto",
            tool="ik",
            columns=["marker_error_RMS", "marker_error_max"],
            min_rows=n_expected,
        )
        rms = errors["marker_error_RMS"].to_numpy(dtype=float)
        mx = errors["marker_error_max"].to_numpy(dtype=float)
        if np.any(rms < 0):
            raise OutputCheckError("ik: negative marker errors")
        flagged = errors.index[mx > flag_limit].to_numpy(dtype=float)
        publish(
            [
                (tmp / "ik.mot", out_mot),
                (tmp / "ik_ik_marker_errors.sto", out_err),
                (tmp / "ik_setup.xml", out_setup),
                *outputs,
            ]
        )
    if flagged.size:
        logger.warning(
            "IK %s: %d of %d frames have a marker error over %.3f m (first at %.3f s)",
            trc.name,
            flagged.size,
            len(errors),
            flag_limit,
            flagged[0],
        )
    return {
        "frames": len(errors),
        "start": start,
        "end": end,
        "solved_to": solve_end,
        "markers": len(usable),
        "marker_rms_mean": float(np.mean(rms)),
        "marker_rms_max": float(np.max(rms)),
        "marker_max": float(np.max(mx)),
        "flagged_frames": int(flagged.size),
        "flag_limit": flag_limit,
        "turns_removed": turns,
    }
