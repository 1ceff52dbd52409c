"""Per-subject quality table: every check with its value, the limit applied and a PASS/WARN/FAIL verdict.

This table is the one quality verdict of a subject: the report renders it and judges nothing itself.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from musculo.errors import InputDataError
from musculo.io.atomic import atomic_output
from musculo.io.events import contact_window, plate_file
from musculo.opensim_tools.common import PathLike

COLUMNS = ["subject", "trial", "stage", "quantity", "value", "unit", "limit", "verdict", "flag"]
VERDICTS = ("PASS", "WARN", "FAIL", "INFO")


def verdict(value: float, limit: float | None) -> str:
    """PASS when ``value <= limit``, WARN up to twice the limit, FAIL beyond; INFO without a limit."""
    if limit is None or not math.isfinite(value):
        return "INFO"
    if value <= limit:
        return "PASS"
    return "WARN" if value <= 2 * limit else "FAIL"


def _json(path: PathLike) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise InputDataError(f"{p}: file not found; run the stage that writes it")
    return json.loads(p.read_text())


def _row(
    subject: str, trial: str, stage: str, quantity: str, value: float, unit: str, limit: float | None = None
) -> dict[str, Any]:
    return {
        "subject": subject,
        "trial": trial,
        "stage": stage,
        "quantity": quantity,
        "value": float(value),
        "unit": unit,
        "limit": math.nan if limit is None else float(limit),
        "verdict": verdict(float(value), limit),
        "flag": "",
    }


def coordinate_ranges(model: PathLike) -> dict[str, tuple[float, float, bool]]:
    """``{coordinate: (min, max, rotational)}`` of a model's unlocked joint coordinates (rad or m).

    The coordinates of joints to ground are left out: their ranges bound a GUI slider, not an
    anatomy (a subject walks in any direction of the lab).
    """
    from musculo.opensim_tools.common import is_rotational, load_model, root_coordinates

    osim = load_model(model)
    state = osim.initSystem()
    roots = set(root_coordinates(osim))
    out: dict[str, tuple[float, float, bool]] = {}
    for coord in osim.getCoordinateSet():
        if coord.getLocked(state) or coord.getName() in roots:
            continue
        name = coord.getName()
        out[name] = (coord.getRangeMin(), coord.getRangeMax(), is_rotational(osim, name))
    return out


def range_rows(
    subject: str, model: PathLike, ik_mots: Sequence[PathLike], limit: float
) -> list[dict[str, Any]]:
    """Per trial and coordinate, the share of IK frames outside the model's coordinate range.

    IK can settle in a pose the model's joints do not allow (a femur turned half round, a knee
    hyperextended) while its marker errors stay small; such frames make every later stage wrong for
    that limb. Only coordinates with frames outside their range (beyond 2 deg or 1 cm) get a row.
    """
    from musculo.io.tables import in_degrees, read_sto

    ranges = coordinate_ranges(model)
    rows = []
    for path in ik_mots:
        trial = Path(path).parent.name
        df = read_sto(path)
        degrees = in_degrees(df)
        for coord, (lo, hi, rot) in ranges.items():
            if coord not in df.columns:
                continue
            values = df[coord].to_numpy(dtype=float)
            if rot and degrees:
                values = np.deg2rad(values)
            slack = np.deg2rad(2.0) if rot else 0.01
            share = float(np.mean((values < lo - slack) | (values > hi + slack)))
            if share > 0:
                name = f"frames_outside_range:{coord}"
                rows.append(_row(subject, trial, "ik", name, share, "share", limit))
    return rows


def path_fit_rows(subject: str, paths: PathLike, accept: Mapping[str, float]) -> list[dict[str, Any]]:
    """The fitted paths' check against OpenSim at the trials' frames, judged by ``accept``."""
    from musculo.opensim_tools.path_fit import fit_check

    check = fit_check(paths)
    limits = {k: accept.get(k) for k in ("length_mm", "moment_arm_mm", "outside_share")}
    rows = []
    (length_at, length), (arm_at, arm) = check["length"], check["moment_arm"]
    for quantity, (value, unit, limit, where) in {
        "length_rmse": (length, "m", limits["length_mm"], length_at),
        "moment_arm_rmse": (arm, "m", limits["moment_arm_mm"], arm_at),
        "frames_outside_ranges": (check["outside_share"], "share", limits["outside_share"], ""),
    }.items():
        limit = None if limit is None else limit / (1e3 if unit == "m" else 1.0)
        row = _row(subject, "", "path_fit", quantity, value, unit, limit)
        if row["verdict"] in ("WARN", "FAIL"):
            row["verdict"], row["flag"] = "INFO", "fitted paths not used: OpenSim's tools run (auto methods)"
        row["flag"] = ";".join(f for f in (where, row["flag"]) if f)
        rows.append(row)
    return rows


def twin_rows(
    subject: str, truth: PathLike, *, force_pct_limit: float = 1.0, moment_pct_limit: float = 1.0
) -> list[dict[str, Any]]:
    """A digital twin's own consistency check per trial (``truth.npz``): inverse dynamics of the
    true motion with the generated ground reactions on the true model, pelvis residual RMS in %
    of body weight (forces) and of body weight x height (moment), judged against the limits; and
    how far the centre of pressure strays off the sole of its foot (information)."""
    data = np.load(truth)
    params = json.loads(str(data["parameters"]))
    weight = float(params["mass"]) * 9.80665
    height = float(params["height"])
    rows = []
    for trial in (str(t) for t in data["trials"]):
        res = json.loads(str(data[f"{trial}/residuals"]))
        for coord in ("pelvis_tx", "pelvis_ty"):
            rows.append(_row(subject, trial, "twin", f"generator_rms_pct_bw:{coord}",
                             100.0 * res[f"{coord}_force_rms"] / weight, "%BW", force_pct_limit))
        moment = 100.0 * res["pelvis_tilt_moment_rms"] / (weight * height)
        rows.append(_row(subject, trial, "twin", "generator_rms_pct_bw_height:pelvis_tilt", moment, "%BWxH",
                         moment_pct_limit))
        for key in ("cop_behind_heel_max", "cop_beyond_toe_max"):
            if key in res:
                rows.append(_row(subject, trial, "twin", key, res[key], "m"))
    return rows


def _by_trial(paths: Sequence[PathLike]) -> dict[str, Path]:
    return {Path(p).parent.name: Path(p) for p in paths}


def stance_residuals(
    residuals: PathLike, id_moments: PathLike | pd.DataFrame, events: PathLike
) -> dict[str, dict[str, Any]]:
    """Pelvis residuals over the force-plate contact span of the trial (first strike to last foot off,
    within the plates' contacts of the trial's ``grf.mot`` and the frames of ``id_moments``: the
    frames the estimators keep, :func:`musculo.io.events.contact_window`).

    Outside that span a foot may be on the floor off the plates, so inverse dynamics misses a ground
    reaction and the residuals say nothing about the data's consistency. Returns, per residual
    coordinate of ``residuals.json``, ``rms`` and ``max_abs`` (N or N m) and ``rms_pct`` (% of body
    weight for forces, of body weight x height for moments); empty when the trial has no contact span.
    ``id_moments``: the trial's ``id.sto``, or the table already read from it.
    """
    from musculo.io.tables import read_sto

    info = _json(residuals)
    table = id_moments if isinstance(id_moments, pd.DataFrame) else read_sto(id_moments)
    time = table.index.to_numpy(dtype=float)
    if len(time) < 2:
        return {}
    span = contact_window(events, grf=plate_file(events), within=(float(time[0]), float(time[-1])))
    if span is None:
        return {}
    keep = (time >= span[0] - 1e-9) & (time <= span[1] + 1e-9)
    if keep.sum() < 2:
        return {}
    weight, height = float(info["body_weight"]), float(info["height"])
    out = {}
    for coord, entry in info.get("coordinates", {}).items():
        if entry.get("column") not in table.columns:
            continue
        x = table[entry["column"]].to_numpy(dtype=float)[keep]
        rms = float(np.sqrt(np.mean(x**2)))
        scale = weight if entry.get("unit") == "N" else weight * height
        out[coord] = {"rms": rms, "max_abs": float(np.max(np.abs(x))), "rms_pct": 100.0 * rms / scale,
                      "unit": entry.get("unit", "")}
    return out


def measured_rows(
    subject: str, trial: str, events: PathLike, within: tuple[float, float] | None = None
) -> list[dict[str, Any]]:
    """Share of the trial's contact span whose ground reactions the plates did not measure.

    The span runs from the first foot strike to the last foot off of ``events.json``; the
    estimators keep to the longest run of it where every foot bears the reaction its plate
    measured (:func:`musculo.io.events.contact_window` with the trial's ``grf.mot``). Frames left
    out had a foot standing off the plates or two feet on one plate; the row warns and names the
    span kept. ``within`` (s): the frames the trial's inverse dynamics holds. No row without
    ``grf.mot`` or a contact span.
    """
    grf = plate_file(events)
    span = contact_window(events, within=within)
    if span is None or grf is None:
        return []
    kept = contact_window(events, grf=grf, within=within)
    length = span[1] - span[0]
    share = 1.0 - ((kept[1] - kept[0]) / length if kept is not None else 0.0)
    share = max(0.0, min(1.0, share))
    row = _row(subject, trial, "id", "unmeasured_load_share", share, "share")
    if share > 0.01:
        row["verdict"] = "WARN"
        what = "a foot off the plates or two on one plate"
        used = f"estimators use {kept[0]:.3f}-{kept[1]:.3f} s" if kept is not None else "no span is measured"
        row["flag"] = f"{what}: {used} of {span[0]:.3f}-{span[1]:.3f} s"
    else:
        row["verdict"] = "PASS"
    return [row]


def write_quality_table(
    *,
    subject: str,
    scale_quality: PathLike,
    output_tsv: PathLike,
    max_marker_rms: float,
    max_marker_error: float | None,
    ik_flag_limit: float,
    residual_force_pct_limit: float,
    residual_moment_pct_limit: float,
    reserve_limit: float,
    ik_errors: Sequence[PathLike] = (),
    id_residuals: Sequence[PathLike] = (),
    id_moments: Sequence[PathLike] = (),
    events: Sequence[PathLike] = (),
    so_reserves: Sequence[PathLike] = (),
    emg_quality: Sequence[PathLike] = (),
    emg_normalisation: PathLike | None = None,
    model: PathLike | None = None,
    ik_mots: Sequence[PathLike] = (),
    range_share_limit: float = 0.05,
    paths: PathLike | None = None,
    accept: Mapping[str, float] | None = None,
    twin_truth: PathLike | None = None,
    twin_residual_pct_limit: float = 1.0,
) -> pd.DataFrame:
    """Collect one subject's quality numbers and their verdicts into a long TSV (one row per quantity).

    Every limit comes from the config section ``opensim`` (``max_marker_rms``, ``max_marker_error``,
    ``ik_flag_limit``, ``residual_force_pct_limit``, ``residual_moment_pct_limit``,
    ``reserve_limit``); each row records the limit it was judged against and its verdict
    (:func:`verdict`), and the report renders these rows as they are. Pelvis residuals are judged
    over the force-plate contact span (``id_moments`` + ``events`` of the trial, see
    :func:`stance_residuals`); over the whole window they are listed for information; the share of
    the contact span left out for unmeasured loads is listed per trial (:func:`measured_rows`). Per-trial
    files are named by their trial folder (``results/<s>/<trial>/...``). With ``model`` and
    ``ik_mots``, IK frames outside the model's coordinate ranges are judged against
    ``range_share_limit`` (:func:`range_rows`). With ``emg_normalisation``, an EMG channel's
    ``usable`` row follows :func:`musculo.emg.channel_usable` (a quiet channel whose MVC trial
    passed is used), as the excitations do. With ``paths`` (the subject's fitted muscle paths) and
    ``accept`` (``opensim.path_fit.accept``), the fit's own check against OpenSim is listed with
    those limits; a fit beyond them is not a data fault (the ``auto`` methods then run OpenSim's
    tools), so it is flagged, not failed. With ``twin_truth`` (a digital twin's ``truth.npz``), the
    generator's own residuals are judged against ``twin_residual_pct_limit`` (:func:`twin_rows`).
    """
    from musculo.io.tables import read_sto

    rows: list[dict[str, Any]] = []
    sq = _json(scale_quality)
    rows.append(_row(subject, "", "scale", "marker_rms", sq["marker_rms"], "m", max_marker_rms))
    rows.append(_row(subject, "", "scale", "marker_max", sq["marker_max"], "m", max_marker_error))
    for seg, factors in sq.get("scale_factors", {}).items():
        rows.append(_row(subject, "", "scale", f"scale_factor:{seg}", max(factors), "1"))
    for path in ik_errors:
        trial = Path(path).parent.name
        err = read_sto(path)
        rms = err["marker_error_RMS"].to_numpy(dtype=float)
        mx = err["marker_error_max"].to_numpy(dtype=float)
        rows.append(_row(subject, trial, "ik", "marker_rms_mean", float(rms.mean()), "m", max_marker_rms))
        rows.append(_row(subject, trial, "ik", "marker_max", float(mx.max()), "m", ik_flag_limit))
        over = float((mx > ik_flag_limit).sum())
        rows.append(_row(subject, trial, "ik", "frames_over_limit", over, "frames"))
    if model is not None and ik_mots:
        rows += range_rows(subject, model, ik_mots, range_share_limit)
    moments, evts = _by_trial(id_moments), _by_trial(events)
    for path in id_residuals:
        trial = Path(path).parent.name
        res = _json(path)
        for coord, entry in res.get("coordinates", {}).items():
            rows.append(_row(subject, trial, "id", f"residual_rms:{coord}", entry["rms"], entry["unit"]))
            for key, unit in (("rms_pct_bw", "%BW"), ("rms_pct_bw_height", "%BWxH")):
                if key in entry:
                    rows.append(_row(subject, trial, "id", f"window_{key}:{coord}", entry[key], unit))
        if trial not in evts:
            continue
        table = read_sto(moments[trial]) if trial in moments else None
        held = table.index if table is not None else None
        within = (float(held[0]), float(held[-1])) if held is not None and len(held) else None
        rows += measured_rows(subject, trial, evts[trial], within=within)
        if table is not None:
            for coord, st in stance_residuals(path, table, evts[trial]).items():
                force = st["unit"] == "N"
                name = f"stance_rms_pct_{'bw' if force else 'bw_height'}:{coord}"
                rows.append(_row(subject, trial, "id", name, st["rms_pct"], "%BW" if force else "%BWxH",
                                 residual_force_pct_limit if force else residual_moment_pct_limit))
    for path in so_reserves:
        trial = Path(path).parent.name
        rep = _json(path)
        for entry in rep.get("actuators", {}).values():
            reserve = entry.get("kind") == "reserve"
            unit = "N m" if reserve else "N or N m"
            rows.append(_row(subject, trial, "so", f"{entry.get('kind')}_max:{entry['coordinate']}",
                             entry["max_abs"], unit, reserve_limit if reserve else None))
            rows.append(_row(subject, trial, "so", f"{entry.get('kind')}_rms:{entry['coordinate']}",
                             entry["rms"], unit))
    if paths is not None:
        rows += path_fit_rows(subject, paths, accept or {})
    if twin_truth is not None:
        rows += twin_rows(subject, twin_truth, force_pct_limit=twin_residual_pct_limit,
                          moment_pct_limit=twin_residual_pct_limit)
    from musculo.emg import channel_usable

    norm = _json(emg_normalisation) if emg_normalisation is not None else None
    for path in emg_quality:
        trial = Path(path).parent.name
        for channel, entry in _json(path).items():
            entry = entry if isinstance(entry, dict) else {}
            flags = [str(f) for f in entry.get("flags", [])]
            use = bool(entry.get("use", not flags))
            if norm is not None:
                use = channel_usable(entry, norm.get(channel, {}))
            row = _row(subject, trial, "emg", f"usable:{channel}", 1.0 if use else 0.0, "1")
            row["verdict"] = "FAIL" if not use else "WARN" if flags else "PASS"
            row["flag"] = ";".join(flags)
            rows.append(row)
    table = pd.DataFrame(rows, columns=COLUMNS)
    with atomic_output(output_tsv) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    return table
