"""Deep checks of a subject: its files opened and compared with the subject file and the model.

:func:`load_subject` checks the subject file itself (schema, files exist, muscle lists agree).
:func:`check_subject` goes further, before any OpenSim stage runs: it opens every trial (C3D, or
TRC + GRF + ANC) and the generic model and marker set, and reports one :class:`Problem` per finding
with the fix: unreadable, empty or truncated files, checksum mismatches, EMG labels missing from the
analog channels, muscles and coordinates not in the model, marker-set markers missing from the static
trial, rates and units, the walking direction against ``lab_frame.forward``, ``time_range`` outside
the trial's time axis, and trials that start or end with no marker at all.
"""

from __future__ import annotations

import copy
import difflib
import os
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musculo import logger
from musculo.errors import MusculoError, SubjectFileError
from musculo.subject import Subject, load_subject
from musculo.trial_import import (
    RawTrial,
    _read_raw,
    _rotate,
    check_analog_duration,
    check_empty_frames,
    check_time_range,
    condition_plate,
    swapped_pairs,
)

GRAVITY = 9.80665
_AXIS_NAMES = "XYZ"


@dataclass(frozen=True)
class Problem:
    """One finding: ``error`` (the run would fail or give wrong results) or ``warning``."""

    level: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.level.upper()} {self.where}: {self.message}"


@dataclass
class ModelInfo:
    """Names read from an OpenSim model file (and its marker set)."""

    muscles: list[str]
    coordinates: list[str]
    bodies: list[str]
    markers: list[str]


def _names(root: ET.Element, *, suffix: str) -> list[str]:
    return [el.get("name", "") for el in root.iter() if el.tag.endswith(suffix) and el.get("name")]


def read_model_names(
    model: str | os.PathLike[str], marker_set: str | os.PathLike[str] | None = None
) -> ModelInfo:
    """Muscles, coordinates and bodies of an ``.osim`` file and the markers of a MarkerSet XML.

    Parses the XML (no OpenSim needed). Raises :class:`SubjectFileError` for a file that is not XML.
    """
    try:
        root = ET.parse(model).getroot()
    except (ET.ParseError, OSError) as exc:
        raise SubjectFileError(
            f"{model}: cannot read the model ({exc}); is it an OpenSim .osim file?"
        ) from None
    muscles: list[str] = []
    for force_set in root.iter("ForceSet"):
        for el in force_set.iter():
            if el.tag.endswith("Muscle") and el.get("name"):
                muscles.append(el.get("name", ""))
    markers: list[str] = []
    if marker_set is not None:
        try:
            mroot = ET.parse(marker_set).getroot()
        except (ET.ParseError, OSError) as exc:
            raise SubjectFileError(
                f"{marker_set}: cannot read the marker set ({exc}); is it an OpenSim MarkerSet XML?"
            ) from None
        markers = [el.get("name", "") for el in mroot.iter("Marker") if el.get("name")]
    return ModelInfo(
        muscles=muscles,
        coordinates=_names(root, suffix="Coordinate"),
        bodies=[el.get("name", "") for el in root.iter("Body") if el.get("name")],
        markers=markers,
    )


def _close(name: str, options: list[str]) -> str:
    match = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def walking_direction(raw: RawTrial, *, up: str, min_travel: float = 500.0) -> str | None:
    """Lab axis (e.g. ``"+Y"``) along which the markers travel most, or None if they travel less
    than ``min_travel`` mm horizontally (squats, sit-to-stand, treadmill)."""
    up_axis = _AXIS_NAMES.index(up[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # frames without any marker
        centre = np.nanmedian(raw.markers, axis=1)  # (T, 3) mm
    ok = ~np.isnan(centre).any(axis=1)
    if ok.sum() < 2:
        return None
    travel = centre[ok][-1] - centre[ok][0]
    travel[up_axis] = 0.0
    k = int(np.argmax(np.abs(travel)))
    if abs(travel[k]) < min_travel:
        return None
    return ("+" if travel[k] > 0 else "-") + _AXIS_NAMES[k]


def check_subject(
    path: str | os.PathLike[str],
    *,
    mirrors: list[str | os.PathLike[str]] | None = None,
    download: bool = False,
    min_static_markers: int = 6,
    force_threshold: float = 20.0,
) -> tuple[Subject | None, list[Problem], dict[str, Any]]:
    """Open a subject's files and compare them with its subject file and model.

    Returns the subject (None when the subject file itself is invalid), the problems found (one per
    finding, each naming what to change) and a suggested subject file (a copy of the raw subject
    file with the fixes that can be derived from the data applied).
    """
    problems: list[Problem] = []
    try:
        subject = load_subject(path)
    except SubjectFileError as exc:
        return None, [Problem("error", str(path), str(exc))], {}
    suggested = copy.deepcopy(subject.raw)
    src = str(subject.path)
    if subject.is_twin and not (subject.dir / str(subject.raw["model"])).is_file():
        problems.append(Problem("warning", src, "digital twin whose files are not generated yet "
                                "(the workflow's twin_generate rule writes them); files not opened"))
        return subject, problems, suggested

    def add(level: str, where: str, message: str) -> None:
        problems.append(Problem(level, where, message))

    def local(ref: Any, where: str) -> Path | None:
        try:
            p = subject.resolve(ref, mirrors=mirrors, download=download)
        except MusculoError as exc:
            add("error", where, str(exc))
            return None
        if not p.is_file():
            add("error", where, f"{p} does not exist")
            return None
        if p.stat().st_size == 0:
            add("error", where, f"{p} is empty (0 bytes); copy the file again from the lab")
            return None
        return p

    # model and marker set
    info: ModelInfo | None = None
    model = local(subject.raw["model"], f"{src}: model")
    mset = local(subject.raw["marker_set"], f"{src}: marker_set")
    if model is not None and mset is not None:
        try:
            info = read_model_names(model, mset)
        except SubjectFileError as exc:
            add("error", f"{src}: model", str(exc))
    if info is not None:
        for key, names in (("unmeasured", subject.unmeasured), ("hide", subject.hide)):
            for m in names:
                if m not in info.muscles:
                    add("error", f"{src}: {key}", f"muscle {m!r} is not in the model {model.name}"
                        f"{_close(m, info.muscles)}; use a muscle name of the model")
        for ch, muscles in subject.emg_channels.items():
            for m in muscles:
                if m not in info.muscles:
                    add("error", f"{src}: emg.channels.{ch}", f"muscle {m!r} is not in the model "
                        f"{model.name}{_close(m, info.muscles)}; use a muscle name of the model")
            sides = {m.rsplit("_", 1)[-1] for m in muscles if m.rsplit("_", 1)[-1] in ("r", "l")}
            if len(sides) > 1:
                add("warning", f"{src}: emg.channels.{ch}", "one channel is mapped to muscles of both "
                    "sides; map each channel to the muscles under its electrode")
            if not sides:
                add("warning", f"{src}: emg.channels.{ch}", "the muscles have no side suffix (_r/_l); "
                    "check that the channel is mapped to the side it was recorded on")
        for c in subject.coordinates:
            if c not in info.coordinates:
                add("error", f"{src}: coordinates", f"coordinate {c!r} is not in the model "
                    f"{model.name}{_close(c, info.coordinates)}; use a coordinate name of the model")
        for foot, names in subject.raw.get("foot_markers", {}).items():
            for n in names:
                if info.markers and n not in info.markers:
                    add("warning", f"{src}: foot_markers.{foot}", f"marker {n!r} is not in the marker "
                        f"set {mset.name}; plates are assigned from trial markers, so it must be in them")

    # trials
    forward = subject.raw["lab_frame"]["forward"]
    up = subject.raw["lab_frame"]["up"]
    directions: list[str] = []
    for i, trial in enumerate(subject.trials):
        where = f"{src}: trials[{i}] ({trial.name})"
        files: dict[str, Any] = {}
        for key in ("file", "grf", "analog"):
            ref = getattr(trial, key)
            if ref is not None:
                p = local(ref, f"{where}.{key}")
                if p is None:
                    break
                files[key] = str(p)
        else:
            try:
                raw = _read_raw(subject, files, trial.name)
            except MusculoError as exc:
                add("error", f"{where}.file", str(exc))
                continue
            _check_trial(subject, trial, raw, files, where, add, suggested, i,
                         info=info, min_static_markers=min_static_markers,
                         force_threshold=force_threshold)
            if trial.role == "dynamic":
                d = walking_direction(raw, up=up)
                if d is not None:
                    directions.append(d)
    if directions:
        main = max(set(directions), key=directions.count)
        if main[1] != forward[1] or main[0] != forward[0]:
            if main[1] == up[1]:
                pass
            elif directions.count(main) > len(directions) / 2:
                add("error", f"{src}: lab_frame.forward", f"the subject moves along {main} in "
                    f"{directions.count(main)} of {len(directions)} dynamic trials, but lab_frame.forward "
                    f"is {forward}; set lab_frame: {{up: {up}, forward: {main}}}")
                suggested["lab_frame"]["forward"] = main
    return subject, problems, suggested


def _check_trial(
    subject: Subject, trial: Any, raw: RawTrial, files: dict[str, Any], where: str, add: Any,
    suggested: dict[str, Any], index: int, *, info: ModelInfo | None, min_static_markers: int,
    force_threshold: float,
) -> None:
    """Checks of one opened trial (see :func:`check_subject`)."""
    source = Path(files["file"])
    time = raw.time
    t_span = f"{time[0]:.4g}-{time[-1]:.4g} s" if len(time) else "empty"
    logger.info("%s: %d frames at %g Hz (%s), %d markers, %d analog channels, %d plates",
                where, len(time), raw.rate, t_span, len(raw.labels), len(raw.emg_labels), len(raw.plates))
    if len(time) < 2:
        add("error", f"{where}.file", f"{source} holds {len(time)} frame(s); a trial needs a recording")
        return
    rng = list(trial.time_range) if trial.time_range else None
    try:
        check_time_range(time, rng, source=source, subject_file=subject.path, trial=trial.name)
    except MusculoError as exc:
        add("error", f"{where}.time_range", str(exc))
        suggested["trials"][index]["time_range"] = [round(float(time[0]), 4), round(float(time[-1]), 4)]
        rng = None
    try:
        check_empty_frames(time, raw.markers, rng, source=source, subject_file=subject.path, trial=trial.name)
    except MusculoError as exc:
        add("error", f"{where}", str(exc))
        seen = (~np.isnan(raw.markers).any(axis=2)).any(axis=1)
        keep = seen & ((time >= rng[0]) & (time <= rng[1]) if rng else True)
        if keep.any():
            idx = np.flatnonzero(keep)
            suggested["trials"][index]["time_range"] = [round(float(time[idx[0]]), 4),
                                                       round(float(time[idx[-1]]), 4)]
    # units: a body spans about 1-2 m; metres written as mm (or the reverse) are off by 1000
    extent = np.nanmax(raw.markers, axis=(0, 1)) - np.nanmin(raw.markers, axis=(0, 1)) if np.isfinite(
        raw.markers).any() else np.zeros(3)
    size = float(np.max(extent))
    if np.isfinite(raw.markers).any() and (size < 50.0 or size > 50000.0):
        add("error", f"{where}.file", f"{source}: the markers span {size:.3g} mm, not a human body: the "
            "marker units are wrong (POINT:UNITS, or the TRC Units header, must match the data: mm or m)")
    # left/right marker pairs recorded swapped
    swapped = swapped_pairs(raw.labels, _rotate(raw.markers, subject.lab_to_opensim()), up=1)
    for r, left, agree in swapped:
        add("warning", f"{where}.file", f"markers {r} and {left} look swapped: {r} is left of {left} in "
            f"{100 * (1 - agree):.0f}% of frames, against the other left/right pairs; add swap_markers: "
            f"[[{r}, {left}]] to the trial, or fix the labels in the file")
    if swapped:
        pairs = [list(x) for x in suggested["trials"][index].get("swap_markers", [])]
        suggested["trials"][index]["swap_markers"] = pairs + [[r, left] for r, left, _ in swapped]
    # marker set markers in the static trial
    if trial.role == "static" and info is not None and info.markers:
        present = [m for m in info.markers if m in raw.labels and not np.isnan(
            raw.markers[:, raw.labels.index(m)]).all()]
        if len(present) < min_static_markers:
            add("error", f"{where}.file", f"only {len(present)} markers of the marker set are in the static "
                f"trial ({', '.join(present) or 'none'}); the marker set names {', '.join(info.markers[:12])}"
                f"{'...' if len(info.markers) > 12 else ''} and the trial has {', '.join(raw.labels[:12])}"
                f"{'...' if len(raw.labels) > 12 else ''}: rename the markers in the marker set")
        elif len(present) < len(info.markers):
            missing = [m for m in info.markers if m not in present]
            add("warning", f"{where}.file", f"markers of the marker set not in the static trial (not used "
                f"for scaling): {', '.join(missing)}")
    for foot, names in subject.raw.get("foot_markers", {}).items():
        absent = [n for n in names if n not in raw.labels]
        if absent and trial.role != "static":
            add("error", f"{where}.file", f"foot_markers.{foot} {absent} are not in the trial"
                f"{_close(absent[0], raw.labels)}; markers present: {', '.join(raw.labels)}")
    # analog rate and EMG labels
    if raw.emg is not None and raw.emg.shape[0] and raw.emg_rate > 0:
        try:
            check_analog_duration(n_samples=raw.emg.shape[0], analog_rate=raw.emg_rate, marker_time=time,
                                  marker_rate=raw.rate, source=Path(files.get("analog", source)))
        except MusculoError as exc:
            add("error", f"{where}.file", str(exc))
    if trial.role in ("dynamic", "mvc") and subject.emg_channels:
        absent = [c for c in subject.emg_channels if c not in raw.emg_labels]
        for c in absent:
            add("error", f"{subject.path}: emg.channels.{c}", f"channel {c!r} is not among the analog "
                f"channels of {source.name}{_close(c, raw.emg_labels)}; its channels (spaces and colons "
                f"cleaned to '_'): {', '.join(raw.emg_labels)}")
    # plates
    if trial.role == "dynamic":
        if not raw.plates or raw.grf_time is None:
            add("error", f"{where}.file", f"{source}: a dynamic trial needs force plates (or a grf file)")
            return
        rate = 1.0 / float(np.median(np.diff(raw.grf_time)))
        loaded = []
        for p in raw.plates:
            cp = condition_plate(p, rate=rate, threshold=force_threshold, cutoff=min(6.0, 0.4 * rate),
                                 order=2, min_contact=0.05)
            # lab up may be any axis: test the magnitude of the force
            mag = np.linalg.norm(np.nan_to_num(p.force), axis=1)
            if cp.contacts or (mag > force_threshold).mean() > 0.02:
                loaded.append(p.number)
        if not loaded:
            add("error", f"{where}.file", f"no force plate of {source.name} is loaded above "
                f"{force_threshold:g} N; check the plate channels or give the trial role 'static'")
        fp = subject.force_plates
        if isinstance(fp, dict):
            numbers = [p.number for p in raw.plates]
            for n in fp:
                if n not in numbers:
                    add("error", f"{subject.path}: force_plates", f"plate {n} does not exist in "
                        f"{source.name} (plates {numbers}); number plates 1..{len(numbers)} in file order")
            for n in loaded:
                if n not in fp:
                    add("error", f"{subject.path}: force_plates", f"plate {n} is loaded in {source.name} "
                        f"but not listed, so its load would be lost; assign it or write {{{n}: none}}")
    if trial.role == "static" and raw.plates and raw.grf_time is not None:
        total = sum(np.nan_to_num(p.force) for p in raw.plates)
        weight = float(np.median(np.linalg.norm(total, axis=1)))
        if weight > 100.0:
            mass = weight / GRAVITY
            if abs(mass - subject.mass) > 0.1 * subject.mass:
                add("warning", f"{subject.path}: mass", f"the static trial's plates carry {mass:.1f} kg "
                    f"but mass is {subject.mass:g} kg; check the mass (or the plates)")
