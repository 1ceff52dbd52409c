"""A subject's trials as the estimators see them: one loader, one muscle set, one EMG guard.

Every estimator fit (the evaluation folds, the deployable fit, the subject calibration) reads its
trials through :func:`load_trials`, so the frames (``physics.window``), the tracked coordinates
and the modelled muscles are the same for every method.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from musculo import logger
from musculo.errors import InputDataError
from musculo.physics.data import TrialData, load_trial_dir, select_muscles, spanning_muscles
from musculo.settings import Settings
from musculo.subject import Subject

NOT_FITTED = "not fitted"
MUSCLE_SETS = ("subject", "listed", "model")
NO_EMG = "no EMG channel of the subject passed quality in every trial (see emg_quality.json)"


def load_trials(
    subject: Subject, trial_dirs: Sequence[str | os.PathLike[str]], *, settings: Settings,
    muscle_set: str = "subject", with_so: bool = False, source: str | None = None,
) -> list[TrialData]:
    """Load each ``results/<s>/<t>/`` folder of ``subject`` as a :class:`TrialData`.

    ``muscle_set`` ``subject`` keeps the subject's modelled muscles (its EMG-mapped muscles with a
    usable channel plus its ``unmeasured`` list, :func:`musculo.physics.data.model_muscles`; for
    ``unmeasured: auto`` every muscle without a channel that spans a tracked coordinate,
    :func:`musculo.physics.data.spanning_muscles`);
    ``listed`` keeps every muscle the subject file lists (``emg.channels`` and ``unmeasured``), a
    muscle whose channel failed quality staying in as not measured, so that subjects sharing a
    channel map share one muscle set whatever their channel quality (the cross-subject cohorts);
    ``model`` keeps every muscle of the scaled model, as does a subject listing neither EMG nor
    unmeasured muscles. Frames are those of ``physics.window``.
    """
    if muscle_set not in MUSCLE_SETS:
        raise ValueError(f"muscle_set {muscle_set!r} is not one of {MUSCLE_SETS}")
    coords = subject.coordinates or None
    trials = [with_emg_divisors(load_trial_dir(d, coordinates=coords, with_so=with_so,
                                               window=settings.physics.window), subject, d)
              for d in trial_dirs]
    listed = subject.measured_muscles or subject.unmeasured or subject.unmeasured_auto
    if muscle_set == "model" or not listed:
        return trials
    unmeasured = (spanning_muscles(trials, exclude=subject.measured_muscles) if subject.unmeasured_auto
                  else subject.unmeasured)
    return select_muscles(trials, measured=subject.measured_muscles, unmeasured=unmeasured,
                          source=source or f"subject {subject.id}", keep_failed=muscle_set == "listed")


def usable_emg(trials: Sequence[TrialData]) -> bool:
    """Whether any modelled muscle has an EMG excitation (a channel that passed quality)."""
    return any(bool(np.any(t.measured)) for t in trials)


def hideable_muscles(hide: Sequence[str], trials: Sequence[TrialData], *, subject: str) -> list[str]:
    """The muscles of ``hide`` that have EMG in every trial (the others are logged and left out)."""
    hidden = [m for m in hide if all(m in t.muscles and t.measured[t.muscles.index(m)] for t in trials)]
    skipped = sorted(set(hide) - set(hidden))
    if skipped:
        logger.warning("%s: hide muscles %s have no EMG in every trial; left out of leave-one-muscle-out",
                       subject, skipped)
    return hidden


NORMALISATION_FILE = "emg_normalisation.json"


def with_emg_divisors(trial: TrialData, subject: Subject, trial_dir: str | os.PathLike[str]) -> TrialData:
    """``trial`` with the EMG stage's divisors attached (``emg_divisor``, ``emg_fixed``).

    The divisors are read from ``emg_normalisation.json`` beside the trial folder (``results/<s>/``)
    and mapped to muscles through the subject's ``emg.channels``; a trial without that file keeps
    its excitations as given (no per-fold re-normalisation).
    """
    path = Path(trial_dir).parent / NORMALISATION_FILE
    if not path.is_file() or not np.any(trial.measured):
        return trial
    try:
        record: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputDataError(f"{path}: unreadable ({exc}); rerun the emg_normalise rule") from exc
    divisor = np.full(len(trial.muscles), np.nan)
    fixed = np.zeros(len(trial.muscles), dtype=bool)
    for channel, muscles in subject.emg_channels.items():
        entry = record.get(channel) or {}
        if not entry.get("divisor"):
            continue
        for m in muscles:
            if m in trial.muscles:
                i = trial.muscles.index(m)
                divisor[i] = float(entry["divisor"])
                fixed[i] = entry.get("method") == "mvc"
    return replace(trial, emg_divisor=divisor, emg_fixed=fixed)


def fold_divisors(train: Sequence[TrialData]) -> np.ndarray | None:
    """Per-muscle divisor (M,) of one fold, from its training trials only (no held-out peak).

    For a muscle whose EMG stage divisor comes from MVC trials (never held out) it is that
    divisor; otherwise the peak raw envelope (``excitation * emg_divisor``) over the training
    trials' frames. NaN for unmeasured muscles; None when the trials carry no divisors.
    """
    if not train or any(t.emg_divisor is None for t in train):
        return None
    first = train[0]
    out = np.full(len(first.muscles), np.nan)
    for i in range(len(first.muscles)):
        stage = [t.emg_divisor[i] for t in train if t.measured[i] and np.isfinite(t.emg_divisor[i])]
        if not stage:
            continue
        if first.emg_fixed is not None and first.emg_fixed[i]:
            out[i] = stage[0]
            continue
        peak = max(float(np.max(t.excitation[:, i] * t.emg_divisor[i])) for t in train
                   if t.measured[i] and np.isfinite(t.emg_divisor[i]))
        out[i] = peak if peak > 0 else stage[0]
    return out


def renormalise(trial: TrialData, divisor: np.ndarray | None) -> TrialData:
    """``trial``'s excitations divided by ``divisor`` (M,) instead of the EMG stage's (clipped to 0..1)."""
    if divisor is None or trial.emg_divisor is None:
        return trial
    exc = trial.excitation.copy()
    new_div = trial.emg_divisor.copy()
    for i in np.flatnonzero(trial.measured & np.isfinite(divisor) & np.isfinite(trial.emg_divisor)):
        exc[:, i] = np.clip(trial.excitation[:, i] * trial.emg_divisor[i] / divisor[i], 0.0, 1.0)
        new_div[i] = divisor[i]
    return replace(trial, excitation=exc, emg_divisor=new_div)


def fold_normalise(
    train: Sequence[TrialData], test: Sequence[TrialData] = ()
) -> tuple[list[TrialData], list[TrialData], np.ndarray | None]:
    """Normalise a fold's EMG with divisors computed on its training trials (:func:`fold_divisors`).

    Returns the re-normalised training and held-out trials and the divisors; a held-out trial's
    EMG never enters the divisors, so changing it leaves the fold's training data (and so its
    fitted model) unchanged. Held-out excitations above the training peak are clipped to 1.
    """
    div = fold_divisors(train)
    return [renormalise(t, div) for t in train], [renormalise(t, div) for t in test], div
