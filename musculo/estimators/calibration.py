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
from musculo.io.atomic import atomic_output
from musculo.physics.data import TrialData, load_trial_dir, select_muscles

DEFAULT_CALIBRATED = ("strength_scale", "optimal_fiber_length_scale", "tendon_slack_length_scale",
                      "emg_gain", "tau_act", "shape")


def calibrate(
    *, trials: Sequence[TrialData], physics: dict[str, Any] | None = None,
    mse: dict[str, Any] | None = None, seed: int = 0,
) -> dict[str, Any]:
    """Fit the subject parameters on ``trials``; return the calibration record (JSON-serialisable).

    ``physics`` keys: ``calibrate`` (parameter names to fit), ``calibration_max_iter`` and the keys
    of :func:`musculo.physics.muscle.model_for`; ``mse`` keys: those of
    :class:`~musculo.estimators.mse.MSEEstimator` used for the unmeasured muscles.
    """
    from musculo.estimators.mse import MSEEstimator

    physics = dict(physics or {})
    mse = dict(mse or {})
    if not trials:
        raise EstimatorError("physics.calibration: no calibration trials")
    est = MSEEstimator(
        physics=physics, n_synergies=mse.get("n_synergies"), vaf_threshold=mse.get("vaf_threshold", 0.9),
        max_synergies=mse.get("max_synergies", 6), magnitude_weight=mse.get("magnitude_weight", 0.01),
        max_iter=int(physics.get("calibration_max_iter", 100)),
        trainable_physics=physics.get("calibrate", DEFAULT_CALIBRATED), seed=seed,
    ).fit(trials)
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
    *, trial_dirs: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str],
    coordinates: Sequence[str] | None = None, measured: Sequence[str] | None = None,
    unmeasured: Sequence[str] | None = None, physics: dict[str, Any] | None = None,
    mse: dict[str, Any] | None = None, seed: int = 0, n_trials: int = 0,
) -> dict[str, Any]:
    """Calibrate a subject from its trial result folders and write ``output`` (calibration.json).

    ``n_trials`` > 0 uses only the first that many trials. ``measured`` / ``unmeasured`` select the
    modelled muscle set (see :func:`musculo.physics.data.model_muscles`); both None model every
    muscle. The record is fitted on every given trial: it is the subject's deployable calibration,
    never an input of the held-out evaluation (see :func:`musculo.evaluation.run_method_evaluation`).
    """
    dirs = list(trial_dirs)[: n_trials or None]
    window = str((physics or {}).get("window", "all"))
    trials = [load_trial_dir(d, coordinates=list(coordinates) if coordinates else None, window=window)
              for d in dirs]
    trials = select_muscles(trials, measured=measured, unmeasured=unmeasured, source=str(output))
    if not any(bool(t.measured.any()) for t in trials):
        reason = "no EMG channel of the subject passed quality in every trial (see emg_quality.json)"
        logger.warning("%s: calibration not fitted: %s", output, reason)
        record = {"status": "not fitted", "reason": reason, "parameters": {}}
    else:
        record = calibrate(trials=trials, physics=physics, mse=mse, seed=seed)
    with atomic_output(output) as tmp:
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    return record
