"""Muscle-synergy extrapolation (MSE): the baseline estimator of unmeasured muscle excitations.

1. NMF (scikit-learn) of the measured excitations of the training trials, ``E ~ H @ S`` with
   synergy activations ``H`` (T, k) and synergy vectors ``S`` (k, measured); k is fixed
   (``n_synergies``) or the smallest with variance accounted for >= ``vaf_threshold``.
2. Each unmeasured muscle that spans a tracked coordinate gets excitation ``clip(H @ w, 0, 1)``
   with non-negative weights ``w`` (k,), optionally plus a constant residual on each measured muscle.
3. The weights minimise the normalised inverse-dynamics moment tracking error through the physics
   core (:class:`musculo.physics.muscle.MuscleModel`), with errors within ``moment_tolerance`` (N m)
   free (a dead-band, SynX's tracking tolerance), plus ``magnitude_weight`` x the mean squared
   extrapolated excitation (L-BFGS-B, deterministic). With ``trial_gain`` each training trial gets
   one EMG gain shared by its channels (bounded by ``trial_gain_bounds``), absorbing trial-to-trial
   amplitude drift so it does not bias the shared parameters; a new trial uses gain 1.
   Physics parameters fitted jointly (``trainable_physics``) add ``physics["prior_weight"]`` x
   their mean squared change as a fraction of their bound range, so measured muscles are not made
   stronger or weaker than the data demand to stand in for the extrapolated ones.

What still differs from SynX (Ao et al.): the residual excitations are one constant per measured
muscle (SynX: time-varying); the synergy activations of a new trial come from its EMG by
non-negative least squares, not optimised with the trial's moments; the tendon is rigid (SynX:
compliant, with a stiff triceps surae through ``physics.muscle_bounds``); the fit is one joint
L-BFGS-B problem (SynX: nested calibration then treatment-trial optimisation).

On a new trial the synergy activations come from the trial's measured excitations with the
synergy vectors fixed (non-negative least squares through scikit-learn), so prediction never uses
the trial's inverse-dynamics moments. With ``trainable_physics`` the physics parameters are fitted
jointly with the weights (this is how :mod:`musculo.estimators.calibration` calibrates a subject).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from sklearn.decomposition import NMF, non_negative_factorization
from sklearn.exceptions import ConvergenceWarning

from musculo import logger
from musculo.errors import EstimatorError
from musculo.estimators.base import Estimator, Prediction, prediction_from_arrays
from musculo.estimators.registry import EstimatorSpec
from musculo.io.atomic import atomic_output
from musculo.physics.data import MuscleParameters, TrialData
from musculo.physics.muscle import DTYPE, Bounded, MuscleModel, model_for, muscle_model, trial_tensors
from musculo.physics.optim import minimize_lbfgsb
from musculo.settings import MSESettings, PhysicsSettings, Settings, as_physics


def vaf(data: np.ndarray, reconstruction: np.ndarray) -> float:
    """Variance accounted for, ``1 - ||data - reconstruction||^2 / ||data||^2``."""
    denom = float(np.sum(data**2))
    return 1.0 - float(np.sum((data - reconstruction) ** 2)) / denom if denom > 0 else 0.0


def fit_synergies(
    excitation: np.ndarray, *, n_synergies: int | None = None, vaf_threshold: float = 0.9,
    max_synergies: int = 6, max_iter: int = 1000, seed: int = 0,
) -> tuple[np.ndarray, float]:
    """NMF synergy vectors (k, n_measured) of stacked excitations (T, n_measured) and their VAF.

    With ``n_synergies`` None, k grows from 1 until VAF >= ``vaf_threshold`` (at most
    ``max_synergies`` and the number of measured muscles); a fixed ``n_synergies`` above the number
    of measured muscles is capped to it.
    """
    data = np.clip(np.asarray(excitation, dtype=float), 0.0, None)
    n_meas = data.shape[1]
    if n_meas == 0:
        raise EstimatorError("mse: no measured muscle excitations to extract synergies from; "
                             "check the subject's emg channels")
    if n_synergies and int(n_synergies) > n_meas:
        logger.info("mse: %d synergies asked, %d measured muscles: %d synergies", n_synergies, n_meas, n_meas)
        n_synergies = n_meas
    candidates = [int(n_synergies)] if n_synergies else list(range(1, min(max_synergies, n_meas) + 1))
    best: tuple[np.ndarray, float] | None = None
    for k in candidates:
        if not 1 <= k <= n_meas:
            raise EstimatorError(f"mse.n_synergies: {k} is not in [1, {n_meas}] (measured muscles)")
        nmf = NMF(n_components=k, init="nndsvda", max_iter=max_iter, random_state=seed, tol=1e-6)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            h = nmf.fit_transform(data)
        score = vaf(data, h @ nmf.components_)
        best = (nmf.components_.copy(), score)
        logger.info("mse: %d synergies, VAF %.3f", k, score)
        if score >= vaf_threshold:
            break
    assert best is not None
    return best


def synergy_activations(excitation: np.ndarray, synergies: np.ndarray, *, max_iter: int = 1000) -> np.ndarray:
    """Non-negative activations H (T, k) with ``excitation ~ H @ synergies`` (synergies fixed)."""
    data = np.clip(np.asarray(excitation, dtype=float), 0.0, None)
    k = synergies.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        h, _, _ = non_negative_factorization(
            data, H=np.ascontiguousarray(synergies, dtype=float), n_components=k, init=None,
            update_H=False, solver="cd", max_iter=max_iter, tol=1e-8,
        )
    return h


class MSEEstimator(Estimator):
    """Synergy extrapolation with weights fitted through the physics core (see module docstring).

    Args:
        physics: the ``physics`` settings (a partial mapping is completed from the schema).
        calibration: calibrated physics parameters (``calibration.json`` content) or None.
        trainable_physics: physics parameters fitted jointly with the weights (calibration).
        seed: NMF initialisation seed.
        max_iter: L-BFGS-B iterations (None: ``mse.max_iter``; the subject calibration passes
            ``physics.calibration_max_iter``).
        **mse: keys of config section ``mse`` overriding its schema defaults (``n_synergies``,
            ``vaf_threshold``, ``max_synergies``, ``magnitude_weight``, ``residuals``,
            ``residual_bound``, ``max_iter``, ``calibrate_physics``, ``moment_tolerance``,
            ``trial_gain``, ``trial_gain_bounds``).
    """

    name = "mse"

    def __init__(
        self,
        *,
        physics: PhysicsSettings | Mapping[str, Any] | None = None,
        calibration: Mapping[str, Any] | None = None,
        trainable_physics: Sequence[str] = (),
        seed: int = 0,
        max_iter: int | None = None,
        **mse: Any,
    ):
        self.physics = as_physics(physics)
        self.config = MSESettings.from_config(mse)
        self.calibration = calibration
        self.n_synergies = self.config.n_synergies
        self.vaf_threshold = self.config.vaf_threshold
        self.max_synergies = self.config.max_synergies
        self.magnitude_weight = self.config.magnitude_weight
        self.residuals = self.config.residuals
        self.residual_bound = self.config.residual_bound
        self.max_iter = int(max_iter if max_iter is not None else self.config.max_iter)
        self.trainable_physics = list(trainable_physics)
        self.seed = int(seed)
        self.model_: MuscleModel | None = None

    # -- helpers ---------------------------------------------------------------------------
    def hyper_parameters(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable), calibration excluded."""
        return {"physics": self.physics.to_dict(), **self.config.to_dict(), "max_iter": self.max_iter,
                "trainable_physics": self.trainable_physics, "seed": self.seed}

    def _check(self, trial: TrialData) -> TrialData:
        if self.model_ is None:
            raise EstimatorError("mse: predict called before fit (or load)")
        if trial.muscles != self.muscles_:
            raise EstimatorError(f"trial {trial.name}: muscles differ from the fitted ones; same subject?")
        trial = trial.hide(self.hidden_)
        missing = [m for m in self.measured_ if not trial.measured[trial.muscles.index(m)]]
        if missing:
            raise EstimatorError(f"trial {trial.name}: no EMG for muscles {missing} used in fitting")
        return trial

    def _excitation(self, trial: TrialData, weights: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        midx = [trial.muscles.index(m) for m in self.measured_]
        uidx = [trial.muscles.index(m) for m in self.extrapolated_]
        meas = trial.excitation[:, midx]
        h = torch.as_tensor(synergy_activations(meas, self.synergies_), dtype=DTYPE)
        exc = torch.zeros((trial.n_frames, len(trial.muscles)), dtype=DTYPE)
        exc[:, midx] = torch.clamp(torch.as_tensor(meas, dtype=DTYPE) + residual, 0.0, 1.0)
        exc[:, uidx] = torch.clamp(h @ weights.T, 0.0, 1.0)
        return exc

    # -- interface -------------------------------------------------------------------------
    def fit(self, trials: Sequence[TrialData], *, hidden: Sequence[str] = ()) -> Self:
        """Fit synergies on the training trials' measured excitations and the extrapolation weights."""
        if not trials:
            raise EstimatorError("mse: no training trials")
        self.hidden_ = list(hidden)
        trials = [t.hide(self.hidden_) for t in trials]
        first = trials[0]
        self.muscles_ = list(first.muscles)
        self.coordinates_ = list(first.coordinates)
        measured = np.logical_and.reduce([t.measured for t in trials])
        self.measured_ = [m for m, k in zip(first.muscles, measured, strict=True) if k]
        arms = np.max([np.abs(t.moment_arm).max(axis=(0, 2)) for t in trials], axis=0)
        self.extrapolated_ = [m for i, m in enumerate(first.muscles) if not measured[i] and arms[i] > 1e-6]
        midx = [first.muscles.index(m) for m in self.measured_]
        stacked = np.concatenate([t.excitation[:, midx] for t in trials])
        self.synergies_, self.vaf_ = fit_synergies(
            stacked, n_synergies=self.n_synergies, vaf_threshold=self.vaf_threshold,
            max_synergies=self.max_synergies, seed=self.seed)
        k = self.synergies_.shape[0]
        model = model_for(first, physics=self.physics, calibration=self.calibration)
        model.set_trainable(self.trainable_physics)
        gain_mask = torch.as_tensor(measured)
        weights = torch.full((len(self.extrapolated_), k), 0.1, dtype=DTYPE, requires_grad=True)
        residual_raw = torch.zeros(len(self.measured_), dtype=DTYPE, requires_grad=self.residuals)
        tensors = [trial_tensors(t) for t in trials]
        tolerance = float(self.config.moment_tolerance)
        gains = Bounded(*self.config.trial_gain_bounds, 1.0, (len(trials),)) \
            if self.config.trial_gain else None
        hs = [torch.as_tensor(synergy_activations(t.excitation[:, midx], self.synergies_), dtype=DTYPE)
              for t in trials]
        uidx = [first.muscles.index(m) for m in self.extrapolated_]
        scale = torch.as_tensor(np.concatenate([t.id_moment for t in trials]).std(axis=0) + 1e-3, dtype=DTYPE)
        n_frames = sum(t.n_frames for t in trials)
        prior_weight = float(self.physics.prior_weight)
        change = model.change_penalty()

        def loss_fn() -> torch.Tensor:
            residual = self.residual_bound * torch.tanh(residual_raw)
            total = torch.zeros((), dtype=DTYPE)
            mag = torch.zeros((), dtype=DTYPE)
            for n, (tt, h) in enumerate(zip(tensors, hs, strict=True)):
                exc = tt.excitation[0].clone()
                meas = exc[:, midx] if gains is None else exc[:, midx] * gains.value[n]
                exc[:, midx] = torch.clamp(meas + residual, 0.0, 1.0)
                unm = torch.clamp(h @ weights.T, 0.0, 1.0)
                exc[:, uidx] = unm
                out = model(exc[None], tt.mtu_length, tt.mtu_velocity, tt.moment_arm, tt.dt,
                            gain_mask=gain_mask)
                err = out.moments - tt.id_moment
                if tolerance > 0:
                    err = torch.sign(err) * torch.relu(err.abs() - tolerance)
                total = total + ((err / scale) ** 2).sum()
                mag = mag + (unm**2).sum()
            n_unm = max(len(uidx), 1)
            return (total / n_frames / len(self.coordinates_) + self.magnitude_weight * mag / n_frames / n_unm
                    + prior_weight * change())

        physics_params = [p for p in model.parameters() if p.requires_grad]
        params = [weights, *physics_params] + ([residual_raw] if self.residuals else []) \
            + ([gains.raw] if gains is not None else [])
        lower = [0.0] + [None] * (len(params) - 1)
        self.fit_info_ = minimize_lbfgsb(loss_fn, params, lower=lower, max_iter=self.max_iter)
        model.requires_grad_(False)
        self.model_ = model
        self.weights_ = weights.detach().numpy().copy()
        self.residual_ = (self.residual_bound * torch.tanh(residual_raw)).detach().numpy().copy()
        self.trial_gains_ = {} if gains is None else dict(zip(
            [t.name for t in trials], gains.value.detach().numpy().tolist(), strict=True))
        logger.info("mse: fitted %d weights (k=%d, VAF %.3f), loss %.4g", self.weights_.size, k, self.vaf_,
                    self.fit_info_["loss"])
        return self

    def predict(self, trial: TrialData) -> Prediction:
        """Measured excitations (+ residuals) and extrapolated ones, and the moments they produce."""
        trial = self._check(trial)
        assert self.model_ is not None
        exc = self._excitation(trial, torch.as_tensor(self.weights_), torch.as_tensor(self.residual_))
        tt = trial_tensors(trial)
        gain_mask = torch.as_tensor([m in self.measured_ for m in trial.muscles])
        with torch.no_grad():
            out = self.model_(exc[None], tt.mtu_length, tt.mtu_velocity, tt.moment_arm, tt.dt,
                              gain_mask=gain_mask)
        return prediction_from_arrays(trial, excitation=exc.numpy(), moments=out.moments[0].numpy(),
                                      forces=out.force[0].numpy())

    def state(self) -> dict[str, Any]:
        """The fitted state as a JSON-serialisable dict."""
        if self.model_ is None:
            raise EstimatorError("mse: nothing to save before fit")
        return {
            "method": self.name, "hyper_parameters": self.hyper_parameters(), "muscles": self.muscles_,
            "coordinates": self.coordinates_, "measured": self.measured_, "hidden": self.hidden_,
            "extrapolated": self.extrapolated_, "synergies": self.synergies_.tolist(), "vaf": self.vaf_,
            "weights": {m: w.tolist() for m, w in zip(self.extrapolated_, self.weights_, strict=True)},
            "residuals": dict(zip(self.measured_, self.residual_.tolist(), strict=True)),
            "physics_parameters": self.model_.to_dict(), "fit": self.fit_info_,
            "trial_gains": getattr(self, "trial_gains_", {}),
            "physics_init": {"params": self._params_arrays()},
        }

    def _params_arrays(self) -> dict[str, list[float]]:
        assert self.model_ is not None
        return {k: getattr(self.model_, k).tolist() for k in (
            "max_isometric_force", "optimal_fiber_length", "tendon_slack_length", "pennation_angle",
            "max_contraction_velocity")}

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write ``mse.json`` (state + hyper-parameters) under ``directory``."""
        path = Path(directory) / "mse.json"
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(self.state(), indent=1, sort_keys=True))

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Self:
        """Read an estimator written by :meth:`save`."""
        state = json.loads(cls._check_dir(directory, "mse.json").read_text())
        est = cls(**state["hyper_parameters"])
        params = MuscleParameters(**{k: np.asarray(v) for k, v in state["physics_init"]["params"].items()})
        model = muscle_model(params, state["muscles"], physics=est.physics)
        model.load_dict(state["physics_parameters"])
        model.requires_grad_(False)
        est.model_ = model
        est.muscles_, est.coordinates_ = state["muscles"], state["coordinates"]
        est.measured_, est.hidden_ = state["measured"], state["hidden"]
        est.extrapolated_ = state["extrapolated"]
        est.synergies_ = np.asarray(state["synergies"], dtype=float)
        est.vaf_ = float(state["vaf"])
        k = est.synergies_.shape[0]
        weights = [state["weights"][m] for m in est.extrapolated_]
        est.weights_ = np.asarray(weights, dtype=float).reshape(-1, k)
        est.residual_ = np.asarray([state["residuals"][m] for m in est.measured_], dtype=float)
        est.fit_info_ = state["fit"]
        return est


def mse_from_config(
    settings: Settings, *, calibration: Mapping[str, Any] | None = None, for_calibration: bool = False,
) -> MSEEstimator:
    """An unfitted :class:`MSEEstimator` from the settings.

    With ``mse.calibrate_physics`` the physics parameters of ``physics.calibrate`` are fitted jointly
    with the weights. ``for_calibration`` builds the subject calibration's fit instead: those
    parameters always trainable and ``physics.calibration_max_iter`` iterations.
    ``calibration`` (content of ``calibration.json``) is where the physics starts.
    """
    fit_physics = for_calibration or settings.mse.calibrate_physics
    trainable = list(settings.physics.calibrate) if fit_physics else []
    mse = settings.mse.to_dict()
    if for_calibration:
        mse["max_iter"] = settings.physics.calibration_max_iter
    return MSEEstimator(physics=settings.physics, calibration=calibration if trainable else None,
                        trainable_physics=trainable, seed=settings.seed, **mse)


SPEC = EstimatorSpec(
    name="mse", factory=mse_from_config, needs_emg=True, muscle_set="subject",
    uses_calibration=lambda settings: settings.mse.calibrate_physics,
    description="muscle synergy extrapolation: NMF synergies of the measured EMG give the unmeasured",
)
