"""The evaluation protocol every estimator goes through, and ``evaluation.tsv``.

- Folds per subject: the dynamic trials are split round-robin into ``n_folds`` held-out groups
  (each trial held out once); a single-trial subject is cut into ``n_segments`` time spans instead.
- Torque: per held-out trial and coordinate, RMSE (N m), NRMSE (% of the ID moment's range), R2
  and Pearson r of the predicted moments against inverse dynamics.
- Leave-one-muscle-out: each measured muscle of the subject's ``hide`` list is hidden from the
  estimator (in fit and predict), together with every muscle fed by the same EMG channel, predicted,
  and compared with its measured envelope (r, RMSE, VAF).

Rows are long format: ``subject, trial, method, quantity, channel, metric, value`` with
``quantity`` in ``moment`` (channel = coordinate) or ``excitation`` (channel = hidden muscle).
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
from musculo.estimators.base import Estimator
from musculo.io.atomic import atomic_output
from musculo.io.tables import write_sto
from musculo.physics.data import TrialData, load_trial_dir, select_muscles

COLUMNS = ["subject", "trial", "method", "quantity", "channel", "metric", "value"]
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


def _r(a: np.ndarray, b: np.ndarray) -> float:
    if np.std(a) < 1e-12 or np.std(b) < 1e-12:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def moment_metrics(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """RMSE, NRMSE (% of reference range), R2 and r of one coordinate's moment time series."""
    p, y = np.asarray(predicted, dtype=float), np.asarray(reference, dtype=float)
    rmse = float(np.sqrt(np.mean((p - y) ** 2)))
    span = float(np.ptp(y))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return {
        "rmse": rmse,
        "nrmse": 100.0 * rmse / span if span > 0 else float("nan"),
        "r2": 1.0 - float(np.sum((p - y) ** 2)) / ss_tot if ss_tot > 0 else float("nan"),
        "r": _r(p, y),
    }


def excitation_metrics(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """r, RMSE and VAF (1 - SSE / sum of squared reference) of one muscle's excitation."""
    p, y = np.asarray(predicted, dtype=float), np.asarray(reference, dtype=float)
    denom = float(np.sum(y**2))
    return {
        "r": _r(p, y),
        "rmse": float(np.sqrt(np.mean((p - y) ** 2))),
        "vaf": 1.0 - float(np.sum((p - y) ** 2)) / denom if denom > 0 else float("nan"),
    }


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
        out_dir: ``results/<s>/<method>``: receives ``<trial>.excitations.sto``,
            ``<trial>.moments.sto``, ``lomo/<muscle>/<trial>.excitations.sto`` and ``evaluation.tsv``.
        channels: EMG channel -> model muscles (``emg.channels``); a hidden muscle is hidden together
            with every muscle sharing its channel (see :func:`hidden_groups`), one fit per group.
    """
    out = Path(out_dir)
    rows: list[dict[str, Any]] = []
    groups = hidden_groups(hide, channels)
    for i, (train, test) in enumerate(folds):
        est = make_estimator().fit(train, hidden=())
        logger.info("%s %s: fold %d fitted on %s", method, subject, i, [t.name for t in train])
        for trial in test:
            pred = est.predict(trial)
            pred.write(excitations=out / f"{trial.name}.excitations.sto",
                       moments=out / f"{trial.name}.moments.sto")
            for j, coord in enumerate(trial.coordinates):
                rows += _rows(subject, trial.name, method, "moment", coord,
                              moment_metrics(pred.moments[coord].to_numpy(), trial.id_moment[:, j]))
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
                write_sto(out / "lomo" / muscle / f"{trial.name}.excitations.sto", lomo, name="excitations")
                ref = trial.excitation[:, trial.muscles.index(muscle)]
                rows += _rows(subject, trial.name, method, "excitation", muscle,
                              excitation_metrics(lomo[muscle].to_numpy(), ref))
    table = pd.DataFrame(rows, columns=COLUMNS)
    write_table(table, out / "evaluation.tsv")
    return table


def hideable_muscles(hide: Sequence[str], trials: Sequence[TrialData], *, subject: str) -> list[str]:
    """The muscles of ``hide`` that have EMG in every trial (the others are logged and left out)."""
    hidden = [m for m in hide if all(m in t.muscles and t.measured[t.muscles.index(m)] for t in trials)]
    skipped = sorted(set(hide) - set(hidden))
    if skipped:
        logger.warning("%s: hide muscles %s have no EMG in every trial; left out of leave-one-muscle-out",
                       subject, skipped)
    return hidden


def usable_emg(trials: Sequence[TrialData]) -> bool:
    """Whether any modelled muscle has an EMG excitation (a channel that passed quality)."""
    return any(bool(np.any(t.measured)) for t in trials)


NOT_FITTED = "not fitted"


def write_not_applicable(
    *, method: str, subject: str, out_dir: str | os.PathLike[str], reason: str,
    state_files: Sequence[str] = (),
) -> pd.DataFrame:
    """Record that an EMG-driven method cannot run for a subject, without failing the workflow.

    Writes a header-only ``evaluation.tsv`` and, for each of ``state_files``, a JSON status
    (``{"status": "not fitted", "reason": ...}``; files ending in ``.pt`` get an empty torch state),
    so that the report states why the method has no rows while other subjects carry on.
    """
    out = Path(out_dir)
    logger.warning("%s %s: not fitted: %s", method, subject, reason)
    status = {"status": NOT_FITTED, "method": method, "subject": subject, "reason": reason}
    for name in state_files:
        with atomic_output(out / name) as tmp:
            if name.endswith(".pt"):
                import torch

                torch.save({"status": NOT_FITTED, "reason": reason}, tmp)
            else:
                tmp.write_text(json.dumps(status, indent=2) + "\n")
    table = pd.DataFrame(columns=COLUMNS)
    write_table(table, out / "evaluation.tsv")
    return table


def write_table(table: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write an evaluation table as TSV atomically (fixed float format, so reruns are identical)."""
    with atomic_output(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g", na_rep="nan")


def load_subject_trials(
    *, trial_dirs: Sequence[str | os.PathLike[str]], coordinates: Sequence[str] | None = None,
    with_so: bool = False, measured: Sequence[str] | None = None, unmeasured: Sequence[str] | None = None,
    source: str = "subject file", window: str = "all",
) -> list[TrialData]:
    """Load each ``results/<s>/<t>/`` folder as a :class:`TrialData`.

    With ``measured`` (the subject's EMG-mapped muscles) and/or ``unmeasured`` (its muscles to
    estimate), the trials hold only the modelled muscle set of
    :func:`musculo.physics.data.model_muscles`; with both None, every model muscle. ``window``
    (config ``physics.window``) selects the frames, see :func:`musculo.physics.data.load_trial_dir`.
    """
    trials = [load_trial_dir(d, coordinates=list(coordinates) if coordinates else None, with_so=with_so,
                             window=window)
              for d in trial_dirs]
    return select_muscles(trials, measured=measured, unmeasured=unmeasured, source=source)


def run_method_evaluation(
    *,
    method: str,
    subject: str,
    trial_dirs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    coordinates: Sequence[str] | None = None,
    hide: Sequence[str] = (),
    channels: Mapping[str, Sequence[str]] | None = None,
    measured: Sequence[str] | None = None,
    unmeasured: Sequence[str] | None = None,
    physics: dict[str, Any] | None = None,
    mse: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
    calibration: str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Evaluate ``method`` (``mse`` or ``so``) on a subject's trial folders (Snakemake entry point).

    ``mse`` models the subject's muscle set (``measured`` muscles with EMG plus ``unmeasured``,
    see :func:`musculo.physics.data.model_muscles`) and extrapolates exactly the ``unmeasured``
    ones (plus the hidden muscles in leave-one-muscle-out: a muscle of ``hide`` together with every
    muscle sharing its EMG channel in ``channels``). ``so`` is OpenSim's solution over every
    muscle of the scaled model: its moments sum all of them; its hidden-muscle rows compare SO's
    activation of that muscle with its envelope.

    No fold sees its held-out trials: with ``mse.calibrate_physics`` (default) the physics
    parameters are calibrated jointly with the weights on each fold's training trials only;
    without it the physics keeps the scaled model's own parameters. The subject's ``calibration``
    file (fitted on every trial, held-out ones included) never enters the folds: it is only the
    starting point of the deployable estimator fitted on every trial after the folds and saved
    under ``out_dir``.
    """
    from musculo.estimators.calibration import DEFAULT_CALIBRATED, load_calibration
    from musculo.estimators.mse import mse_from_config
    from musculo.estimators.so import SOEstimator

    ev = dict(evaluation or {})
    physics = dict(physics or {})
    cfg = dict(mse or {})
    source = f"subject {subject}"
    window = str(physics.get("window", "all"))
    if method == "so":
        trials = load_subject_trials(trial_dirs=trial_dirs, coordinates=coordinates, with_so=True,
                                     source=source, window=window)
    else:
        trials = load_subject_trials(trial_dirs=trial_dirs, coordinates=coordinates, measured=measured,
                                     unmeasured=unmeasured, source=source, window=window)
    if method != "so" and not usable_emg(trials):
        return write_not_applicable(
            method=method, subject=subject, out_dir=out_dir, state_files=[f"{method}.json"],
            reason="no EMG channel of the subject passed quality in every trial (see emg_quality.json)")
    folds = make_folds(trials, n_folds=int(ev.get("n_folds", 2)), n_segments=int(ev.get("n_segments", 3)))
    make: Callable[[], Estimator]
    final: Callable[[], Estimator]
    if method == "so":
        def make() -> Estimator:
            return SOEstimator(physics=physics)
        final = make
    elif method == "mse":
        trainable = list(physics.get("calibrate", DEFAULT_CALIBRATED)) \
            if cfg.get("calibrate_physics", True) else []
        subject_calib = load_calibration(calibration) if calibration is not None and trainable else None

        def make() -> Estimator:
            return mse_from_config(mse=cfg, physics=physics, trainable_physics=trainable, seed=seed)

        def final() -> Estimator:
            return mse_from_config(mse=cfg, physics=physics, calibration=subject_calib,
                                   trainable_physics=trainable, seed=seed)
    else:
        raise EstimatorError(f"evaluation: unknown method {method!r} for run_method_evaluation (mse, so)")
    # SO ignores EMG, but its activation of a hidden muscle is compared with the same envelope.
    hidden = hideable_muscles(hide, trials, subject=subject)
    table = evaluate_estimator(make_estimator=make, subject=subject, folds=folds, method=method,
                               hide=hidden, out_dir=out_dir, channels=channels)
    final().fit(trials).save(out_dir)
    return table


def concatenate_evaluations(
    *, inputs: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str]
) -> pd.DataFrame:
    """Concatenate per-method ``evaluation.tsv`` files into ``results/<s>/evaluation.tsv``."""
    frames = []
    for path in inputs:
        df = pd.read_csv(path, sep="\t")
        missing = set(COLUMNS) - set(df.columns)
        if missing:
            raise EstimatorError(f"{path}: columns {sorted(missing)} missing; rerun that method's evaluation")
        frames.append(df[COLUMNS])
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    write_table(table, output)
    return table
