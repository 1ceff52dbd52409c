"""The evaluation protocol every estimator goes through, and ``evaluation.tsv``.

- Folds per subject: the dynamic trials are split round-robin into ``n_folds`` held-out groups
  (each trial held out once); a single-trial subject is cut into ``n_segments`` time spans instead.
- EMG normalisation: each fold divides the EMG envelopes by divisors computed on its training
  trials only (:func:`musculo.estimators.trials.fold_normalise`: MVC divisors where the subject has
  MVC trials, else the training trials' peak), so a held-out trial's EMG never shapes its fold; the
  divisors of each fold are written to ``folds.json``.
- Torque: per held-out trial and coordinate, RMSE (N m), ``rmse_pct_peak`` (RMSE as % of the
  peak absolute ID moment of that trial), NRMSE (% of the ID moment's range), R2 and Pearson r of
  the predicted moments against inverse dynamics. Where the trial has gait events and the
  coordinate a side (``_r`` / ``_l``), the RMSE over that side's stance and swing frames are rows
  with metric ``rmse_stance`` / ``rmse_swing`` (N m) and ``rmse_pct_peak_stance`` /
  ``rmse_pct_peak_swing`` (% of the trial's peak |moment|); channel = the coordinate.
- Leave-one-muscle-out: each measured muscle of the subject's ``hide`` list is hidden from the
  estimator (in fit and predict), together with every muscle fed by the same EMG channel, predicted,
  and compared with its measured envelope (r, RMSE, VAF; and over its active frames, where the
  envelope is at least ``metrics.ACTIVE_THRESHOLD``: ``r_active``, ``rmse_active``, ``mean_active`` (mean
  prediction), ``mean_active_reference`` and ``active_share``). The moments of the fit with the
  muscle hidden are scored too: quantity ``moment_lomo``, channel ``<coordinate>|<hidden muscle>``.

Rows are long format: ``subject, trial, method, quantity, channel, metric, value`` with
``quantity`` in ``moment`` (channel = coordinate), ``excitation`` (channel = hidden muscle) or
``moment_lomo``. The ``null`` method (:mod:`musculo.estimators.null`) is the floor every method's
moment RMSE is compared with; ``so`` (static optimisation, fitted to the same ID moments with every
model muscle) is a consistency check of the OpenSim stages, not a competitor.

Every method goes through :func:`run_evaluation`: the estimator registry
(:mod:`musculo.estimators.registry`) says how to build it and what it reads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from musculo import logger
from musculo.errors import EstimatorError
from musculo.estimators import registry
from musculo.estimators.base import Estimator, Prediction, join_predictions
from musculo.estimators.calibration import load_calibration
from musculo.estimators.trials import (
    NO_EMG,
    NOT_FITTED,
    fold_normalise,
    hideable_muscles,
    load_trials,
    usable_emg,
)
from musculo.io.atomic import atomic_output
from musculo.io.events import stance
from musculo.io.tables import EVALUATION_COLUMNS as COLUMNS
from musculo.io.tables import write_evaluation_table as write_table
from musculo.io.tables import write_sto
from musculo.metrics import MIN_PHASE_FRAMES, correlation, excitation_metrics
from musculo.physics.data import TrialData
from musculo.settings import Settings
from musculo.subject import Subject

__all__ = ["COLUMNS", "hideable_muscles", "run_evaluation", "usable_emg", "write_table"]
Fold = tuple[list[TrialData], list[TrialData]]


def make_folds(trials: Sequence[TrialData], *, n_folds: int = 2, n_segments: int = 3) -> list[Fold]:
    """Training / held-out splits of a subject's trials (see module docstring)."""
    trials = list(trials)
    k = int(n_folds)
    if not trials:
        raise EstimatorError("evaluation: the subject has no dynamic trials with results")
    if len(trials) == 1:
        whole = trials[0]
        edges = np.linspace(whole.time[0], whole.time[-1] + whole.dt, n_segments + 1)
        trials = [whole.window(a, b, name=f"{whole.name}@{i}") for i, (a, b) in
                  enumerate(zip(edges[:-1], edges[1:], strict=True))]
        k = len(trials)  # each time span held out once
    k = max(2, min(k, len(trials)))
    folds = []
    for i in range(k):
        test = trials[i::k]
        train = [t for j, t in enumerate(trials) if j % k != i]
        folds.append((train, test))
    return folds


def source_trial(name: str) -> str:
    """The trial a fold's held-out item comes from (``walk1`` for the time span ``walk1@0``)."""
    return name.split("@", 1)[0]




def moment_metrics(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """RMSE (N m), RMSE as % of the peak |reference|, NRMSE (% of reference range), R2 and r of one
    coordinate's moment time series."""
    p, y = np.asarray(predicted, dtype=float), np.asarray(reference, dtype=float)
    rmse = float(np.sqrt(np.mean((p - y) ** 2)))
    span = float(np.ptp(y))
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return {
        "rmse": rmse,
        "rmse_pct_peak": 100.0 * rmse / peak if peak > 0 else float("nan"),
        "nrmse": 100.0 * rmse / span if span > 0 else float("nan"),
        "r2": 1.0 - float(np.sum((p - y) ** 2)) / ss_tot if ss_tot > 0 else float("nan"),
        "r": correlation(p, y),
    }


def phase_masks(trial: TrialData, coordinate: str) -> dict[str, np.ndarray]:
    """Stance and swing frames (bool masks) of ``coordinate``'s side in ``trial``.

    The side is the coordinate's suffix (``_r`` right, ``_l`` left); stance runs from a foot strike
    to the next foot off of that side, swing from a foot off to the next strike (frames before the
    first event take the phase that event ends). Empty when the coordinate has no side, the trial
    no events of that side, or a phase fewer than ``MIN_PHASE_FRAMES`` frames.
    """
    side = {"_r": "right", "_l": "left"}.get(coordinate[-2:])
    on = stance((trial.events or {}).get(side or "", {}), trial.time) if side else None
    if on is None:
        return {}
    masks = {"stance": on, "swing": ~on}
    return {k: v for k, v in masks.items() if int(v.sum()) >= MIN_PHASE_FRAMES}


def moment_rows_of(trial: TrialData, coordinate: str, predicted: np.ndarray,
                   reference: np.ndarray) -> dict[str, float]:
    """:func:`moment_metrics` of the whole trial plus ``rmse_<phase>`` (N m) and
    ``rmse_pct_peak_<phase>`` (% of the whole trial's peak |moment|) for stance and swing.

    No R2 per phase: a swing inside the force-plate window is short and its moment nearly flat, so
    an R2 there measures the variance of a few frames rather than the estimate.
    """
    p, y = np.asarray(predicted, dtype=float), np.asarray(reference, dtype=float)
    out = moment_metrics(p, y)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    for phase, mask in phase_masks(trial, coordinate).items():
        rmse = float(np.sqrt(np.mean((p[mask] - y[mask]) ** 2)))
        out[f"rmse_{phase}"] = rmse
        out[f"rmse_pct_peak_{phase}"] = 100.0 * rmse / peak if peak > 0 else float("nan")
    return out


def _rows(subject: str, trial: str, method: str, quantity: str, channel: str,
          metrics: dict[str, float]) -> list[dict[str, Any]]:
    return [{"subject": subject, "trial": trial, "method": method, "quantity": quantity,
             "channel": channel, "metric": k, "value": v} for k, v in metrics.items()]


def hidden_groups(
    hide: Sequence[str], channels: Mapping[str, Sequence[str]] | None = None
) -> dict[str, list[str]]:
    """For each muscle of ``hide``, the muscles hidden with it: every muscle sharing an EMG channel.

    ``channels`` maps an EMG channel to the model muscles it drives (the subject file's
    ``emg.channels``). Muscles fed by one electrode carry the same envelope, so hiding one alone
    would leave its own envelope visible through its siblings.
    """
    groups: dict[str, list[str]] = {}
    for muscle in hide:
        group = [muscle]
        for fed in (channels or {}).values():
            if muscle in fed:
                group += [m for m in fed if m not in group]
        groups[muscle] = group
    return groups


def evaluate_estimator(
    *,
    make_estimator: Callable[[], Estimator],
    subject: str,
    folds: Sequence[Fold],
    method: str,
    hide: Sequence[str] = (),
    out_dir: str | os.PathLike[str],
    channels: Mapping[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """Run the protocol for one estimator on one subject; write predictions and ``evaluation.tsv``.

    Args:
        make_estimator: returns a fresh, unfitted estimator (called once per fold and hidden group).
        subject: subject id (first column of the table).
        folds: from :func:`make_folds`.
        method: the ``method`` column (``so``, ``mse``, ``nmm``, ...).
        hide: measured muscles for leave-one-muscle-out; muscles not measured in a fold's training
            trials are skipped with a warning.
        out_dir: ``results/<s>/<method>``: receives ``predictions/<trial>.excitations.sto``,
            ``predictions/<trial>.moments.sto`` (``.forces.sto``),
            ``lomo/<muscle>/<trial>.excitations.sto`` and ``evaluation.tsv``; the time spans of a
            single-trial subject are joined per trial.
        channels: EMG channel -> model muscles (``emg.channels``); a hidden muscle is hidden together
            with every muscle sharing its channel (see :func:`hidden_groups`), one fit per group.
    """
    out = Path(out_dir)
    rows: list[dict[str, Any]] = []
    groups = hidden_groups(hide, channels)
    predictions: dict[str, list[Prediction]] = {}
    hidden_predictions: dict[tuple[str, str], list[pd.DataFrame]] = {}
    fold_record: list[dict[str, Any]] = []
    for i, (train, test) in enumerate(folds):
        train, test, divisors = fold_normalise(train, test)
        fold_record.append({"fold": i, "train": [t.name for t in train], "test": [t.name for t in test],
                            "emg_divisor": None if divisors is None else {
                                m: float(d) for m, d in zip(train[0].muscles, divisors, strict=True)
                                if np.isfinite(d)}})
        est = make_estimator().fit(train, hidden=())
        logger.info("%s %s: fold %d fitted on %s", method, subject, i, [t.name for t in train])
        for trial in test:
            pred = est.predict(trial)
            predictions.setdefault(source_trial(trial.name), []).append(pred)
            for j, coord in enumerate(trial.coordinates):
                rows += _rows(subject, trial.name, method, "moment", coord,
                              moment_rows_of(trial, coord, pred.moments[coord].to_numpy(),
                                             trial.id_moment[:, j]))
        fitted: dict[tuple[str, ...], Estimator] = {}
        for muscle in hide:
            everywhere = [*train, *test]
            if not all(muscle in t.muscles and t.measured[t.muscles.index(muscle)] for t in everywhere):
                logger.warning("%s %s: %s is not measured in every trial of fold %d; not hidden",
                               method, subject, muscle, i)
                continue
            group = [m for m in groups[muscle] if all(m in t.muscles for t in everywhere)]
            key = tuple(sorted(group))
            if key not in fitted:
                logger.info("%s %s: fold %d, hiding %s", method, subject, i, group)
                fitted[key] = make_estimator().fit(train, hidden=group)
            for trial in test:
                pred = fitted[key].predict(trial)
                lomo = pred.excitations[[muscle]]
                hidden_predictions.setdefault((muscle, source_trial(trial.name)), []).append(lomo)
                ref = trial.excitation[:, trial.muscles.index(muscle)]
                rows += _rows(subject, trial.name, method, "excitation", muscle,
                              excitation_metrics(lomo[muscle].to_numpy(), ref))
                for j, coord in enumerate(trial.coordinates):
                    rows += _rows(subject, trial.name, method, "moment_lomo", f"{coord}|{muscle}",
                                  {k: v for k, v in moment_metrics(pred.moments[coord].to_numpy(),
                                                                   trial.id_moment[:, j]).items()
                                   if k in ("rmse", "rmse_pct_peak", "r2")})
    (out / "predictions").mkdir(parents=True, exist_ok=True)
    (out / "lomo").mkdir(parents=True, exist_ok=True)
    for name, parts in predictions.items():
        join_predictions(parts).write(out / "predictions", name)
    for (muscle, name), tables in hidden_predictions.items():
        joined = pd.concat(sorted(tables, key=lambda t: float(t.index[0])))
        write_sto(out / "lomo" / muscle / f"{name}.excitations.sto", joined, name="excitations")
    with atomic_output(out / "folds.json") as tmp:
        tmp.write_text(json.dumps(fold_record, indent=1) + "\n")
    table = pd.DataFrame(rows, columns=COLUMNS)
    write_table(table, out / "evaluation.tsv")
    return table


def write_not_applicable(
    *, method: str, subject: str, out_dir: str | os.PathLike[str], reason: str
) -> pd.DataFrame:
    """Record that a method cannot run for a subject, without failing the workflow.

    Writes a header-only ``evaluation.tsv``, empty ``predictions/`` and ``lomo/`` folders and
    ``model/status.json`` (``{"status": "not fitted", "reason": ...}``), so that the report states
    why the method has no rows while other subjects carry on.
    """
    out = Path(out_dir)
    logger.warning("%s %s: not fitted: %s", method, subject, reason)
    status = {"status": NOT_FITTED, "method": method, "subject": subject, "reason": reason}
    for name in ("predictions", "lomo"):
        (out / name).mkdir(parents=True, exist_ok=True)
    with atomic_output(out / "model" / "status.json") as tmp:
        tmp.write_text(json.dumps(status, indent=2) + "\n")
    table = pd.DataFrame(columns=COLUMNS)
    write_table(table, out / "evaluation.tsv")
    return table


def run_evaluation(
    *,
    method: str,
    subject: Subject,
    trial_dirs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    settings: Settings,
    calibration: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Evaluate a registered method on a subject's trial folders; the one driver of every method.

    Writes under ``out_dir`` (``results/<s>/<method>``): ``evaluation.tsv``; ``predictions/``
    with ``<trial>.excitations.sto``, ``<trial>.moments.sto`` (and ``<trial>.forces.sto`` for
    methods with muscle forces) for every held-out trial (time spans of a single-trial subject are
    joined back into one file per trial); ``lomo/<muscle>/<trial>.excitations.sto``; ``model/``,
    the deployable estimator fitted on every trial after the folds.

    No fold sees its held-out trials. The subject's ``calibration`` file (fitted on every trial,
    held-out ones included) never enters a fold: it only starts the deployable estimator of the
    methods whose spec says so. Methods that need EMG are recorded as "not fitted" for subjects
    without a usable channel.
    """
    spec = registry.get(method)
    out = Path(out_dir)
    trials = load_trials(subject, trial_dirs, settings=settings, muscle_set=spec.muscle_set,
                         with_so=spec.needs_so)
    has_emg = usable_emg(trials)
    if spec.needs_emg and not has_emg:
        return write_not_applicable(method=method, subject=subject.id, out_dir=out, reason=NO_EMG)
    folds = make_folds(trials, n_folds=settings.evaluation.n_folds, n_segments=settings.evaluation.n_segments)
    hidden = hideable_muscles(subject.hide, trials, subject=subject.id) if has_emg else []
    registry.build(method, settings)  # check the hyper-parameters before any fit
    table = evaluate_estimator(make_estimator=lambda: registry.build(method, settings), subject=subject.id,
                               folds=folds, method=method, hide=hidden, out_dir=out,
                               channels=subject.emg_channels)
    start = load_calibration(calibration) if calibration is not None and spec.uses_calibration(settings) \
        else None
    final = registry.build(method, settings, calibration=start) if start else registry.build(method, settings)
    model_dir = out / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    final.fit(fold_normalise(trials)[0]).save(model_dir)  # divisors of every trial: the deployable fit
    return table


def concatenate_evaluations(
    *, inputs: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str]
) -> pd.DataFrame:
    """Concatenate per-method ``evaluation.tsv`` files into ``results/<s>/evaluation.tsv``."""
    frames = []
    for path in inputs:
        # keep the method name "null" (the floor) a string: only the value column has missing markers
        df = pd.read_csv(path, sep="\t", keep_default_na=False, dtype={c: str for c in COLUMNS[:-1]},
                         na_values={"value": ["", "NaN", "nan", "-nan", "NA", "N/A", "null", "None"]})
        missing = set(COLUMNS) - set(df.columns)
        if missing:
            raise EstimatorError(f"{path}: columns {sorted(missing)} missing; rerun that method's evaluation")
        frames.append(df[COLUMNS])
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    write_table(table, output)
    return table
