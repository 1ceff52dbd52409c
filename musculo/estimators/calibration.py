"""Subject calibration of the physics core (CEINMS style), saved to ``results/<s>/physics/calibration.json``.

The bounded subject parameters (per-muscle strength, optimal fibre and tendon slack length scales,
EMG gains; shared activation time constant and non-linearity) are fitted on calibration trials
against inverse-dynamics moments. Muscles without EMG that span a tracked coordinate are driven by
synergy extrapolation (:class:`musculo.estimators.mse.MSEEstimator`) fitted jointly, so that the
measured muscles are not made stronger to stand in for the unmeasured ones; ``physics.prior_weight``
pulls every calibrated parameter towards the scaled model's value. The modelled muscles are the
subject's measured and ``unmeasured`` ones (:func:`musculo.physics.data.model_muscles`).

The record is fitted on every given trial (the subject's deployable calibration); the held-out
evaluation never reads it, each fold calibrating on its own training trials instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from musculo import logger
from musculo.errors import EstimatorError
from musculo.estimators.trials import NO_EMG, NOT_FITTED, load_trials, usable_emg
from musculo.io.atomic import atomic_output
from musculo.physics.data import TrialData
from musculo.settings import Settings
from musculo.subject import Subject


def calibrate(*, trials: Sequence[TrialData], settings: Settings) -> dict[str, Any]:
    """Fit the subject parameters on ``trials``; return the calibration record (JSON-serialisable).

    The fit is an MSE fit (:func:`musculo.estimators.mse.mse_from_config` with
    ``for_calibration``): the parameters of ``physics.calibrate`` are learned jointly with the
    extrapolation weights for ``physics.calibration_max_iter`` iterations.
    """
    if not trials:
        raise EstimatorError("physics.calibration: no calibration trials")
    from musculo.estimators.mse import mse_from_config  # torch and scikit-learn only when fitting

    est = mse_from_config(settings, for_calibration=True).fit(trials)
    rmse = {}
    for trial in trials:
        pred = est.predict(trial).moments.to_numpy()
        rmse[trial.name] = dict(zip(trial.coordinates,
                                    np.sqrt(np.mean((pred - trial.id_moment) ** 2, axis=0)).tolist(),
                                    strict=True))
    record = {
        "parameters": est.model_.to_dict() if est.model_ else {},
        "trials": [t.name for t in trials],
        "coordinates": list(trials[0].coordinates),
        "measured": est.measured_, "extrapolated": est.extrapolated_,
        "n_synergies": int(est.synergies_.shape[0]), "vaf": est.vaf_,
        "fit": est.fit_info_, "rmse": rmse,
    }
    logger.info("calibration on %s: loss %.4g", record["trials"], est.fit_info_["loss"])
    return record


def load_calibration(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``calibration.json``; raises :class:`EstimatorError` naming the file when unreadable."""
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EstimatorError(f"{p}: cannot read the calibration ({exc}); rerun the calibrate rule") from exc


def run_calibration(
    *, subject: Subject, trial_dirs: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str],
    settings: Settings,
) -> dict[str, Any]:
    """Calibrate a subject from its trial result folders and write ``output`` (calibration.json).

    ``physics.calibration_trials`` > 0 uses only the first that many trials. The modelled muscles
    are the subject's (:func:`musculo.physics.data.model_muscles`). The record is fitted on every
    given trial: it is the subject's deployable calibration, never an input of a held-out fold
    (see :func:`musculo.evaluation.run_evaluation`).
    """
    n = settings.physics.calibration_trials
    dirs = list(trial_dirs)[: n or None]
    trials = load_trials(subject, dirs, settings=settings, muscle_set="subject", source=str(output))
    if not usable_emg(trials):
        logger.warning("%s: calibration not fitted: %s", output, NO_EMG)
        record = {"status": NOT_FITTED, "reason": NO_EMG, "parameters": {}}
    else:
        record = calibrate(trials=trials, settings=settings)
    with atomic_output(output) as tmp:
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    return record
