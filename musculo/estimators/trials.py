"""A subject's trials as the estimators see them: one loader, one muscle set, one EMG guard.

Every estimator fit (the evaluation folds, the deployable fit, the subject calibration) reads its
trials through :func:`load_trials`, so the frames (``physics.window``), the tracked coordinates
and the modelled muscles are the same for every method.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from musculo import logger
from musculo.physics.data import TrialData, load_trial_dir, select_muscles
from musculo.settings import Settings
from musculo.subject import Subject

NOT_FITTED = "not fitted"
NO_EMG = "no EMG channel of the subject passed quality in every trial (see emg_quality.json)"


def load_trials(
    subject: Subject, trial_dirs: Sequence[str | os.PathLike[str]], *, settings: Settings,
    muscle_set: str = "subject", with_so: bool = False, source: str | None = None,
) -> list[TrialData]:
    """Load each ``results/<s>/<t>/`` folder of ``subject`` as a :class:`TrialData`.

    ``muscle_set`` ``subject`` keeps the subject's modelled muscles (its EMG-mapped muscles with a
    usable channel plus its ``unmeasured`` list, :func:`musculo.physics.data.model_muscles`);
    ``model`` keeps every muscle of the scaled model, as does a subject listing neither EMG nor
    unmeasured muscles. Frames are those of ``physics.window``.
    """
    coords = subject.coordinates or None
    trials = [load_trial_dir(d, coordinates=coords, with_so=with_so, window=settings.physics.window)
              for d in trial_dirs]
    if muscle_set == "model" or not (subject.measured_muscles or subject.unmeasured):
        return trials
    return select_muscles(trials, measured=subject.measured_muscles, unmeasured=subject.unmeasured,
                          source=source or f"subject {subject.id}")


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
