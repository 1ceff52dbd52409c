"""OpenSim static optimisation as a method of the evaluation protocol.

SO does not use EMG: its "prediction" of a (hidden) muscle is its activation from
``so_activation.sto``, and its moments are those activations driven through the physics core's
muscle force and moment-arm sum (no activation dynamics), with the scaled model's own parameters.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch

from musculo.errors import EstimatorError
from musculo.estimators.base import Estimator, Prediction, prediction_from_arrays
from musculo.estimators.registry import EstimatorSpec
from musculo.io.atomic import atomic_output
from musculo.physics.data import TrialData
from musculo.physics.muscle import model_for, trial_tensors
from musculo.settings import PhysicsSettings, Settings, as_physics


def so_moments(
    trial: TrialData, *, activation: Any = None, physics: PhysicsSettings | Mapping[str, Any] | None = None
) -> Any:
    """Moments (T, C) of activations (T, M) (default: the trial's SO activations) via the physics core."""
    return _so_outputs(trial, activation=activation, physics=physics)[0]


def _so_outputs(
    trial: TrialData, *, activation: Any = None, physics: PhysicsSettings | Mapping[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(moments (T, C), muscle forces (T, M)) of SO's activations through the physics core."""
    act = trial.so_activation if activation is None else activation
    if act is None:
        raise EstimatorError(f"trial {trial.name}: no static-optimisation activations; run the so stage")
    model = model_for(trial, physics=as_physics(physics))
    tt = trial_tensors(trial)
    with torch.no_grad():
        act_t = torch.as_tensor(act, dtype=tt.mtu_length.dtype)[None]
        force = model.force(act_t, tt.mtu_length, tt.mtu_velocity)
        return model.moments(force, tt.moment_arm)[0].numpy(), force[0].numpy()


class SOEstimator(Estimator):
    """Static optimisation read from the trial (nothing to fit)."""

    name = "so"

    def __init__(self, *, physics: PhysicsSettings | Mapping[str, Any] | None = None):
        self.physics = as_physics(physics)
        self.hidden_: list[str] = []

    def fit(self, trials: Sequence[TrialData], *, hidden: Sequence[str] = ()) -> Self:
        """Nothing to learn; remembers ``hidden`` for the record."""
        self.hidden_ = list(hidden)
        return self

    def predict(self, trial: TrialData) -> Prediction:
        """SO activations of every muscle and their moments through the physics core."""
        moments, forces = _so_outputs(trial, physics=self.physics)
        return prediction_from_arrays(trial, excitation=trial.so_activation, moments=moments, forces=forces)

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write ``so.json`` (settings)."""
        with atomic_output(Path(directory) / "so.json") as tmp:
            tmp.write_text(json.dumps({"method": self.name, "physics": self.physics.to_dict(),
                                       "hidden": self.hidden_}))

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Self:
        """Read ``so.json``."""
        state = json.loads(cls._check_dir(directory, "so.json").read_text())
        est = cls(physics=state["physics"])
        est.hidden_ = state["hidden"]
        return est


def _factory(settings: Settings, *, calibration: Mapping[str, Any] | None = None) -> SOEstimator:
    return SOEstimator(physics=settings.physics)


SPEC = EstimatorSpec(name="so", factory=_factory, needs_emg=False, needs_so=True, muscle_set="model",
                     description="OpenSim static optimisation: a consistency check fitted to the moments")
