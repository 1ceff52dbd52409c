"""The estimator interface shared by every method (MSE, NMM, static optimisation, later ones).

scikit-learn style: construct with hyper-parameters, ``fit(trials, hidden=...)`` on training
trials, ``predict(trial)`` on any trial of the same subject, ``save(dir)`` / ``load(dir)``.

``hidden`` lists measured muscles the estimator must treat as unmeasured (leave-one-muscle-out):
their EMG is removed from every trial it sees, in ``fit`` and in ``predict``, so the prediction
of a hidden muscle never uses its own envelope.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

import numpy as np
import pandas as pd

from musculo.errors import EstimatorError
from musculo.io.tables import write_sto
from musculo.physics.data import TrialData


@dataclass(frozen=True)
class Prediction:
    """An estimator's output on one trial.

    Attributes:
        excitations: index time (s), one column per modelled muscle (0..1), measured muscles
            included (their EMG after the estimator's own processing).
        moments: index time (s), one column per tracked coordinate (N m): the moments the
            excitations produce through the physics core.
        forces: index time (s), one column per modelled muscle (N, along the tendon), for the
            methods whose muscle forces come from the physics core; None otherwise.
    """

    excitations: pd.DataFrame
    moments: pd.DataFrame
    forces: pd.DataFrame | None = None

    def write(self, directory: str | os.PathLike[str], trial: str) -> None:
        """Write ``<trial>.excitations.sto``, ``<trial>.moments.sto`` (and ``.forces.sto``) atomically."""
        d = Path(directory)
        write_sto(d / f"{trial}.excitations.sto", self.excitations, name="excitations")
        write_sto(d / f"{trial}.moments.sto", self.moments, name="moments")
        if self.forces is not None:
            write_sto(d / f"{trial}.forces.sto", self.forces, name="forces")


def join_predictions(parts: Sequence[Prediction]) -> Prediction:
    """Time spans of one trial (held out in different folds) as one prediction, in time order."""
    parts = sorted(parts, key=lambda p: float(p.excitations.index[0]))

    def cat(tables: list[pd.DataFrame | None]) -> pd.DataFrame | None:
        return None if any(t is None for t in tables) else pd.concat(tables)

    return Prediction(excitations=cat([p.excitations for p in parts]),
                      moments=cat([p.moments for p in parts]), forces=cat([p.forces for p in parts]))


def prediction_from_arrays(
    trial: TrialData, *, excitation: np.ndarray, moments: np.ndarray, forces: np.ndarray | None = None
) -> Prediction:
    """Wrap (T, M) excitations, (T, C) moments and optional (T, M) forces of ``trial``."""
    index = pd.Index(trial.time, name="time")
    return Prediction(
        excitations=pd.DataFrame(np.asarray(excitation, dtype=float), index=index, columns=trial.muscles),
        moments=pd.DataFrame(np.asarray(moments, dtype=float), index=index, columns=trial.coordinates),
        forces=None if forces is None else pd.DataFrame(np.asarray(forces, dtype=float), index=index,
                                                         columns=trial.muscles),
    )


class Estimator(ABC):
    """Base class of excitation estimators.

    Subclasses set ``name`` (the ``method`` column of evaluation.tsv) and implement the four methods.
    """

    name: ClassVar[str] = "estimator"

    @abstractmethod
    def fit(self, trials: Sequence[TrialData], *, hidden: Sequence[str] = ()) -> Self:
        """Fit on training trials, treating the measured muscles ``hidden`` as unmeasured."""

    @abstractmethod
    def predict(self, trial: TrialData) -> Prediction:
        """Excitations of every modelled muscle and the resulting moments on ``trial``."""

    @abstractmethod
    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write the fitted state (weights + hyper-parameters as JSON/npz) under ``directory``."""

    @classmethod
    @abstractmethod
    def load(cls, directory: str | os.PathLike[str]) -> Self:
        """Read an estimator written by :meth:`save`."""

    @staticmethod
    def _check_dir(directory: str | os.PathLike[str], file: str) -> Path:
        path = Path(directory) / file
        if not path.is_file():
            raise EstimatorError(f"{path}: not found; fit and save the estimator first")
        return path
