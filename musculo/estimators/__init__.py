"""Estimators of unmeasured (deep) muscle excitations, sharing one interface (:mod:`.base`)."""

from musculo.estimators.base import Estimator, Prediction

__all__ = ["Estimator", "Prediction"]
