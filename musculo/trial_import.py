"""Import of a raw trial into OpenSim inputs.

A trial is either a C3D file (markers, force plates, analog EMG) or a TRC marker file with a GRF
``.mot`` and an ASCII ``.anc`` analog file. The import writes, in the trial's results folder:
``markers.trc`` (OpenSim frame: X forward, Y up; mm), and for dynamic and MVC trials ``grf.mot``
(force on the body per foot, N; centre of pressure, m; free moment, N m; low-pass filtered),
``external_loads.xml`` (OpenSim ExternalLoads reading ``grf.mot``), ``events.json`` (foot strikes and
foot offs, s) and ``emg_raw.npz`` (the subject's EMG channels, raw volts).

Everything is computed before anything is written, and each file is written atomically, so a bad
input leaves no output behind.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import interpolate

from musculo import logger
from musculo.errors import InputDataError
from musculo.io.anc import read_anc
from musculo.io.atomic import atomic_output
from musculo.io.c3d import clean_labels, read_c3d
from musculo.io.tables import read_sto, write_sto
from musculo.io.trc import read_trc, write_trc
from musculo.signals import lowpass, runs
from musculo.subject import Subject, load_subject

FEET = ("right", "left")
_SUFFIX = {"right": "r", "left": "l"}
_TO_MM = {"mm": 1.0, "m": 1000.0, "cm": 10.0}


class MissingMarkerError(InputDataError):
    """A marker the subject file requires is not in the trial."""


class MissingChannelError(InputDataError):
    """An EMG channel of the subject file is not among the trial's analog channels."""


class UnloadedPlateError(InputDataError):
    """A force plate assigned to a foot is never loaded in the trial."""


@dataclass
class Plate:
    """One plate's ground reaction in OpenSim's frame, at ``rate`` Hz."""

    number: int
    force: np.ndarray  # (N, 3) N, force on the body
    cop: np.ndarray  # (N, 3) m
    moment: np.ndarray  # (N, 3) N m, free moment about the centre of pressure
    corners: np.ndarray | None = None  # (4, 3) m
    contacts: list[tuple[int, int]] = field(default_factory=list)  # loaded sample ranges [a, b)


@dataclass
class RawTrial:
    """A trial read from its raw files, in lab coordinates."""

    time: np.ndarray
    labels: list[str]
    markers: np.ndarray  # (T, M, 3) mm
    rate: float
    plates: list[Plate]
    grf_time: np.ndarray | None
    emg_labels: list[str]
    emg: np.ndarray | None  # (N, C) V
    emg_rate: float
    emg_t0: float
    events: list[tuple[str, str, float]]


def fill_marker_gaps(
    *, time: np.ndarray, labels: list[str], data: np.ndarray, max_gap: float
) -> tuple[np.ndarray, dict[str, list[list[float]]]]:
    """Fill marker gaps no longer than ``max_gap`` s with a cubic spline; report the longer ones.

    Returns the filled (T, M, 3) array (long gaps, and gaps at the start or end, stay NaN) and,
    per marker with unfilled samples, its unfilled spans as [start, end] times.
    """
    out = np.array(data, dtype=float, copy=True)
    dt = float(np.median(np.diff(time))) if len(time) > 1 else 1.0
    long_gaps: dict[str, list[list[float]]] = {}
    for j, name in enumerate(labels):
        missing = np.isnan(out[:, j, :]).any(axis=1)
        if not missing.any():
            continue
        valid = ~missing
        spline = interpolate.CubicSpline(time[valid], out[valid, j, :], axis=0) if valid.sum() >= 4 else None
        for a, b in runs(missing):
            inside = a > 0 and b < len(time)
            if spline is not None and inside and (b - a) * dt <= max_gap + 1e-9:
                out[a:b, j, :] = spline(time[a:b])
            else:
                long_gaps.setdefault(name, []).append([float(time[a]), float(time[b - 1])])
    return out, long_gaps


def condition_plate(
    plate: Plate, *, rate: float, threshold: float, cutoff: float, order: int, min_contact: float
) -> Plate:
    """Threshold, filter and tidy one plate (in OpenSim's frame, Y up).

    Contact is where the raw vertical force exceeds ``threshold`` for at least ``min_contact`` s.
    Force and free moment are low-pass filtered and zeroed outside contact; the centre of pressure,
    undefined outside contact, is filtered within each contact and held at its nearest contact value
    elsewhere (its value does not matter there: the force is zero).
    """
    fy = np.nan_to_num(plate.force[:, 1])
    loaded = fy > threshold
    contacts = [(a, b) for a, b in runs(loaded) if (b - a) / rate >= min_contact]
    mask = np.zeros(len(fy), bool)
    for a, b in contacts:
        mask[a:b] = True
    force = lowpass(np.nan_to_num(plate.force), rate=rate, cutoff=cutoff, order=order)
    moment = lowpass(np.nan_to_num(plate.moment), rate=rate, cutoff=cutoff, order=order)
    force[~mask] = 0.0
    moment[~mask] = 0.0
    cop = np.full_like(plate.cop, np.nan)
    for a, b in contacts:
        seg = plate.cop[a:b].copy()
        bad = np.isnan(seg).any(axis=1)
        if bad.all():
            continue
        if bad.any():
            idx = np.arange(b - a)
            for k in range(3):
                seg[bad, k] = np.interp(idx[bad], idx[~bad], seg[~bad, k])
        cop[a:b] = lowpass(seg, rate=rate, cutoff=cutoff, order=order)
    if contacts:
        known = ~np.isnan(cop).any(axis=1)
        idx = np.arange(len(cop))
        nearest = np.interp(idx, idx[known], idx[known]).round().astype(int) if known.any() else idx
        cop = np.where(known[:, None], cop, cop[nearest] if known.any() else 0.0)
    cop = np.nan_to_num(cop)
    return Plate(
        number=plate.number, force=force, cop=cop, moment=moment, corners=plate.corners, contacts=contacts
    )


def _read_raw(subject: Subject, trial: dict[str, Any], name: str) -> RawTrial:
    """Read a trial's raw files (C3D, or TRC + GRF .mot + ANC) in lab coordinates."""
    path = Path(trial["file"])
    events: list[tuple[str, str, float]] = []
    emg_labels: list[str] = []
    emg = None
    emg_rate = 0.0
    emg_t0 = 0.0
    plates: list[Plate] = []
    grf_time = None
    if path.suffix.lower() == ".c3d":
        c3d = read_c3d(path)
        time, labels, markers, rate = c3d.time, c3d.marker_labels, c3d.markers, c3d.marker_rate
        events = c3d.events
        grf_time = c3d.analog_time
        for p in c3d.plates:
            plates.append(
                Plate(number=p.number, force=p.force, cop=p.cop, moment=p.free_moment, corners=p.corners)
            )
        emg_labels, emg, emg_rate, emg_t0 = c3d.analog_labels, c3d.analog, c3d.analog_rate, c3d.analog_time[0]
        units = c3d.analog_units
        if emg is not None and len(units) == emg.shape[1]:
            scale = np.array(
                [1e-3 if u.lower() == "mv" else 1e-6 if u.lower() in ("uv", "µv") else 1.0 for u in units]
            )
            emg = emg * scale
    else:
        trc = read_trc(path)
        units = trc.units.strip().lower()
        if units not in _TO_MM:
            raise InputDataError(f"{path}: TRC Units is {trc.units!r}; expected mm, cm or m")
        time, labels, markers, rate = trc.time, clean_labels(trc.labels), trc.data * _TO_MM[units], trc.rate
        markers = np.where(np.all(markers == 0.0, axis=2, keepdims=True), np.nan, markers)
        if trial.get("grf"):
            grf_time, plates = _read_grf_mot(Path(trial["grf"]))
        if trial.get("analog"):
            anc = read_anc(trial["analog"])
            emg_labels, emg, emg_rate, emg_t0 = (
                clean_labels(anc.labels, drop_prefix=False),
                anc.data,
                anc.rate,
                float(anc.time[0]),
            )
    swaps = next((t.swap_markers for t in subject.trials if t.name == name), ())
    labels = swap_labels(list(labels), swaps, source=path, subject_file=subject.path, trial=name)
    return RawTrial(
        time=np.asarray(time, float),
        labels=list(labels),
        markers=markers,
        rate=float(rate),
        plates=plates,
        grf_time=grf_time,
        emg_labels=emg_labels,
        emg=emg,
        emg_rate=emg_rate,
        emg_t0=float(emg_t0),
        events=events,
    )


def swap_labels(
    labels: list[str], pairs: Sequence[tuple[str, str]], *, source: Path, subject_file: Path, trial: str
) -> list[str]:
    """``labels`` with each pair of the trial's ``swap_markers`` exchanged (their trajectories swap)."""
    out = list(labels)
    for a, b in pairs:
        absent = [n for n in (a, b) if n not in out]
        if absent:
            raise InputDataError(
                f"{subject_file}: trial {trial}: swap_markers names {absent}, not markers of "
                f"{source.name}; markers present: {', '.join(labels)}"
            )
        i, j = out.index(a), out.index(b)
        out[i], out[j] = b, a
    return out


def lateral_pairs(labels: Sequence[str]) -> list[tuple[str, str]]:
    """Right/left marker pairs by name: ``R<x>`` and ``L<x>`` both present (``RASI``/``LASI``)."""
    names = set(labels)
    return [(n, "L" + n[1:]) for n in labels if n.startswith("R") and len(n) > 1 and "L" + n[1:] in names]


def swapped_pairs(
    labels: Sequence[str], markers: np.ndarray, *, up: int = 1, min_pairs: int = 4, min_width: float = 30.0,
    max_agree: float = 0.2,
) -> list[tuple[str, str, float]]:
    """Right/left marker pairs whose right marker lies on the left, against the other pairs.

    ``markers`` (T, M, 3), mm, with axis ``up`` vertical. Per frame, the horizontal direction from
    each left marker to its right one is compared with the sum of the other pairs' directions; a
    pair that agrees in at most ``max_agree`` of its frames (a swapped pair disagrees in nearly all;
    arms and hands crossing the midline disagree in about half) is returned as ``(right, left,
    share of frames that agree)``. Pairs closer than ``min_width`` (mm) are too narrow to judge; fewer than
    ``min_pairs`` judged pairs give no verdict.
    """
    pairs = lateral_pairs(labels)
    horizontal = [k for k in range(3) if k != up]
    dirs, kept = [], []
    for r, left in pairs:
        d = markers[:, labels.index(r), horizontal] - markers[:, labels.index(left), horizontal]
        width = np.linalg.norm(d, axis=1)
        if not np.isfinite(width).any() or np.nanmedian(width) < min_width:
            continue
        dirs.append(d / np.where(width > 0, width, np.nan)[:, None])
        kept.append((r, left))
    if len(kept) < min_pairs:
        return []
    unit = np.stack(dirs)  # (P, T, 2)
    total = np.nansum(unit, axis=0)
    out = []
    for k, (r, left) in enumerate(kept):
        others = total - np.nan_to_num(unit[k])
        dot = np.einsum("tj,tj->t", unit[k], others)
        valid = np.isfinite(dot) & (np.linalg.norm(others, axis=1) > 0)
        if valid.sum() == 0:
            continue
        agree = float(np.mean(dot[valid] > 0))
        if agree <= max_agree:
            out.append((r, left, agree))
    return out


def _read_grf_mot(path: Path) -> tuple[np.ndarray, list[Plate]]:
    """Read an OpenSim GRF .mot: one plate per force column group ``<prefix>vx vy vz``, in file order."""
    df = read_sto(path)
    cols = list(df.columns)
    plates: list[Plate] = []
    for c in cols:
        if not c.endswith("vx"):
            continue
        prefix = c[:-1]  # e.g. ground_force_r_v, 1_ground_force_v
        base = c[:-2]  # ground_force_r_
        force_cols = [prefix + a for a in "xyz"]
        point_cols = [base + "p" + a for a in "xyz"]
        torque_base = base.replace("force", "torque")
        torque_cols = [torque_base + a for a in "xyz"]
        missing = [k for k in force_cols + point_cols + torque_cols if k not in cols]
        if missing:
            raise InputDataError(f"{path}: force columns {force_cols} lack their companions {missing}")
        plates.append(
            Plate(
                number=len(plates) + 1,
                force=df[force_cols].to_numpy(float),
                cop=df[point_cols].to_numpy(float),
                moment=df[torque_cols].to_numpy(float),
            )
        )
    if not plates:
        raise InputDataError(f"{path}: no force columns ending in vx/vy/vz; is this a GRF .mot file?")
    return np.asarray(df.index, dtype=float), plates


def _rotate(x: np.ndarray, rot: np.ndarray) -> np.ndarray:
    return x @ rot.T


def _assign_contacts(
    plates: list[Plate],
    *,
    subject: Subject,
    time: np.ndarray,
    labels: list[str],
    markers: np.ndarray,
    grf_time: np.ndarray,
    source: Path,
) -> list[tuple[Plate, int, int, str]]:
    """Assign each contact (plate, [a, b)) to a foot, from the subject file or the nearest foot markers."""
    fixed = subject.force_plates
    out: list[tuple[Plate, int, int, str]] = []
    if isinstance(fixed, dict):
        numbers = [p.number for p in plates]
        unknown = sorted(n for n in fixed if n not in numbers)
        if unknown:
            raise UnloadedPlateError(
                f"{source}: force_plates in {subject.path} names plate(s) {unknown}, but the trial has "
                f"plates {numbers}; number the plates 1..{len(numbers)} in file order"
            )
        dropped = [p.number for p in plates if p.number not in fixed and p.contacts]
        if dropped:
            raise UnloadedPlateError(
                f"{source}: force plate(s) {dropped} are loaded but not listed in force_plates of "
                f"{subject.path}, so their load would be lost; assign them to a foot, or write "
                f"{{{dropped[0]}: none}} to leave a plate out on purpose"
            )
    for plate in plates:
        if isinstance(fixed, dict):
            foot = fixed.get(plate.number, "none")
            if foot == "none":
                continue
            if not plate.contacts:
                raise UnloadedPlateError(
                    f"{source}: force plate {plate.number} is assigned to the {foot} foot in "
                    f"{subject.path} (force_plates) but is never loaded above the force threshold; "
                    f"set force_plates: {{'{plate.number}': none}} for this subject or check the plate "
                    "channels"
                )
            out += [(plate, a, b, foot) for a, b in plate.contacts]
            continue
        if not plate.contacts:
            logger.warning("%s: force plate %d is never loaded; left out", source.name, plate.number)
            continue
        for a, b in plate.contacts:
            mid = 0.5 * (grf_time[a] + grf_time[b - 1])
            k = int(np.clip(np.searchsorted(time, mid), 0, len(time) - 1))
            cop = plate.cop[a:b].mean(axis=0) * 1000.0
            best, dist = "none", np.inf
            for foot in FEET:
                names = subject.raw.get("foot_markers", {}).get(foot, [])
                idx = [labels.index(n) for n in names if n in labels]
                pos = np.nanmean(markers[k, idx, :], axis=0) if idx else np.full(3, np.nan)
                d = float(np.hypot(pos[0] - cop[0], pos[2] - cop[2]))
                if np.isfinite(d) and d < dist:
                    best, dist = foot, d
            if best == "none":
                raise MissingMarkerError(
                    f"{source}: cannot assign force plate {plate.number} to a foot: no foot marker "
                    f"(foot_markers in {subject.path}) is visible at t={mid:.3f} s"
                )
            out.append((plate, a, b, best))
    return out


def _feet_grf(
    assigned: list[tuple[Plate, int, int, str]], n: int
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Sum the contacts of each foot: force, force-weighted centre of pressure, moment about it."""
    feet = {}
    for foot in FEET:
        parts = [(p, a, b) for p, a, b, f in assigned if f == foot]
        force = np.zeros((n, 3))
        cop_num = np.zeros((n, 3))
        weight = np.zeros(n)
        for p, a, b in parts:
            force[a:b] += p.force[a:b]
            w = np.clip(p.force[a:b, 1], 0.0, None)
            cop_num[a:b] += w[:, None] * p.cop[a:b]
            weight[a:b] += w
        cop = np.zeros((n, 3))
        ok = weight > 0
        cop[ok] = cop_num[ok] / weight[ok, None]
        if ok.any():  # hold the centre of pressure outside contact (the force is zero there)
            idx = np.arange(n)
            nearest = np.interp(idx, idx[ok], idx[ok]).round().astype(int)
            cop = np.where(ok[:, None], cop, cop[nearest])
        moment = np.zeros((n, 3))
        for p, a, b in parts:
            lever = p.cop[a:b] - cop[a:b]
            moment[a:b] += np.cross(lever, p.force[a:b]) + p.moment[a:b]
        feet[foot] = (force, cop, moment)
    return feet


def _events(
    feet: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    grf_time: np.ndarray,
    c3d_events: list[tuple[str, str, float]],
    *,
    threshold: float,
    tolerance: float = 0.05,
) -> dict[str, dict[str, list[float]]]:
    """Foot strikes and offs from the vertical force of each foot, merged with the C3D events."""
    out: dict[str, dict[str, list[float]]] = {}
    for foot in FEET:
        fy = feet[foot][0][:, 1]
        strikes, offs = [], []
        for a, b in runs(fy > threshold):
            if a > 0:
                strikes.append(float(grf_time[a]))
            if b < len(fy):
                offs.append(float(grf_time[b - 1]))
        for ctx, label, t in c3d_events:
            if ctx.lower() != foot:
                continue
            kind = "strike" if "strike" in label.lower() else "off" if "off" in label.lower() else None
            target = strikes if kind == "strike" else offs if kind == "off" else None
            if target is not None and all(abs(t - x) > tolerance for x in target):
                target.append(float(t))
        out[foot] = {"strike": sorted(round(x, 5) for x in strikes), "off": sorted(round(x, 5) for x in offs)}
    return out


def check_time_range(
    time: np.ndarray, rng: list[float] | tuple[float, float] | None, *, source: Path,
    subject_file: Path | str, trial: str,
) -> None:
    """Raise :class:`InputDataError` when a trial's ``time_range`` is not within its time axis."""
    if not rng or not len(time):
        return
    lo, hi = float(time[0]), float(time[-1])
    step = float(np.median(np.diff(time))) if len(time) > 1 else 0.0
    if rng[0] < lo - step - 1e-9 or rng[1] > hi + step + 1e-9 or rng[1] - rng[0] < 2 * step:
        raise InputDataError(
            f"{source}: time_range {list(rng)} of trial {trial!r} in {subject_file} is not within the "
            f"trial's time axis [{lo:.4g}, {hi:.4g}] s (a C3D's time starts at first_frame / rate, "
            f"here {lo:.4g} s, not at 0); give a range inside it, e.g. time_range: [{lo:.4g}, {hi:.4g}]"
        )


def empty_spans(time: np.ndarray, markers: np.ndarray) -> tuple[int, int]:
    """Number of frames at the start and at the end of a trial in which no marker is seen."""
    seen = ~np.isnan(markers).any(axis=2)  # (T, M)
    any_seen = seen.any(axis=1)
    if not any_seen.any():
        return len(time), len(time)
    first = int(np.argmax(any_seen))
    last = int(len(any_seen) - 1 - np.argmax(any_seen[::-1]))
    return first, len(any_seen) - 1 - last


def check_empty_frames(
    time: np.ndarray, markers: np.ndarray, rng: list[float] | tuple[float, float] | None, *,
    source: Path, subject_file: Path | str, trial: str,
) -> None:
    """Raise :class:`InputDataError` when the analysed window starts or ends with frames holding no
    marker at all (inverse kinematics cannot solve them); the message gives a time_range that fits."""
    keep = (time >= rng[0] - 1e-9) & (time <= rng[1] + 1e-9) if rng else np.ones(len(time), bool)
    t, m = time[keep], markers[keep]
    if not len(t):
        return
    head, tail = empty_spans(t, m)
    if head == len(t):
        raise InputDataError(
            f"{source}: trial {trial!r} holds no marker in any frame"
            + (f" of its time_range {list(rng)}" if rng else "")
            + f"; check the file or the time_range in {subject_file}"
        )
    if head or tail:
        start, end = float(t[head]), float(t[len(t) - 1 - tail])
        raise InputDataError(
            f"{source}: trial {trial!r} has {head} frame(s) at the start and {tail} at the end with no "
            f"marker at all ({t[0]:.4g}-{t[-1]:.4g} s), which inverse kinematics cannot solve; set "
            f"time_range: [{start:.4g}, {end:.4g}] for this trial in {subject_file}"
        )


def check_analog_duration(
    *, n_samples: int, analog_rate: float, marker_time: np.ndarray, marker_rate: float, source: Path,
) -> None:
    """Raise :class:`InputDataError` when the analog samples at their stated rate do not span the
    marker recording (a wrong analog rate in the header shifts EMG and forces against the markers)."""
    marker_span = len(marker_time) / marker_rate
    analog_span = n_samples / analog_rate
    if abs(analog_span - marker_span) > max(0.01 * marker_span, 2.0 / marker_rate):
        implied = n_samples / marker_span
        raise InputDataError(
            f"{source}: {n_samples} analog samples at the stated {analog_rate:g} Hz last {analog_span:.4g} s "
            f"but the markers last {marker_span:.4g} s: the analog rate is wrong (the samples imply "
            f"about {implied:.0f} Hz); correct the rate in the file header"
        )


def external_loads_xml(path: str | os.PathLike[str], *, datafile: str = "grf.mot") -> Path:
    """Write an OpenSim ExternalLoads XML (one ExternalForce per foot, in ground) reading ``datafile``."""
    import opensim

    loads = opensim.ExternalLoads()
    loads.setName("ground_reactions")
    loads.setDataFileName(datafile)
    for foot in FEET:
        s = _SUFFIX[foot]
        ef = opensim.ExternalForce()
        ef.setName(f"{foot}_foot")
        ef.set_applied_to_body(f"calcn_{s}")
        ef.set_force_expressed_in_body("ground")
        ef.set_point_expressed_in_body("ground")
        ef.set_force_identifier(f"ground_force_{s}_v")
        ef.set_point_identifier(f"ground_force_{s}_p")
        ef.set_torque_identifier(f"ground_torque_{s}_")
        loads.cloneAndAppend(ef)
    with atomic_output(path) as tmp:
        loads.printToXML(str(tmp))
    return Path(path)


def import_trial(
    *,
    subject_file: str | os.PathLike[str],
    inputs_json: str | os.PathLike[str],
    trial: str,
    out_dir: str | os.PathLike[str],
    marker_gap_max: float = 0.1,
    grf_cutoff: float = 6.0,
    filter_order: int = 4,
    force_threshold: float = 20.0,
    min_contact: float = 0.05,
    required_markers: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Import one trial of a subject into OpenSim inputs in ``out_dir`` (see the module docstring).

    Static trials give ``markers.trc`` only. Returns a summary (files written, long marker gaps,
    plate assignment, events). Raises :class:`InputDataError` subclasses for bad input, before any
    file is written.
    """
    subject = load_subject(subject_file)
    inputs = json.loads(Path(inputs_json).read_text())
    if trial not in inputs["trials"]:
        raise InputDataError(
            f"{inputs_json}: trial {trial!r} is not listed; trials: {', '.join(inputs['trials'])}"
        )
    info = inputs["trials"][trial]
    source = Path(info["file"])
    rot = subject.lab_to_opensim()
    raw = _read_raw(subject, info, trial)

    # markers: required ones present, gaps filled, rotated
    foot_names = [m for f in FEET for m in subject.raw.get("foot_markers", {}).get(f, [])]
    needed = list(dict.fromkeys([*foot_names, *required_markers]))
    absent = [m for m in needed if m not in raw.labels or np.isnan(raw.markers[:, raw.labels.index(m)]).all()]
    if absent:
        raise MissingMarkerError(
            f"{source}: marker(s) {absent} required by {subject.path} (foot_markers) or the config "
            f"(import.required_markers) are not in the file; markers present: {', '.join(raw.labels)}"
        )
    markers, long_gaps = fill_marker_gaps(
        time=raw.time, labels=raw.labels, data=raw.markers, max_gap=marker_gap_max
    )
    for name, spans in long_gaps.items():
        logger.warning(
            "%s: marker %s missing over %s s (longer than %.3f s): left missing there",
            source.name,
            name,
            spans,
            marker_gap_max,
        )
    markers = _rotate(markers, rot)
    for r, left, agree in swapped_pairs(raw.labels, markers, up=1):
        logger.warning(
            "%s: markers %s and %s look swapped: %s is left of %s in %.0f%% of frames, against the "
            "other left/right pairs; add swap_markers: [[%s, %s]] to trial %s in %s, or fix the labels",
            source.name, r, left, r, left, 100 * (1 - agree), r, left, trial, subject.path,
        )
    time = raw.time
    rng = info.get("time_range")
    check_time_range(time, rng, source=source, subject_file=subject.path, trial=trial)
    check_empty_frames(time, raw.markers, rng, source=source, subject_file=subject.path, trial=trial)
    if raw.emg is not None and raw.emg.shape[0] and raw.emg_rate > 0 and len(time) > 1:
        check_analog_duration(
            n_samples=raw.emg.shape[0], analog_rate=raw.emg_rate, marker_time=time,
            marker_rate=raw.rate, source=Path(info.get("analog") or source),
        )

    def crop(t: np.ndarray) -> np.ndarray:
        return (t >= rng[0] - 1e-9) & (t <= rng[1] + 1e-9) if rng else np.ones(len(t), bool)

    keep = crop(time)
    summary: dict[str, Any] = {"trial": trial, "role": info["role"], "long_gaps": long_gaps}
    outputs: dict[str, Any] = {}
    out_dir = Path(out_dir)
    if info["role"] != "static":
        # ground reactions
        if not raw.plates or raw.grf_time is None:
            raise InputDataError(f"{source}: a {info['role']} trial needs force plates (or a grf file)")
        grf_rate = 1.0 / float(np.median(np.diff(raw.grf_time)))
        plates = []
        for p in raw.plates:
            rp = Plate(
                number=p.number,
                force=_rotate(p.force, rot),
                cop=_rotate(p.cop, rot),
                moment=_rotate(p.moment, rot),
                corners=None if p.corners is None else _rotate(p.corners, rot),
            )
            plates.append(
                condition_plate(
                    rp,
                    rate=grf_rate,
                    threshold=force_threshold,
                    cutoff=grf_cutoff,
                    order=filter_order,
                    min_contact=min_contact,
                )
            )
        if not any(p.contacts for p in plates) and info["role"] == "dynamic":
            raise UnloadedPlateError(
                f"{source}: no force plate is loaded above {force_threshold} N in this dynamic trial; "
                "check the plate channels or give the trial role 'static'"
            )
        assigned = _assign_contacts(
            plates,
            subject=subject,
            time=time,
            labels=raw.labels,
            markers=markers,
            grf_time=raw.grf_time,
            source=source,
        )
        feet = _feet_grf(assigned, len(raw.grf_time))
        gkeep = crop(raw.grf_time)
        columns: dict[str, np.ndarray] = {}
        for foot in FEET:
            s = _SUFFIX[foot]
            force, cop, moment = feet[foot]
            for k, a in enumerate("xyz"):
                columns[f"ground_force_{s}_v{a}"] = force[gkeep, k]
            for k, a in enumerate("xyz"):
                columns[f"ground_force_{s}_p{a}"] = cop[gkeep, k]
            for k, a in enumerate("xyz"):
                columns[f"ground_torque_{s}_{a}"] = moment[gkeep, k]
        import pandas as pd

        outputs["grf"] = pd.DataFrame(columns, index=raw.grf_time[gkeep])
        events = _events(feet, raw.grf_time, raw.events, threshold=force_threshold)
        if rng:
            events = {
                f: {k: [t for t in v if rng[0] <= t <= rng[1]] for k, v in e.items()}
                for f, e in events.items()
            }
        outputs["events"] = events
        summary["plates"] = [
            {"plate": p.number, "foot": f, "start": float(raw.grf_time[a]), "end": float(raw.grf_time[b - 1])}
            for p, a, b, f in assigned
        ]
        # EMG
        channels = list(subject.emg_channels)
        if channels:
            if raw.emg is None:
                raise MissingChannelError(
                    f"{source}: {subject.path} lists EMG channels but the trial has no analog data "
                    "(for TRC trials give an 'analog' file)"
                )
            absent = [c for c in channels if c not in raw.emg_labels]
            if absent:
                raise MissingChannelError(
                    f"{source}: EMG channel(s) {absent} of {subject.path} (emg.channels) are not in the "
                    f"file; its analog channels are: {', '.join(raw.emg_labels)}. Use these labels as "
                    "cleaned at import (spaces and colons become '_')"
                )
            idx = [raw.emg_labels.index(c) for c in channels]
            et = raw.emg_t0 + np.arange(raw.emg.shape[0]) / raw.emg_rate
            ekeep = crop(et)
            outputs["emg"] = dict(
                labels=np.array(channels),
                rate=np.array(raw.emg_rate),
                t0=np.array(et[ekeep][0]),
                data=raw.emg[np.ix_(ekeep, idx)],
            )
    # write everything (each atomically)
    write_trc(
        out_dir / "markers.trc",
        time=time[keep],
        labels=raw.labels,
        data=markers[keep],
        units="mm",
        rate=raw.rate,
    )
    written = ["markers.trc"]
    if "grf" in outputs:
        write_sto(out_dir / "grf.mot", outputs["grf"], name="ground_reactions")
        external_loads_xml(out_dir / "external_loads.xml", datafile="grf.mot")
        with atomic_output(out_dir / "events.json") as tmp:
            tmp.write_text(json.dumps(outputs["events"], indent=2) + "\n")
        written += ["grf.mot", "external_loads.xml", "events.json"]
        emg = outputs.get("emg") or dict(
            labels=np.array([], dtype=str), rate=np.array(0.0), t0=np.array(0.0), data=np.zeros((0, 0))
        )
        with atomic_output(out_dir / "emg_raw.npz") as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **emg)
        written.append("emg_raw.npz")
        summary["events"] = outputs["events"]
    summary["written"] = written
    logger.info("%s/%s imported: %s", subject.id, trial, ", ".join(written))
    return summary
