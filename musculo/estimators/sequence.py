"""Shared machinery of the sequence-to-moment estimators (``attention``, ``realtime``).

These estimators map a causal stream of measured EMG excitations (and, optionally, joint angles and
speeds) straight to joint moments with a neural network; they do not estimate the excitations of
unmeasured muscles. Their :class:`~musculo.estimators.base.Prediction` therefore passes the measured
EMG through unchanged and gives every other muscle (unmeasured, or hidden in leave-one-muscle-out) a
null-like constant: a hidden muscle's own mean training EMG, a never-measured muscle the mean of the
visible measured muscles (exactly as the ``null`` floor does).

Everything here is causal: features are per-frame (or causal filters), networks see only past and
current frames, so the same model runs offline on a whole trial and online on a stream of chunks.

:class:`SequenceEstimator` holds the common parts: the input layout (muscle names and kinematics),
feature normalisation, moment scaling, window extraction, the seeded training loop with optional
auxiliary losses (a domain discriminator behind gradient reversal, an activity classifier), and
save/load. A subclass provides the network (:meth:`SequenceEstimator._build_net`) and may add
features (:meth:`SequenceEstimator._extra_features`).
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from musculo import logger
from musculo.errors import EstimatorError, InputDataError
from musculo.estimators.base import Estimator, Prediction, prediction_from_arrays
from musculo.io.atomic import atomic_output
from musculo.physics.data import TrialData
from musculo.physics.optim import torch_settings

WEIGHTS_FILE = "weights.pt"
STATE_FILE = "state.json"


class _GradReverse(torch.autograd.Function):
    """Identity forward; gradient multiplied by ``-scale`` backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:  # noqa: D102
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Gradient reversal (Ganin and Lempitsky 2015): ``x`` forward, ``-scale`` x the gradient backward."""
    return _GradReverse.apply(x, float(scale))


class GradientReversal(nn.Module):
    """:func:`grad_reverse` as a module (``scale`` is the adversarial weight lambda)."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` unchanged; its gradient reversed and scaled on the way back."""
        return grad_reverse(x, self.scale)


class DomainDiscriminator(nn.Module):
    """Which domain (subject or session) a window's features come from, behind gradient reversal.

    The features (B, T, H) are averaged over time, passed through :class:`GradientReversal` and a
    two-layer perceptron to ``n_domains`` logits: minimising the discriminator's cross-entropy trains
    the discriminator to tell domains apart and, through the reversed gradient, the feature extractor
    to make them indistinguishable.
    """

    def __init__(self, n_features: int, n_domains: int, *, hidden: int = 16, scale: float = 1.0):
        super().__init__()
        self.reverse = GradientReversal(scale)
        self.mlp = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, n_domains))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Domain logits (B, n_domains) of features (B, T, H)."""
        return self.mlp(self.reverse(features.mean(dim=1)))


def activation_dynamics(excitation: np.ndarray, *, dt: float, tau: float) -> np.ndarray:
    """Muscle activation (T, K) from excitation (T, K): causal first-order filter, time constant ``tau``.

    ``a[t] = a[t-1] + (dt / (tau + dt)) (u[t] - a[t-1])`` (backward Euler), ``a[0] = u[0]``.
    """
    u = np.asarray(excitation, dtype=float)
    if tau <= 0 or len(u) == 0:
        return u.copy()
    alpha = dt / (tau + dt)
    out = np.empty_like(u)
    out[0] = u[0]
    for t in range(1, len(u)):
        out[t] = out[t - 1] + alpha * (u[t] - out[t - 1])
    return out


def check_trials(trials: Sequence[TrialData], method: str) -> tuple[list[str], list[str], float]:
    """Common muscles, coordinates and frame interval of ``trials`` (clear errors otherwise)."""
    if not trials:
        raise EstimatorError(f"{method}: no training trials; the subject needs dynamic trials with EMG")
    first = trials[0]
    for t in trials[1:]:
        if t.muscles != first.muscles or t.coordinates != first.coordinates:
            raise EstimatorError(f"trial {t.name}: muscles or coordinates differ from trial {first.name}; "
                                 "fit on trials of one muscle and coordinate layout")
        if abs(t.dt - first.dt) > 1e-6 * max(first.dt, 1e-9):
            raise EstimatorError(f"trial {t.name}: sampling interval {t.dt} s differs from {first.dt} s of "
                                 f"trial {first.name}; the trials must share one frame rate")
    for t in trials:
        bad = [k for k in ("q", "qdot", "id_moment", "excitation") if not np.isfinite(getattr(t, k)).all()]
        if bad:
            raise InputDataError(f"trial {t.name}: non-finite values in {bad}; rerun the stages that write "
                                 "them (inverse kinematics, inverse dynamics, EMG) and check their logs")
    return list(first.muscles), list(first.coordinates), first.dt


class SequenceEstimator(Estimator):
    """Base of the EMG (+ kinematics) -> moment networks (see the module docstring).

    Args:
        config: the estimator's config section (typed settings as a mapping).
        seed: seed of the weights, the window split and the shuffling.

    Keys read from ``config``: ``window``, ``stride``, ``max_windows``, ``batch_size``, ``epochs``,
    ``patience``, ``val_fraction``, ``learning_rate``, ``weight_decay``, ``kinematics_inputs``,
    ``input_dropout``, ``threads``.
    """

    name: ClassVar[str] = "sequence"

    def __init__(self, *, config: Mapping[str, Any], seed: int = 0):
        self.config: dict[str, Any] = dict(config)
        self.seed = int(seed)
        self.net_: nn.Module | None = None
        self.muscles_: list[str] = []
        self.coordinates_: list[str] = []
        self.inputs_: list[str] = []
        self.hidden_: list[str] = []
        self.dt_: float = 0.0
        self.excitation_: np.ndarray | None = None
        self.feat_mean_: np.ndarray | None = None
        self.feat_std_: np.ndarray | None = None
        self.moment_mean_: np.ndarray | None = None
        self.moment_std_: np.ndarray | None = None
        self.classes_: list[str] = []
        self.extra_: dict[str, Any] = {}
        self.history_: list[dict[str, float]] = []

    # -- hooks -------------------------------------------------------------------------------
    def _build_net(self, n_inputs: int, n_outputs: int) -> nn.Module:
        """The network: ``forward(x (B, T, F)) -> (moments (B, T, C), features (B, T, H))``."""
        raise NotImplementedError

    def _prepare(self, trials: Sequence[TrialData]) -> None:
        """Fit feature-side state (e.g. synergies) on the training trials; store it in ``extra_``."""

    def _extra_features(self, excitation: np.ndarray, dt: float) -> list[np.ndarray]:
        """Per-frame features (T, .) derived from the input muscles' excitations (T, K), causally."""
        return [excitation]

    def _aux_losses(self, batch: dict[str, torch.Tensor], features: torch.Tensor,
                    context: int) -> dict[str, torch.Tensor]:
        """Additional loss terms of a batch (domain, activity); none by default."""
        return {}

    def context_frames(self) -> int:
        """Frames of history a frame's output depends on (its receptive field minus one)."""
        raise NotImplementedError

    # -- features ----------------------------------------------------------------------------
    def raw_features(self, trial: TrialData) -> np.ndarray:
        """Un-normalised features (T, F) of ``trial`` (inputs muscles' EMG, zero where unmeasured)."""
        seen = trial.hide([h for h in self.hidden_ if h in trial.muscles])
        parts = self._extra_features(self.input_emg(trial), trial.dt if trial.n_frames > 1 else self.dt_)
        if self.config["kinematics_inputs"]:
            parts += [seen.q, seen.qdot]
        return np.concatenate(parts, axis=1).astype(np.float64)

    def input_emg(self, trial: TrialData) -> np.ndarray:
        """EMG excitations (T, K) of the input muscles (zero where unmeasured or hidden)."""
        idx = [trial.muscles.index(m) for m in self.inputs_]
        seen = trial.hide([h for h in self.hidden_ if h in trial.muscles])
        return seen.excitation[:, idx] * seen.measured[idx][None, :]

    def features(self, trial: TrialData) -> np.ndarray:
        """Normalised features (T, F) float32."""
        if self.feat_mean_ is None or self.feat_std_ is None:
            raise EstimatorError(f"{self.name}: the estimator is not fitted; call fit() or load() first")
        return ((self.raw_features(trial) - self.feat_mean_) / self.feat_std_).astype(np.float32)

    # -- fitting -----------------------------------------------------------------------------
    def _setup(self, trials: Sequence[TrialData], hidden: Sequence[str]) -> list[TrialData]:
        hidden = list(hidden)
        seen = [t.hide([h for h in hidden if h in t.muscles]) for t in trials]
        muscles, coords, dt = check_trials(seen, self.name)
        measured_any = np.logical_or.reduce([t.measured for t in seen])
        if not measured_any.any():
            raise EstimatorError(f"{self.name}: no measured muscle in the training trials; the estimator "
                                 "reads EMG (check the subject's emg channels and emg_quality.json)")
        self.muscles_, self.coordinates_, self.dt_, self.hidden_ = muscles, coords, dt, hidden
        self.inputs_ = [m for m, k in zip(muscles, measured_any, strict=True) if k]
        exc = np.concatenate([t.excitation for t in trials])
        measured_all = np.logical_and.reduce([t.measured for t in trials])
        visible = np.logical_and.reduce([t.measured for t in seen])
        level = float(exc[:, visible].mean()) if visible.any() else 0.0
        self.excitation_ = np.where(measured_all, exc.mean(axis=0), level)
        return seen

    def _windows(self, trials: Sequence[TrialData], feats: Sequence[np.ndarray], labels: Sequence[int],
                 classes: Sequence[int]) -> dict[str, torch.Tensor]:
        frames = max(2, round(self.config["window"] / self.dt_))
        shortest = min(t.n_frames for t in trials)
        frames = min(frames, max(2, shortest // 2)) if shortest >= 4 else max(2, shortest)
        stride = max(1, round(self.config["stride"] / self.dt_))
        ctx = self.context_frames()
        xs, ys, ds, cs, ts = [], [], [], [], []
        for i, (trial, f, d, c) in enumerate(zip(trials, feats, labels, classes, strict=True)):
            if trial.n_frames < frames:
                continue
            fp = np.concatenate([np.repeat(f[:1], ctx, axis=0), f]) if ctx else f
            y = (trial.id_moment - self.moment_mean_) / self.moment_std_ if trial.id_moment.size else \
                np.zeros((trial.n_frames, len(self.coordinates_)))
            starts = list(range(0, trial.n_frames - frames + 1, stride))
            if starts[-1] != trial.n_frames - frames:
                starts.append(trial.n_frames - frames)
            for s in starts:
                xs.append(fp[s:s + frames + ctx])
                ys.append(y[s:s + frames])
                ds.append(d)
                cs.append(c)
                ts.append(i)
        if not xs:
            raise EstimatorError(f"{self.name}: no training window fits in the trials "
                                 f"({[t.name for t in trials]}); lower {self.name}.window in the config")
        return {"x": torch.as_tensor(np.stack(xs), dtype=torch.float32),
                "y": torch.as_tensor(np.stack(ys), dtype=torch.float32),
                "domain": torch.as_tensor(ds, dtype=torch.long),
                "activity": torch.as_tensor(cs, dtype=torch.long),
                "trial": torch.as_tensor(ts, dtype=torch.long)}

    def _train(self, trials: Sequence[TrialData], *, labelled: Sequence[bool], domains: Sequence[int],
               activities: Sequence[int]) -> None:
        cfg = self.config
        rng = np.random.default_rng(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        self._prepare([t for t, lab in zip(trials, labelled, strict=True) if lab])
        raw = [self.raw_features(t) for t in trials]
        stacked = np.concatenate(raw)
        self.feat_mean_ = stacked.mean(axis=0)
        self.feat_std_ = np.maximum(stacked.std(axis=0), 1e-6)
        lab_moments = np.concatenate([t.id_moment for t, lab in zip(trials, labelled, strict=True) if lab])
        self.moment_mean_ = lab_moments.mean(axis=0)
        self.moment_std_ = np.maximum(lab_moments.std(axis=0), 1e-3)
        feats = [((r - self.feat_mean_) / self.feat_std_).astype(np.float32) for r in raw]
        self.net_ = self._build_net(stacked.shape[1], len(self.coordinates_))
        win = self._windows(trials, feats, domains, activities)
        trial_of = win.pop("trial").tolist()
        is_lab = torch.as_tensor([bool(labelled[i]) for i in trial_of], dtype=torch.bool)
        n = len(trial_of)
        order = rng.permutation(n)
        if cfg["max_windows"] and n > cfg["max_windows"]:
            order = order[: cfg["max_windows"]]
        lab_order = [i for i in order if is_lab[i]]
        n_val = int(round(cfg["val_fraction"] * len(lab_order)))
        if cfg["val_fraction"] > 0 and len(lab_order) >= 2:
            n_val = min(max(n_val, 1), len(lab_order) - 1)
        else:
            n_val = 0
        val_idx = torch.as_tensor(sorted(lab_order[:n_val]), dtype=torch.long)
        val_set = set(val_idx.tolist())
        train_idx = torch.as_tensor(sorted(i for i in order if i not in val_set), dtype=torch.long)
        ctx = self.context_frames()
        params = list(self.net_.parameters()) + [p for m in self._aux_modules() for p in m.parameters()]
        opt = torch.optim.Adam(params, lr=cfg["learning_rate"], weight_decay=cfg["weight_decay"])
        best_state, best_val, since, best_epoch = copy.deepcopy(self._state_dict()), float("inf"), 0, 0
        start = time.perf_counter()
        self.history_ = []
        for epoch in range(1, cfg["epochs"] + 1):
            self.net_.train()
            perm = train_idx[torch.randperm(len(train_idx), generator=gen)]
            total, count = 0.0, 0
            for b in range(0, len(perm), cfg["batch_size"]):
                idx = perm[b:b + cfg["batch_size"]]
                batch = {k: v[idx] for k, v in win.items()}
                batch["labelled"] = is_lab[idx]
                x = batch["x"]
                if cfg["input_dropout"] > 0 and self.inputs_:
                    k = len(self.inputs_)
                    keep = (torch.rand((x.shape[0], 1, k), generator=gen) >= cfg["input_dropout"]).float()
                    x = torch.cat([x[..., :k] * keep, x[..., k:]], dim=2)
                pred, feat = self.net_(x)
                lab = batch["labelled"]
                loss = F.mse_loss(pred[lab, ctx:], batch["y"][lab]) if lab.any() else pred.sum() * 0.0
                for term in self._aux_losses(batch, feat, ctx).values():
                    loss = loss + term
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
            self.net_.eval()
            with torch.no_grad():
                vi = val_idx if len(val_idx) else train_idx[is_lab[train_idx]]
                pred, feat = self.net_(win["x"][vi])
                val = float(F.mse_loss(pred[:, ctx:], win["y"][vi]))
                val += sum(float(v) for v in self._val_terms({k: v[vi] for k, v in win.items()}, feat, ctx))
            self.history_.append({"epoch": epoch, "train": total / max(count, 1), "val": val,
                                  "seconds": time.perf_counter() - start})
            if val < best_val - 1e-9:
                best_val, best_epoch, since = val, epoch, 0
                best_state = copy.deepcopy(self._state_dict())
            else:
                since += 1
            if since >= cfg["patience"]:
                break
        self._load_state_dict(best_state)
        self.net_.eval()
        logger.info("%s: %d windows (%d held out), best epoch %d of %d (held-out moment MSE %.4f), %.1f s",
                    self.name, len(train_idx) + len(val_idx), len(val_idx), best_epoch, len(self.history_),
                    best_val, time.perf_counter() - start)

    def _val_terms(self, batch: dict[str, torch.Tensor], features: torch.Tensor,
                   context: int) -> list[torch.Tensor]:
        """Loss terms besides the moment error that early stopping watches (none by default)."""
        return []

    def _aux_modules(self) -> list[nn.Module]:
        """Trainable modules besides the network (discriminator, ...)."""
        return []

    def _state_dict(self) -> dict[str, Any]:
        return {"net": self.net_.state_dict() if self.net_ is not None else {},
                **{f"aux{i}": m.state_dict() for i, m in enumerate(self._aux_modules())}}

    def _load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.net_ is not None:
            self.net_.load_state_dict(state["net"])
        for i, m in enumerate(self._aux_modules()):
            m.load_state_dict(state[f"aux{i}"])

    def fit(self, trials: Sequence[TrialData], *, hidden: Sequence[str] = ()) -> Self:
        """Train on ``trials`` (each trial its own domain), treating ``hidden`` muscles as unmeasured."""
        seen = self._setup(trials, hidden)
        with torch_settings(threads=int(self.config["threads"])):
            self._train(seen, labelled=[True] * len(seen), domains=list(range(len(seen))),
                        activities=[0] * len(seen))
        return self

    # -- prediction --------------------------------------------------------------------------
    def _check_trial(self, trial: TrialData) -> None:
        if self.net_ is None:
            raise EstimatorError(f"{self.name}: the estimator is not fitted; call fit() or load() first")
        missing = [m for m in self.inputs_ if m not in trial.muscles]
        if missing or list(trial.coordinates) != self.coordinates_:
            raise EstimatorError(f"trial {trial.name}: muscles {missing} or coordinates {trial.coordinates} "
                                 f"differ from those {self.name} was fitted on ({self.coordinates_})")

    def forward_features(self, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised moments (T, C) and network features (T, H) of normalised features (T, F), causally
        (the first frame repeated as history before the start)."""
        ctx = self.context_frames()
        x = np.concatenate([np.repeat(feats[:1], ctx, axis=0), feats]) if ctx else feats
        with torch.inference_mode():
            pred, hid = self.net_(torch.as_tensor(x, dtype=torch.float32).unsqueeze(0))
        return pred[0, ctx:].numpy(), hid[0, ctx:].numpy()

    def predict_moments(self, trial: TrialData) -> np.ndarray:
        """Joint moments (T, C) in N m (or the units of the training moments)."""
        self._check_trial(trial)
        with torch_settings(threads=int(self.config["threads"])):
            norm, _ = self.forward_features(self.features(trial))
        return norm.astype(float) * self.moment_std_ + self.moment_mean_

    def predict(self, trial: TrialData) -> Prediction:
        """Moments from the network; excitations: measured EMG passed through, every other muscle a
        null-like constant (see the module docstring)."""
        moments = self.predict_moments(trial)
        exc = self.excitations(trial)
        return prediction_from_arrays(trial, excitation=exc, moments=moments)

    def excitations(self, trial: TrialData) -> np.ndarray:
        """Measured (not hidden) muscles keep their EMG; the others the fitted constants (T, M)."""
        if self.excitation_ is None:
            raise EstimatorError(f"{self.name}: the estimator is not fitted; call fit() or load() first")
        const = np.array([self.excitation_[self.muscles_.index(m)] if m in self.muscles_
                          else float(np.mean(self.excitation_)) for m in trial.muscles])
        seen = trial.hide([h for h in self.hidden_ if h in trial.muscles])
        return np.where(seen.measured[None, :], seen.excitation, const[None, :])

    # -- persistence -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """JSON description: config, layout, normalisation, training history."""
        if self.net_ is None:
            raise EstimatorError(f"{self.name}: nothing to save before fit")

        def lst(a: np.ndarray | None) -> list[float] | None:
            return None if a is None else np.asarray(a, dtype=float).tolist()

        return {"method": self.name, "seed": self.seed, "config": self.config, "muscles": self.muscles_,
                "coordinates": self.coordinates_, "inputs": self.inputs_, "hidden": self.hidden_,
                "dt": self.dt_, "excitation": lst(self.excitation_), "feat_mean": lst(self.feat_mean_),
                "feat_std": lst(self.feat_std_), "moment_mean": lst(self.moment_mean_),
                "moment_std": lst(self.moment_std_), "classes": self.classes_,
                "extra": {k: np.asarray(v).tolist() if isinstance(v, np.ndarray) else v
                          for k, v in self.extra_.items()},
                "n_features": int(len(self.feat_mean_)) if self.feat_mean_ is not None else 0,
                "history": self.history_}

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write ``weights.pt`` and ``state.json`` under ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        state = self.state()
        with atomic_output(d / WEIGHTS_FILE) as tmp:
            torch.save(self._state_dict(), tmp)
        with atomic_output(d / STATE_FILE) as tmp:
            tmp.write_text(json.dumps(state, indent=1))

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Self:
        """Read an estimator written by :meth:`save`."""
        sp = cls._check_dir(directory, STATE_FILE)
        wp = cls._check_dir(directory, WEIGHTS_FILE)
        try:
            st = json.loads(sp.read_text())
            est = cls(config=st["config"], seed=st["seed"])
            est.muscles_, est.coordinates_, est.inputs_ = st["muscles"], st["coordinates"], st["inputs"]
            est.hidden_, est.dt_, est.classes_ = st["hidden"], float(st["dt"]), list(st["classes"])
            for key in ("excitation", "feat_mean", "feat_std", "moment_mean", "moment_std"):
                setattr(est, key + "_", np.asarray(st[key], dtype=float))
            est.extra_ = {k: np.asarray(v) if isinstance(v, list) else v for k, v in st["extra"].items()}
            est.history_ = st.get("history", [])
            n_features = int(st["n_features"])
        except (ValueError, KeyError) as exc:
            raise EstimatorError(f"{sp}: unreadable ({exc}); fit and save the estimator again") from exc
        if st["method"] != cls.name:
            raise EstimatorError(f"{sp}: a {st['method']!r} model, not {cls.name!r}; load it with that class")
        est.net_ = est._build_net(n_features, len(est.coordinates_))
        est._restore_aux()
        try:
            est._load_state_dict(torch.load(wp, map_location="cpu", weights_only=True))
        except (RuntimeError, KeyError) as exc:
            raise EstimatorError(f"{wp}: weights do not match {sp} ({exc}); fit and save again") from exc
        est.net_.eval()
        return est

    def _restore_aux(self) -> None:
        """Rebuild auxiliary modules (from ``extra_``) before their weights are loaded."""


def with_moments(trial: TrialData, moments: np.ndarray) -> TrialData:
    """A copy of ``trial`` whose inverse-dynamics moments are ``moments`` (e.g. mass-normalised)."""
    return replace(trial, id_moment=np.asarray(moments, dtype=float))
