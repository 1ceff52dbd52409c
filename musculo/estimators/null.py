"""The ``null`` floor: constants fitted on the training trials, so every table has a bar to clear.

- Moments: each tracked coordinate's mean inverse-dynamics moment over the training trials (a
  held-out R2 of about zero by construction).
- Excitations: measured muscles keep their EMG; a hidden muscle (leave-one-muscle-out) is predicted
  as its mean EMG excitation over the training trials; a muscle never measured is predicted as the
  mean excitation of the measured muscles over the training trials.

A method that does not beat these constants on held-out trials has learnt nothing usable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from musculo.errors import EstimatorError
from musculo.estimators.base import Estimator, Prediction, prediction_from_arrays
from musculo.estimators.registry import EstimatorSpec
from musculo.io.atomic import atomic_output
from musculo.physics.data import TrialData
from musculo.settings import Settings


class NullEstimator(Estimator):
    """Training-trial means as predictions (see module docstring)."""

    name = "null"

    def __init__(self) -> None:
        self.muscles_: list[str] = []
        self.coordinates_: list[str] = []
        self.hidden_: list[str] = []
        self.excitation_: np.ndarray | None = None
        self.moment_: np.ndarray | None = None

    def fit(self, trials: Sequence[TrialData], *, hidden: Sequence[str] = ()) -> Self:
        """Means of the training trials (a hidden muscle's own mean EMG is its constant)."""
        if not trials:
            raise EstimatorError("null: no training trials")
        first = trials[0]
        self.muscles_, self.coordinates_ = list(first.muscles), list(first.coordinates)
        self.hidden_ = list(hidden)
        exc = np.concatenate([t.excitation for t in trials])
        measured = np.logical_and.reduce([t.measured for t in trials])
        visible = measured & ~np.isin(first.muscles, self.hidden_)
        level = float(exc[:, visible].mean()) if visible.any() else 0.0
        self.excitation_ = np.where(measured, exc.mean(axis=0), level)
        self.moment_ = np.concatenate([t.id_moment for t in trials]).mean(axis=0)
        return self

    def predict(self, trial: TrialData) -> Prediction:
        """Measured (not hidden) muscles keep their EMG; the others and the moments are constants."""
        if self.excitation_ is None or self.moment_ is None:
            raise EstimatorError("null: predict called before fit (or load)")
        if list(trial.muscles) != self.muscles_ or list(trial.coordinates) != self.coordinates_:
            raise EstimatorError(f"trial {trial.name}: muscles or coordinates differ from the fitted ones")
        seen = trial.hide([m for m in self.hidden_ if m in trial.muscles])
        exc = np.where(seen.measured, seen.excitation, self.excitation_[None, :])
        moments = np.repeat(self.moment_[None, :], trial.n_frames, axis=0)
        return prediction_from_arrays(trial, excitation=exc, moments=moments)

    def state(self) -> dict[str, Any]:
        """The fitted constants as JSON."""
        if self.excitation_ is None or self.moment_ is None:
            raise EstimatorError("null: nothing to save before fit")
        return {"method": self.name, "muscles": self.muscles_, "coordinates": self.coordinates_,
                "hidden": self.hidden_, "excitation": self.excitation_.tolist(),
                "moment": self.moment_.tolist()}

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write ``null.json``."""
        with atomic_output(Path(directory) / "null.json") as tmp:
            tmp.write_text(json.dumps(self.state(), indent=1))

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Self:
        """Read ``null.json``."""
        state = json.loads(cls._check_dir(directory, "null.json").read_text())
        est = cls()
        est.muscles_, est.coordinates_, est.hidden_ = state["muscles"], state["coordinates"], state["hidden"]
        est.excitation_ = np.asarray(state["excitation"], dtype=float)
        est.moment_ = np.asarray(state["moment"], dtype=float)
        return est


def _factory(settings: Settings, *, calibration: dict[str, Any] | None = None) -> NullEstimator:
    return NullEstimator()


SPEC = EstimatorSpec(name="null", factory=_factory, needs_emg=False, muscle_set="subject",
                     description="training-trial means: the floor every method must beat")
