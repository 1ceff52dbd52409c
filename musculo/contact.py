"""Joint contact forces from OpenSim's joint reaction loads: knee (total, medial, lateral), hip, ankle.

Input: the reaction-loads table of :func:`musculo.opensim_tools.joint_reaction.run_joint_reaction`
(the load the parent body applies to the child body at the joint, expressed in the child body's
frame: the tibia for the knee, the femur for the hip, the talus for the ankle). Channels, in N:

- ``<joint>_<side>`` (hip, ankle) and ``knee_<side>_total``: the magnitude of the reaction force.
  With muscle forces applied, the joint reaction is the joint contact force of the model (its
  joints carry no ligaments), as in OpenSim's own JointReaction workflow.
- ``knee_<side>_medial`` and ``knee_<side>_lateral``: the tibiofemoral force split between two
  contact points on the medial-lateral axis of the tibia frame, ``d/2`` either side of the knee
  joint centre, by a frontal-plane moment balance (Winby et al., J Biomech 42:2294, 2009):

      F_med + F_lat = F_c                      (F_c = -F_y: compressive force along the tibia axis)
      (d/2) (F_med - F_lat) = s M_x            (M_x: reaction moment about the tibia's anterior axis)

  so ``F_med = F_c/2 + s M_x / d`` and ``F_lat = F_c/2 - s M_x / d``, with ``s = -1`` for the
  right knee and ``+1`` for the left (the tibia frame's z axis points to the subject's right, so
  lateral on the right leg, medial on the left). ``M_x`` is the frontal-plane moment the joint must
  carry after the external knee adduction moment has been balanced by the muscles' frontal-plane
  moments and inertia: exactly the moment the two condyles share. The gait models have no
  ligaments, so a negative compartment force (lift-off) is reported as computed, not clipped.
  ``d``, the distance between the medial and lateral contact points, is a nominal distance of the
  unscaled model (``contact.intercondylar_distance``, 40 mm) times the tibia's medial-lateral
  scale factor of the subject's scaled model.

Why a moment balance rather than a two-compartment knee: the models the pipeline scales have a
one-degree-of-freedom knee; a two-condyle model (e.g. Lerner et al. 2015) would need its own
geometry per model. The balance needs only the joint reaction OpenSim already computes.

This module sits at the layer of ``musculo.opensim_tools`` (numpy and pandas only).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from musculo import logger
from musculo.errors import InputDataError, MusculoError
from musculo.io.atomic import atomic_output
from musculo.io.tables import EVALUATION_COLUMNS, read_sto, write_evaluation_table, write_sto

G = 9.80665
"""Standard gravity (m/s^2): body weight = mass x G."""

COLUMNS = EVALUATION_COLUMNS
"""Columns of ``evaluation.tsv``."""

QUANTITY = "contact_force"

NOMINAL_INTERCONDYLAR_DISTANCE = 0.04
"""m, distance between the medial and lateral tibiofemoral contact points of an unscaled model."""


def contact_methods(methods: Sequence[str], *, has_emg: bool) -> list[str]:
    """The methods of ``methods`` that give a subject contact forces (EMG-driven ones need EMG)."""
    return [m for m in methods if m == "so" or has_emg]


def method_forces_file(subject: str, method: str, trial: str, *, results: str = "results") -> str:
    """A method's muscle forces of one trial: OpenSim SO's ``<s>/<trial>/so_force.sto`` (every
    actuator) for ``so``, else the estimator's ``<s>/<method>/predictions/<trial>.forces.sto``."""
    if method == "so":
        return str(Path(results, subject, trial, "so_force.sto"))
    return str(Path(results, subject, method, "predictions", f"{trial}.forces.sto"))


def method_forces_input(subject: str, method: str, trial: str, *, results: str = "results") -> str:
    """What a workflow job reading a method's forces waits for: the file for ``so``, the
    estimator's ``predictions`` folder (a directory output) otherwise."""
    if method == "so":
        return method_forces_file(subject, method, trial, results=results)
    return str(Path(results, subject, method, "predictions"))


def not_fitted_reason(model_dir: str | os.PathLike[str]) -> str | None:
    """Why an estimator gave no muscle forces for a subject (its ``model/status.json``), else None.

    An estimator that needs EMG records "not fitted" when no channel passed quality; the workflow
    then asks no joint reactions of it and its contact table says why it is empty.
    """
    status = Path(model_dir) / "status.json"
    if not status.is_file():
        return None
    try:
        record = json.loads(status.read_text())
    except json.JSONDecodeError as exc:
        raise ContactForceError(f"{status}: not valid JSON ({exc}); rerun the estimator") from exc
    if record.get("status") != "not fitted":
        return None
    return str(record.get("reason", "not fitted"))


class ContactForceError(MusculoError):
    """Joint reaction loads cannot be turned into contact forces."""


def _side_sign(side: str) -> int:
    if side == "r":
        return -1
    if side == "l":
        return 1
    raise ContactForceError(f"side {side!r}: expected 'r' or 'l'")


def _key_side(key: str) -> tuple[str, str]:
    kind, _, side = key.rpartition("_")
    return kind, side


def contact_channels(
    reactions: pd.DataFrame,
    *,
    joints: Mapping[str, Mapping[str, str]],
    intercondylar_distance: Mapping[str, float] | float = NOMINAL_INTERCONDYLAR_DISTANCE,
    source: str | os.PathLike[str] = "reactions",
) -> pd.DataFrame:
    """Contact-force channels (N) from a reaction-loads table (see the module docstring).

    Args:
        reactions: OpenSim's ``*_JointReaction_ReactionLoads.sto`` read by ``read_sto``.
        joints: ``{key: {"joint": name, "child": body}}`` with keys like ``knee_r``, ``hip_l``
            (the ``joints`` of the joint reaction summary).
        intercondylar_distance: m, per side (``{"r": d, "l": d}``) or one value for both.
        source: file name for messages.
    """
    out: dict[str, np.ndarray] = {}
    for key, info in joints.items():
        kind, side = _key_side(key)
        root = f"{info['joint']}_on_{info['child']}_in_{info['child']}_"
        needed = [root + c for c in ("fx", "fy", "fz", "mx")]
        missing = [c for c in needed if c not in reactions.columns]
        if missing:
            raise ContactForceError(
                f"{source}: columns {missing} missing; was the joint reaction expressed in the "
                f"child body {info['child']!r}? Rerun the joint_reaction stage"
            )
        f = reactions[needed[:3]].to_numpy(dtype=float)
        magnitude = np.linalg.norm(f, axis=1)
        if kind != "knee":
            out[key] = magnitude
            continue
        d = (
            float(intercondylar_distance[side])
            if isinstance(intercondylar_distance, Mapping)
            else float(intercondylar_distance)
        )
        if not d > 0:
            raise ContactForceError(f"intercondylar distance of side {side!r} is {d}; it must be > 0 m")
        axial = -f[:, 1]
        mx = reactions[root + "mx"].to_numpy(dtype=float)
        s = _side_sign(side)
        out[f"{key}_total"] = magnitude
        out[f"{key}_medial"] = axial / 2 + s * mx / d
        out[f"{key}_lateral"] = axial / 2 - s * mx / d
    order = sorted(out, key=lambda c: (c.split("_")[0] != "knee", c))
    return pd.DataFrame({c: out[c] for c in order}, index=reactions.index.rename("time"))


def intercondylar_distances(
    scale_quality: str | os.PathLike[str] | None,
    *,
    nominal: float = NOMINAL_INTERCONDYLAR_DISTANCE,
    bodies: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """``{side: d}``: ``nominal`` times the tibia's medial-lateral (z) scale factor.

    ``scale_quality`` is the scale stage's ``scale_quality.json`` (``scale_factors``: body -> [x, y,
    z]); without it (or without the tibia in it) the factor is 1.
    """
    bodies = bodies or {"r": "tibia_r", "l": "tibia_l"}
    factors: dict[str, Any] = {}
    if scale_quality is not None:
        path = Path(scale_quality)
        if not path.is_file():
            raise InputDataError(f"{path}: scale quality file not found; run the scale stage")
        factors = json.loads(path.read_text()).get("scale_factors", {}) or {}
    out = {}
    for side, body in bodies.items():
        f = factors.get(body)
        factor = float(f[2]) if isinstance(f, Sequence) and len(f) == 3 else 1.0
        out[side] = nominal * factor
    return out


def stance_windows(
    events: Mapping[str, Any] | None, *, start: float, end: float
) -> dict[str, list[tuple[float, float]]]:
    """``{"r": [...], "l": [...]}``: each side's stance phases on a force plate inside ``[start, end]``.

    From ``events.json`` (``{"right": {"strike": [...], "off": [...]}, "left": ...}``): each strike
    to the next foot off of that side (or to ``end``), and ``start`` to the first foot off when the
    side's first event is a foot off (the foot was down when the window began). A side without any
    event (feet that never leave the plates, or no events) gets the whole window.
    """
    out: dict[str, list[tuple[float, float]]] = {}
    for side, name in (("r", "right"), ("l", "left")):
        record = (events or {}).get(name) or {}
        strikes = sorted(float(t) for t in record.get("strike", []) or [])
        offs = sorted(float(t) for t in record.get("off", []) or [])
        if not strikes and not offs:
            out[side] = [(start, end)]
            continue
        spans = []
        if offs and (not strikes or offs[0] < strikes[0]):
            spans.append((start, offs[0]))
        for a in strikes:
            b = next((t for t in offs if t > a), end)
            spans.append((a, b))
        out[side] = [(max(a, start), min(b, end)) for a, b in spans if min(b, end) > max(a, start)]
    return out


def peak_rows(
    channels: pd.DataFrame,
    *,
    subject: str,
    trial: str,
    method: str,
    body_weight: float,
    windows: Mapping[str, Sequence[tuple[float, float]]] | None = None,
) -> list[dict[str, Any]]:
    """``peak_N`` and ``peak_BW`` of every channel: its largest value, within the stance phases of
    its side when ``windows`` (from :func:`stance_windows`) is given; a channel whose side has no
    stance phase in the window gets no row."""
    rows = []
    t = channels.index.to_numpy(dtype=float)
    for channel in channels.columns:
        values = channels[channel].to_numpy(dtype=float)
        if windows is not None:
            side = channel.split("_")[1] if channel.count("_") >= 1 else ""
            inside = np.zeros(len(t), dtype=bool)
            for a, b in windows.get(side, [(t[0], t[-1])]):
                inside |= (t >= a - 1e-9) & (t <= b + 1e-9)
            values = values[inside]
        if not np.isfinite(values).any():
            continue
        peak = float(np.nanmax(values))
        for metric, value in (("peak_N", peak), ("peak_BW", peak / body_weight)):
            rows.append({"subject": subject, "trial": trial, "method": method, "quantity": QUANTITY,
                         "channel": channel, "metric": metric, "value": value})
    return rows


def error_rows(
    channels: pd.DataFrame,
    truth: pd.DataFrame,
    *,
    subject: str,
    trial: str,
    method: str,
    body_weight: float,
) -> list[dict[str, Any]]:
    """``rmse_N`` and ``rmse_BW`` of every channel against the truth, on the common time span.

    The truth is interpolated linearly onto the channel's times inside the truth's time range.
    """
    rows = []
    t = channels.index.to_numpy(dtype=float)
    tt = truth.index.to_numpy(dtype=float)
    keep = (t >= tt[0] - 1e-9) & (t <= tt[-1] + 1e-9)
    if keep.sum() < 2:
        logger.warning("%s %s %s: no overlap with the truth; no RMSE", subject, method, trial)
        return rows
    for channel in channels.columns:
        if channel not in truth.columns:
            continue
        ref = np.interp(t[keep], tt, truth[channel].to_numpy(dtype=float))
        err = channels[channel].to_numpy(dtype=float)[keep] - ref
        rmse = float(np.sqrt(np.nanmean(err**2)))
        for metric, value in (("rmse_N", rmse), ("rmse_BW", rmse / body_weight)):
            rows.append({"subject": subject, "trial": trial, "method": method, "quantity": QUANTITY,
                         "channel": channel, "metric": metric, "value": value})
    return rows


def contact_forces(
    *,
    subject: str,
    method: str,
    trials: Sequence[str],
    reactions: Sequence[str | os.PathLike[str]],
    summaries: Sequence[str | os.PathLike[str]],
    mass: float,
    evaluation_out: str | os.PathLike[str],
    curves_dir: str | os.PathLike[str],
    scale_quality: str | os.PathLike[str] | None = None,
    intercondylar_distance: float = NOMINAL_INTERCONDYLAR_DISTANCE,
    truth_dir: str | os.PathLike[str] | None = None,
    published_peak_bw: Mapping[str, Sequence[float]] | None = None,
    events: Sequence[str | os.PathLike[str]] | None = None,
    not_fitted: str | None = None,
) -> pd.DataFrame:
    """Contact forces of one method over a subject's trials: curves and ``evaluation.tsv`` rows.

    Args:
        subject, method: written into every row.
        trials: trial names, in the order of ``reactions`` and ``summaries``.
        reactions: each trial's reaction-loads table from the joint reaction stage.
        summaries: each trial's joint reaction summary JSON (gives the joints analysed).
        mass: kg; body weight = mass x :data:`G`.
        evaluation_out: ``results/<s>/contact/<method>/evaluation.tsv`` (columns :data:`COLUMNS`,
            quantity ``contact_force``, metrics ``peak_N``, ``peak_BW`` and, with a truth,
            ``rmse_N``, ``rmse_BW``).
        curves_dir: folder written with ``<trial>.sto`` per trial: the channels over time (N).
        scale_quality: the scale stage's JSON, for the intercondylar distance (see
            :func:`intercondylar_distances`).
        intercondylar_distance: m, nominal distance of the unscaled model.
        truth_dir: a folder of true contact-force curves ``<trial>.sto`` (same channels); when
            given, RMSE rows are added for the trials it has.
        published_peak_bw: ranges of published walking peaks (BW) per channel stem, kept in the
            curves' ``info.json`` for the report.
        events: each trial's ``events.json``; peaks are then taken within the stance phases of
            each channel's side (see :func:`stance_windows`), which leaves out spans off the force
            plates, where the ground reaction is unknown and the reactions meaningless.
        not_fitted: why the method has no muscle forces for the subject (see
            :func:`not_fitted_reason`); then ``trials`` is empty, the table has no rows and the
            curves' ``info.json`` holds the reason.
    """
    if not_fitted is not None and len(trials):
        raise ContactForceError(
            f"{subject} {method}: not fitted ({not_fitted}) but {len(trials)} trials given"
        )
    if not (len(trials) == len(reactions) == len(summaries)):
        raise ContactForceError(
            f"{subject} {method}: {len(trials)} trials, {len(reactions)} reaction tables and "
            f"{len(summaries)} summaries; pass one of each per trial"
        )
    if not mass > 0:
        raise ContactForceError(f"{subject}: mass {mass} kg; set a positive mass in the subject file")
    body_weight = mass * G
    distances = intercondylar_distances(scale_quality, nominal=intercondylar_distance)
    rows: list[dict[str, Any]] = []
    curves: dict[str, pd.DataFrame] = {}
    if events is not None and len(events) != len(trials):
        raise ContactForceError(f"{subject} {method}: {len(trials)} trials but {len(events)} events files")
    for k, (trial, reaction, summary) in enumerate(zip(trials, reactions, summaries, strict=True)):
        info = json.loads(Path(summary).read_text())
        channels = contact_channels(
            read_sto(reaction), joints=info["joints"], intercondylar_distance=distances, source=reaction
        )
        curves[trial] = channels
        windows = None
        if events is not None:
            t = channels.index.to_numpy(dtype=float)
            record = json.loads(Path(events[k]).read_text())
            windows = stance_windows(record, start=float(t[0]), end=float(t[-1]))
        rows += peak_rows(channels, subject=subject, trial=trial, method=method, body_weight=body_weight,
                          windows=windows)
        if truth_dir is not None and (Path(truth_dir) / f"{trial}.sto").is_file():
            truth = read_sto(Path(truth_dir) / f"{trial}.sto")
            rows += error_rows(channels, truth, subject=subject, trial=trial, method=method,
                               body_weight=body_weight)
    table = pd.DataFrame(rows, columns=COLUMNS)
    with atomic_output(curves_dir, is_dir=True) as tmp:
        for trial, channels in curves.items():
            write_sto(Path(tmp) / f"{trial}.sto", channels, name=f"contact_forces_{method}_{trial}")
        (Path(tmp) / "info.json").write_text(json.dumps(
            {"subject": subject, "method": method, "mass": mass, "body_weight": body_weight,
             "intercondylar_distance": distances, "trials": list(curves),
             "published_peak_bw": {k: list(v) for k, v in (published_peak_bw or {}).items()},
             **({"status": "not fitted", "reason": not_fitted} if not_fitted is not None else {})},
            indent=2))
    write_evaluation_table(table, evaluation_out)
    if not_fitted is not None:
        logger.warning("%s %s: no contact forces, the method was not fitted: %s", subject, method, not_fitted)
    knee = table[(table["metric"] == "peak_BW") & table["channel"].str.endswith("_total")]
    if not knee.empty:
        logger.info("%s %s: total knee contact force peak %.2f-%.2f BW over %d trial(s)", subject, method,
                    knee["value"].min(), knee["value"].max(), knee["trial"].nunique())
    return table
