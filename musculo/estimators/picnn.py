"""PI-CNN: a physics-informed convolutional network from surface EMG to joint angles and muscle forces.

After Zhang et al. (IEEE TNSRE 2023): a small 1-D convolutional network reads a window of processed
surface EMG (the ``window`` frames ending at the predicted frame, so the estimate is causal) and
outputs, for that frame, the angle of every tracked coordinate and the force of every modelled muscle.
The network has two parts: ``features`` (the convolutions, shared by every subject of a cohort in
:mod:`musculo.estimators.transfer`) and ``head`` (fully connected, subject-specific).

Targets and loss (per frame, averaged over a batch):

* ``angle_weight`` x MSE of the angles against inverse kinematics (``TrialData.q``), each coordinate
  divided by its standard deviation over the training frames;
* ``force_weight`` x MSE of the forces against the reference muscle forces, both divided by the
  muscle's max isometric force and by one scale (the standard deviation of the normalised reference).
  The reference is OpenSim static optimisation's activation through the physics core's Hill model
  (:meth:`musculo.physics.muscle.MuscleModel.force`, uncalibrated), on the trial's fibre kinematics;
* ``physics_weight`` x the physics residual (:func:`physics_loss`): the predicted forces times the
  subject's moment arms *at the predicted angles* must give the inverse-dynamics moments, each
  coordinate divided by the standard deviation of its moment.

The moment arms at any angle come from :class:`MomentArmModel`, a per-subject least-squares fit of
each muscle's moment arms (from the muscle analysis) on the coordinates and their squares. The
predicted joint moments are ``sum_m F_m r_mc(q_hat)``, so the estimator needs EMG only at run time.

Excitations of the :class:`~musculo.estimators.base.Prediction`: measured (not hidden) muscles keep
their EMG; the others are the predicted force over the muscle's max isometric force (clipped to 0..1),
the activation proxy the leave-one-muscle-out protocol scores. Training is seeded and deterministic.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from torch import nn

from musculo import logger
from musculo.errors import EstimatorError
from musculo.estimators.base import Estimator, Prediction, prediction_from_arrays
from musculo.estimators.registry import EstimatorSpec
from musculo.io.atomic import atomic_output
from musculo.physics.data import TrialData
from musculo.physics.muscle import model_for
from musculo.settings import PhysicsSettings, PICNNSettings, Settings

WEIGHTS_FILE = "picnn.pt"
STATE_FILE = "picnn.json"


# --- physics -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MomentArmModel:
    """Moment arms as a function of the coordinates: ``r[m, c](q) = sum_k coef[k, m, c] * phi_k(q)``.

    ``phi(q) = [1, q_1..q_C, q_1^2..q_C^2]`` (P = 1 + 2C features). ``fit_error`` is the RMS residual
    (m) of the fit on the frames it was fitted on.
    """

    coef: np.ndarray  # (P, M, C)
    fit_error: float

    @staticmethod
    def features(q: torch.Tensor) -> torch.Tensor:
        """Design features (..., P) of angles (..., C)."""
        return torch.cat([torch.ones_like(q[..., :1]), q, q**2], dim=-1)

    @classmethod
    def fit(cls, trials: Sequence[TrialData]) -> MomentArmModel:
        """Least-squares fit on every frame of ``trials`` (a 1e-8 ridge keeps constant coordinates posed)."""
        q = np.concatenate([t.q for t in trials])
        arms = np.concatenate([t.moment_arm for t in trials])  # (T, M, C)
        phi = cls.features(torch.as_tensor(q)).numpy()
        t_, m, c = arms.shape
        y = arms.reshape(t_, m * c)
        gram = phi.T @ phi + 1e-8 * np.eye(phi.shape[1])
        coef = np.linalg.solve(gram, phi.T @ y)
        err = float(np.sqrt(np.mean((phi @ coef - y) ** 2)))
        return cls(coef=coef.reshape(-1, m, c), fit_error=err)

    def arms(self, q: torch.Tensor, coef: torch.Tensor | None = None) -> torch.Tensor:
        """Moment arms (..., M, C) at angles (..., C)."""
        k = torch.as_tensor(self.coef, dtype=q.dtype) if coef is None else coef
        return torch.einsum("...p,pmc->...mc", self.features(q), k)


def joint_moments(force: torch.Tensor, angles: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """Moments (B, C) of forces (B, M) at angles (B, C) through moment-arm coefficients (B, P, M, C)."""
    arms = torch.einsum("bp,bpmc->bmc", MomentArmModel.features(angles), coef)
    return torch.einsum("bmc,bm->bc", arms, force)


def physics_loss(
    force: torch.Tensor, angles: torch.Tensor, moment: torch.Tensor, coef: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Mean squared physics residual ``(sum_m F_m r_mc(q) - tau_c) / scale_c``.

    Args:
        force: (B, M) muscle forces (N).
        angles: (B, C) coordinate values at which the moment arms are taken.
        moment: (B, C) inverse-dynamics moments (N m).
        coef: (B, P, M, C) moment-arm coefficients of each sample's subject (:class:`MomentArmModel`).
        scale: (B, C) or (C,) moment scale (N m) per coordinate.

    Zero when the forces, angles and moments are consistent; grows with their disagreement.
    """
    residual = (joint_moments(force, angles, coef) - moment) / scale
    return (residual**2).mean()


def reference_forces(trial: TrialData, physics: PhysicsSettings | None = None) -> np.ndarray:
    """Reference muscle forces (T, M), N: static optimisation's activations through the Hill model."""
    if trial.so_activation is None:
        raise EstimatorError(
            f"trial {trial.name}: no static-optimisation activations (so_activation.sto); the PI-CNN "
            "needs them as its force reference: run the static optimisation stage"
        )
    model = model_for(trial, physics=physics)
    with torch.no_grad():
        f = model.force(
            torch.as_tensor(trial.so_activation, dtype=torch.float64),
            torch.as_tensor(trial.mtu_length, dtype=torch.float64),
            torch.as_tensor(trial.mtu_velocity, dtype=torch.float64),
        )
    return f.numpy()


# --- network -------------------------------------------------------------------------------------
class PICNNNet(nn.Module):
    """``features`` (two 1-D convolutions, pooled) then ``head`` (two linear layers) -> angles, forces."""

    def __init__(
        self,
        n_inputs: int,
        n_coordinates: int,
        n_muscles: int,
        *,
        channels: int,
        kernel_size: int,
        hidden: int,
        dropout: float,
    ):
        super().__init__()
        self.n_coordinates, self.n_muscles = n_coordinates, n_muscles
        pad = kernel_size // 2
        self.features = nn.Sequential(
            nn.Conv1d(n_inputs, channels, kernel_size, padding=pad),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size, padding=pad),
            nn.ReLU(),
        )
        self.head = nn.Sequential(
            nn.Linear(2 * channels, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_coordinates + n_muscles),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows (B, inputs, W) -> normalised angles (B, C) and forces / max isometric force (B, M)."""
        h = self.features(x)
        z = self.head(torch.cat([h.mean(dim=-1), h[..., -1]], dim=-1))
        return z[:, : self.n_coordinates], nn.functional.softplus(z[:, self.n_coordinates :]) * 0.1


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch threads (restored afterwards)."""
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(old)


# --- windows -------------------------------------------------------------------------------------
def emg_inputs(trial: TrialData, hidden: Sequence[str] = ()) -> np.ndarray:
    """(T, M) network input: measured excitations, zero for unmeasured and ``hidden`` muscles."""
    seen = trial.hide([m for m in hidden if m in trial.muscles])
    return np.where(seen.measured[None, :], seen.excitation, 0.0)


def windows(x: np.ndarray, width: int, frames: np.ndarray | None = None) -> np.ndarray:
    """(N, inputs, width) causal windows of ``x`` (T, inputs) ending at ``frames`` (default every frame).

    Frames before the trial's start repeat its first frame.
    """
    t = x.shape[0]
    idx = np.arange(t) if frames is None else np.asarray(frames, dtype=int)
    padded = np.concatenate([np.repeat(x[:1], width - 1, axis=0), x])
    cols = idx[:, None] + np.arange(width)[None, :]  # padded index of frame i - width + 1 + j
    return np.ascontiguousarray(padded[cols].transpose(0, 2, 1))


@dataclass
class SubjectTensors:
    """Training samples of one or more subjects (one sample per frame), with per-sample physics."""

    x: torch.Tensor  # (N, M, W)
    q: torch.Tensor  # (N, C) rad/m
    f: torch.Tensor  # (N, M) N
    tau: torch.Tensor  # (N, C) N m
    subject: torch.Tensor  # (N,) index into coef / fmax / tau_scale
    coef: torch.Tensor  # (S, P, M, C)
    fmax: torch.Tensor  # (S, M)
    tau_scale: torch.Tensor  # (S, C)

    def take(self, idx: np.ndarray | torch.Tensor) -> SubjectTensors:
        """The samples at ``idx`` (physics tables kept)."""
        i = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        return SubjectTensors(
            self.x[i],
            self.q[i],
            self.f[i],
            self.tau[i],
            self.subject[i],
            self.coef,
            self.fmax,
            self.tau_scale,
        )

    def __len__(self) -> int:
        return int(self.x.shape[0])


def subject_tensors(
    groups: Sequence[Sequence[TrialData]],
    *,
    width: int,
    stride: int = 1,
    hidden: Sequence[str] = (),
    physics: PhysicsSettings | None = None,
    with_targets: bool = True,
) -> SubjectTensors:
    """Samples of each group of trials (one group per subject: its own moment arms and scales)."""
    xs, qs, fs, taus, sid, coefs, fmaxs, scales = [], [], [], [], [], [], [], []
    for s, trials in enumerate(groups):
        if not trials:
            raise EstimatorError("picnn: a subject without training trials")
        coefs.append(MomentArmModel.fit(trials).coef)
        fmaxs.append(trials[0].params.max_isometric_force)
        tau = np.concatenate([t.id_moment for t in trials])
        scales.append(np.maximum(tau.std(axis=0), 1e-3 * max(1.0, float(np.abs(tau).max()))))
        for t in trials:
            frames = np.arange(0, t.n_frames, max(1, stride))
            xs.append(windows(emg_inputs(t, hidden), width, frames))
            qs.append(t.q[frames])
            taus.append(t.id_moment[frames])
            fs.append(
                reference_forces(t, physics)[frames]
                if with_targets
                else np.zeros((len(frames), len(t.muscles)))
            )
            sid.append(np.full(len(frames), s))

    def f32(a: list[np.ndarray] | np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.concatenate(a) if isinstance(a, list) else a, dtype=torch.float32)

    return SubjectTensors(
        x=f32(xs),
        q=f32(qs),
        f=f32(fs),
        tau=f32(taus),
        subject=torch.as_tensor(np.concatenate(sid), dtype=torch.long),
        coef=f32(np.stack(coefs)),
        fmax=f32(np.stack(fmaxs)),
        tau_scale=f32(np.stack(scales)),
    )


# --- training ------------------------------------------------------------------------------------
@dataclass
class Normaliser:
    """Angle mean/std (C,) and the normalised-force scale, from the training samples."""

    q_mean: np.ndarray
    q_std: np.ndarray
    f_scale: float

    @classmethod
    def of(cls, data: SubjectTensors) -> Normaliser:
        """Statistics of ``data``."""
        q = data.q.numpy()
        fn = (data.f / data.fmax[data.subject]).numpy()
        return cls(
            q_mean=q.mean(axis=0), q_std=np.maximum(q.std(axis=0), 1e-3), f_scale=float(max(fn.std(), 1e-3))
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"q_mean": self.q_mean.tolist(), "q_std": self.q_std.tolist(), "f_scale": self.f_scale}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normaliser:
        """From :meth:`to_dict`."""
        return cls(
            np.asarray(d["q_mean"], dtype=float), np.asarray(d["q_std"], dtype=float), float(d["f_scale"])
        )


def outputs(
    net: PICNNNet, norm: Normaliser, x: torch.Tensor, fmax: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Angles (B, C) and forces (B, M, N) of windows ``x`` for muscles of max isometric force ``fmax``."""
    qn, fn = net(x)
    q = torch.as_tensor(norm.q_mean, dtype=x.dtype) + qn * torch.as_tensor(norm.q_std, dtype=x.dtype)
    return q, fn * fmax


def losses(
    net: PICNNNet, norm: Normaliser, batch: SubjectTensors, cfg: PICNNSettings
) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted loss of a batch and its parts (angle, force, physics)."""
    fmax = batch.fmax[batch.subject]
    q, f = outputs(net, norm, batch.x, fmax)
    qstd = torch.as_tensor(norm.q_std, dtype=q.dtype)
    angle = (((q - batch.q) / qstd) ** 2).mean()
    force = ((((f - batch.f) / fmax) / norm.f_scale) ** 2).mean()
    phys = physics_loss(f, q, batch.tau, batch.coef[batch.subject], batch.tau_scale[batch.subject])
    total = cfg.angle_weight * angle + cfg.force_weight * force + cfg.physics_weight * phys
    return total, {
        "angle": float(angle.detach()),
        "force": float(force.detach()),
        "physics": float(phys.detach()),
    }


def train(
    net: PICNNNet,
    norm: Normaliser,
    data: SubjectTensors,
    cfg: PICNNSettings,
    *,
    epochs: int,
    learning_rate: float,
    seed: int,
    parameters: Sequence[nn.Parameter] | None = None,
    min_steps: int = 0,
) -> dict[str, float]:
    """Adam on mini-batches of ``data`` for ``epochs`` epochs (only ``parameters`` when given); seeded.

    Small data sets get more epochs, so that training makes at least ``min_steps`` updates.
    """
    if len(data) == 0:
        raise EstimatorError("picnn: no training samples")
    gen = torch.Generator().manual_seed(int(seed))
    params = list(parameters) if parameters is not None else list(net.parameters())
    opt = torch.optim.Adam(params, lr=learning_rate, weight_decay=cfg.weight_decay)
    parts: dict[str, float] = {}
    net.train()
    per_epoch = math.ceil(len(data) / cfg.batch_size)
    for _ in range(max(int(epochs), math.ceil(min_steps / per_epoch))):
        order = torch.randperm(len(data), generator=gen)
        for start in range(0, len(data), cfg.batch_size):
            batch = data.take(order[start : start + cfg.batch_size])
            opt.zero_grad()
            loss, parts = losses(net, norm, batch, cfg)
            loss.backward()
            opt.step()
    net.eval()
    return parts


def new_net(n_muscles: int, n_coordinates: int, cfg: PICNNSettings, seed: int) -> PICNNNet:
    """An initialised network (weights from ``seed``)."""
    torch.manual_seed(int(seed))
    return PICNNNet(
        n_muscles,
        n_coordinates,
        n_muscles,
        channels=cfg.channels,
        kernel_size=cfg.kernel_size,
        hidden=cfg.hidden,
        dropout=cfg.dropout,
    )


# --- the estimator -------------------------------------------------------------------------------
class PICNNEstimator(Estimator):
    """Per-subject PI-CNN (see module docstring); :meth:`from_generic` starts from a cohort model."""

    name = "picnn"

    def __init__(self, cfg: PICNNSettings, *, physics: PhysicsSettings | None = None, seed: int = 0):
        self.cfg, self.physics, self.seed = cfg, physics, int(seed)
        self.muscles_: list[str] = []
        self.coordinates_: list[str] = []
        self.hidden_: list[str] = []
        self.net_: PICNNNet | None = None
        self.norm_: Normaliser | None = None
        self.arms_: MomentArmModel | None = None
        self.losses_: dict[str, float] = {}

    def _setup(self, trials: Sequence[TrialData], hidden: Sequence[str]) -> SubjectTensors:
        if not trials:
            raise EstimatorError("picnn: no training trials")
        first = trials[0]
        for t in trials:
            if list(t.muscles) != list(first.muscles) or list(t.coordinates) != list(first.coordinates):
                raise EstimatorError(
                    f"picnn: trial {t.name} has other muscles or coordinates than {first.name}"
                )
        self.muscles_, self.coordinates_, self.hidden_ = (
            list(first.muscles),
            list(first.coordinates),
            list(hidden),
        )
        self.arms_ = MomentArmModel.fit(trials)
        return subject_tensors(
            [trials], width=self.cfg.window, stride=self.cfg.stride, hidden=hidden, physics=self.physics
        )

    def fit(self, trials: Sequence[TrialData], *, hidden: Sequence[str] = ()) -> Self:
        """Train from scratch on every frame of ``trials`` (``hidden`` muscles' EMG zeroed)."""
        data = self._setup(trials, hidden)
        self.norm_ = Normaliser.of(data)
        self.net_ = new_net(len(self.muscles_), len(self.coordinates_), self.cfg, self.seed)
        with torch_threads(self.cfg.threads):
            self.losses_ = train(
                self.net_,
                self.norm_,
                data,
                self.cfg,
                epochs=self.cfg.epochs,
                learning_rate=self.cfg.learning_rate,
                seed=self.seed,
                min_steps=self.cfg.min_steps,
            )
        logger.info("picnn: fitted on %d samples, final batch losses %s", len(data), self.losses_)
        return self

    def predict_arrays(self, trial: TrialData) -> dict[str, np.ndarray]:
        """Angles (T, C), forces (T, M), moments (T, C) and excitations (T, M) on ``trial``."""
        if self.net_ is None or self.norm_ is None or self.arms_ is None:
            raise EstimatorError("picnn: predict called before fit (or load)")
        if list(trial.muscles) != self.muscles_ or list(trial.coordinates) != self.coordinates_:
            raise EstimatorError(f"trial {trial.name}: muscles or coordinates differ from the fitted ones")
        x = torch.as_tensor(windows(emg_inputs(trial, self.hidden_), self.cfg.window), dtype=torch.float32)
        fmax = torch.as_tensor(trial.params.max_isometric_force, dtype=torch.float32)
        with torch.no_grad(), torch_threads(self.cfg.threads):
            q, f = outputs(self.net_, self.norm_, x, fmax)
            coef = torch.as_tensor(self.arms_.coef, dtype=torch.float32).expand(
                len(q), *self.arms_.coef.shape
            )
            tau = joint_moments(f, q, coef)
        seen = trial.hide([m for m in self.hidden_ if m in trial.muscles])
        proxy = np.clip(f.numpy() / trial.params.max_isometric_force[None, :], 0.0, 1.0)
        exc = np.where(seen.measured[None, :], seen.excitation, proxy)
        return {
            "angles": q.numpy().astype(float),
            "forces": f.numpy().astype(float),
            "moments": tau.numpy().astype(float),
            "excitations": exc,
        }

    def predict(self, trial: TrialData) -> Prediction:
        """Excitations, moments (EMG -> forces and angles -> moments) and forces on ``trial``."""
        out = self.predict_arrays(trial)
        return prediction_from_arrays(
            trial, excitation=out["excitations"], moments=out["moments"], forces=out["forces"]
        )

    # -- persistence ------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Hyper-parameters, names, normaliser and moment-arm model as JSON."""
        if self.net_ is None or self.norm_ is None or self.arms_ is None:
            raise EstimatorError("picnn: nothing to save before fit")
        return {
            "method": self.name,
            "seed": self.seed,
            "settings": self.cfg.to_dict(),
            "physics": None if self.physics is None else self.physics.to_dict(),
            "muscles": self.muscles_,
            "coordinates": self.coordinates_,
            "hidden": self.hidden_,
            "normaliser": self.norm_.to_dict(),
            "moment_arms": self.arms_.coef.tolist(),
            "moment_arm_fit_error": self.arms_.fit_error,
            "losses": self.losses_,
        }

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write ``picnn.json`` and ``picnn.pt`` (network weights)."""
        d = Path(directory)
        state = self.state()
        with atomic_output(d / WEIGHTS_FILE) as tmp:
            torch.save(self.net_.state_dict(), tmp)  # type: ignore[union-attr]
        with atomic_output(d / STATE_FILE) as tmp:
            tmp.write_text(json.dumps(state, indent=1))

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Self:
        """Read an estimator written by :meth:`save`."""
        state = json.loads(cls._check_dir(directory, STATE_FILE).read_text())
        weights = cls._check_dir(directory, WEIGHTS_FILE)
        cfg = PICNNSettings.from_config(state["settings"])
        physics = None if state["physics"] is None else PhysicsSettings.from_config(state["physics"])
        est = cls(cfg, physics=physics, seed=state["seed"])
        est.muscles_, est.coordinates_, est.hidden_ = state["muscles"], state["coordinates"], state["hidden"]
        est.norm_ = Normaliser.from_dict(state["normaliser"])
        est.arms_ = MomentArmModel(
            coef=np.asarray(state["moment_arms"], dtype=float), fit_error=float(state["moment_arm_fit_error"])
        )
        est.net_ = new_net(len(est.muscles_), len(est.coordinates_), cfg, est.seed)
        est.net_.load_state_dict(torch.load(weights, weights_only=True))
        est.net_.eval()
        est.losses_ = state.get("losses", {})
        return est


def _factory(settings: Settings, *, calibration: dict[str, Any] | None = None) -> PICNNEstimator:
    return PICNNEstimator(settings.picnn, physics=settings.physics, seed=settings.seed)


SPEC = EstimatorSpec(
    name="picnn",
    factory=_factory,
    needs_emg=True,
    needs_so=True,
    muscle_set="subject",
    description="physics-informed CNN: EMG windows -> joint angles and muscle forces",
)
