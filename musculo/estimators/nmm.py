"""NMM: the neural musculoskeletal model, estimating the excitations of unmeasured (deep) muscles.

A causal temporal convolutional network (:class:`musculo.estimators.networks.CausalTCN`) reads
windows of measured excitations (with ``kinematics_inputs``, also the joint angles and speeds from
inverse kinematics) and outputs an excitation in [0, 1] for every modelled muscle. The excitations
of measured muscles stay their EMG; the network's outputs replace the unmeasured ones, and the whole
excitation vector drives the physics core (:class:`musculo.physics.muscle.MuscleModel`) to joint
moments. With ``ensemble`` > 1, several networks are trained from consecutive seeds and the estimate
is their mean.

With ``output = "direct"`` (default, as in the NMM paper) the network predicts each unmeasured
muscle's excitation directly through a sigmoid. With ``output = "synergy"`` (an option) the
excitations keep the structure of the measured muscles:
NMF (scikit-learn, as in :mod:`musculo.estimators.mse`) of the training trials' measured
excitations gives synergy vectors; each frame's synergy activations (non-negative least squares of
that frame's measured excitations, synergy vectors fixed, :func:`frame_activations`) are network inputs, and a
:class:`musculo.estimators.networks.SynergyHead` combines them with learned non-negative weights that
the network modulates over time (kinematics-aware, within ``exp(+-synergy_modulation)``) plus a
residual bounded by ``residual_bound``.

With ``fold_calibration`` the physics starts from a calibration on the fit's own training trials
(never the subject-wide ``calibration.json``, fitted on held-out trials too); with ``window`` 0 the
training windows span the shortest training trial (a full cycle of the physics window), taken from
every training trial.

Training minimises, over windows of the training trials,

* ``moment_weight`` x the mean squared error between the model's moments and inverse dynamics,
  each coordinate divided by the standard deviation of its inverse-dynamics moment (physics term);
* ``consistency_weight`` x the mean squared error between the network's output for measured
  muscles and their EMG, with measured input channels randomly dropped (``input_dropout``), so the
  network must infer a muscle's excitation from the others (and the kinematics, when inputs);
* ``smoothness_weight`` x the mean squared change of predicted unmeasured excitations per 10 ms;
* ``magnitude_weight`` x the mean squared predicted unmeasured excitation;

with the subject-specific physics parameters (bounded, see :class:`MuscleModel`) learned jointly
at their own learning rate. Training is seeded and uses deterministic algorithms; a fraction of the
windows is held out for early stopping, and the weights of the best held-out epoch are kept.

By default the network reads the measured excitations only, as the synergy baseline does: with a
few training walks, joint angles and speeds as inputs let the network fit the moments through
excitations tied to the pose instead of to the measured muscles (on the walking twins, deep-muscle
r against the truth fell from 0.80 to 0.63 with them), and the kinematics reach the moments through
the physics core anyway.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from scipy.optimize import nnls

from musculo import logger
from musculo.errors import ConfigError, EstimatorError, InputDataError
from musculo.estimators.base import Estimator, Prediction, prediction_from_arrays
from musculo.estimators.mse import MSEEstimator, fit_synergies
from musculo.estimators.networks import CausalTCN, SynergyHead
from musculo.estimators.registry import EstimatorSpec
from musculo.io.atomic import atomic_output
from musculo.physics.data import MuscleParameters, TrialData
from musculo.physics.muscle import DTYPE, MuscleModel, model_for, muscle_model
from musculo.physics.optim import torch_settings
from musculo.settings import NMMSettings, PhysicsSettings, Settings, as_physics

WEIGHTS_FILE = "weights.pt"
HYPER_FILE = "hyperparameters.json"
OUTPUTS = ("synergy", "direct")


@dataclass(frozen=True)
class NMMConfig(NMMSettings):
    """Training configuration: the config section ``nmm`` (:class:`musculo.settings.NMMSettings`,
    defaults from the schema) plus the seed."""

    seed: int

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> NMMConfig:
        """Build from a (partial) ``nmm`` mapping plus ``seed``; the schema fills and checks the rest.

        Unknown keys and out-of-range values raise :class:`EstimatorError` naming them.
        """
        vals = dict(values)
        seed = int(vals.pop("seed", 0))
        try:
            section = NMMSettings.from_config(vals)
        except ConfigError as exc:
            raise EstimatorError(f"{exc}; see the config schema") from exc
        return cls(**asdict(section), seed=seed)


@dataclass
class _Windows:
    """Training windows stacked into tensors (N windows of L frames)."""

    features: torch.Tensor  # (N, L, F) float32
    excitation: torch.Tensor  # (N, L, M) DTYPE
    mtu_length: torch.Tensor  # (N, L, M)
    mtu_velocity: torch.Tensor  # (N, L, M)
    moment_arm: torch.Tensor  # (N, L, M, C)
    id_moment: torch.Tensor  # (N, L, C)

    def take(self, idx: torch.Tensor) -> _Windows:
        return _Windows(**{k: v[idx] for k, v in self.__dict__.items()})

    def __len__(self) -> int:
        return int(self.features.shape[0])


@dataclass
class TrainingResult:
    """What :func:`train_nmm` returns besides the fitted modules."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val: float = math.inf
    seconds: float = 0.0
    n_train_windows: int = 0
    n_val_windows: int = 0


def frame_activations(excitation: np.ndarray, synergies: np.ndarray) -> np.ndarray:
    """Synergy activations (T, k) of excitations (T, K): per frame, the non-negative least-squares
    solution of ``excitation[t] ~ activations[t] @ synergies`` (SciPy's NNLS; fast on short windows)."""
    data = np.clip(np.asarray(excitation, dtype=float), 0.0, None)
    basis = np.ascontiguousarray(np.asarray(synergies, dtype=float).T)
    return np.stack([nnls(basis, row)[0] for row in data]) if len(data) else np.zeros((0, len(synergies)))


class NMMModule(torch.nn.Module):
    """Network + physics core: measured excitations and kinematics -> excitations -> moments.

    Args:
        net: the network (outputs one excitation per modelled muscle, or the raw outputs of
            ``head``).
        physics: the subject's muscle model.
        input_index: (K,) indices of the measured muscles whose excitations are network inputs.
        measured: (M,) bool, muscles whose excitation is measured EMG (they keep it).
        kin_mean, kin_std: (2C,) normalisation of the joint angles and speeds; empty (0,) when the
            kinematics are not network inputs.
        head: with ``synergies``, the synergy output head (see :class:`SynergyHead`).
        synergies: (k, K) NMF synergy vectors of the measured excitations; their activations are
            the last k input features and the head's basis.
    """

    def __init__(self, net: CausalTCN, physics: MuscleModel, *, input_index: np.ndarray,
                 measured: np.ndarray, kin_mean: np.ndarray, kin_std: np.ndarray,
                 head: SynergyHead | None = None, synergies: np.ndarray | None = None):
        super().__init__()
        if (head is None) != (synergies is None):
            raise EstimatorError("nmm: a synergy head needs synergy vectors and vice versa")
        self.net = net
        self.physics = physics
        self.head = head
        self.register_buffer("input_index", torch.as_tensor(np.asarray(input_index, dtype=np.int64)))
        self.register_buffer("measured", torch.as_tensor(np.asarray(measured, dtype=bool)))
        self.register_buffer("kin_mean", torch.as_tensor(np.asarray(kin_mean), dtype=torch.float32))
        self.register_buffer("kin_std", torch.as_tensor(np.asarray(kin_std), dtype=torch.float32))
        syn = np.zeros((0, len(input_index))) if synergies is None else np.asarray(synergies, dtype=float)
        self.register_buffer("synergies", torch.as_tensor(syn, dtype=DTYPE))

    @property
    def n_synergies(self) -> int:
        """Synergies k of the output head (0 without one)."""
        return int(self.synergies.shape[0])

    def features(self, excitation: np.ndarray, q: np.ndarray, qdot: np.ndarray) -> torch.Tensor:
        """Network input (T, K [+ 2C] [+ k]) float32 from a trial's excitation (T, M), q and qdot (T, C).

        The joint angles and speeds are inputs only when ``kin_mean`` is not empty; the synergy
        activations (non-negative least squares of each frame's measured excitations on the
        synergy vectors) only with a synergy head.
        """
        emg = np.asarray(excitation)[:, self.input_index.numpy()]
        parts = [emg]
        if self.kin_mean.numel():
            parts.append((np.concatenate([q, qdot], axis=1) - self.kin_mean.numpy()) / self.kin_std.numpy())
        if self.n_synergies:
            parts.append(frame_activations(emg, self.synergies.numpy()))
        return torch.as_tensor(np.concatenate(parts, axis=1), dtype=torch.float32)

    def excitations(
        self, features: torch.Tensor, excitation: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(network output, excitation driving the physics), both (B, T, M) in DTYPE."""
        out = self.net(features).to(DTYPE)
        if self.head is not None:
            out = self.head(out, features[..., -self.n_synergies:].to(DTYPE))
        u = torch.where(self.measured, excitation, out)
        return out, u

    def forward(self, features: torch.Tensor, excitation: torch.Tensor, mtu_length: torch.Tensor,
                mtu_velocity: torch.Tensor, moment_arm: torch.Tensor, dt: float
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(network output, driving excitation, moments (B, T, C)) of a batch."""
        out, u = self.excitations(features, excitation)
        res = self.physics(u, mtu_length, mtu_velocity, moment_arm, dt, gain_mask=self.measured)
        return out, u, res.moments


def _check_trials(trials: Sequence[TrialData]) -> tuple[list[str], list[str], float]:
    if not trials:
        raise EstimatorError("nmm: no training trials; the subject needs dynamic trials with EMG")
    first = trials[0]
    for t in trials[1:]:
        if t.muscles != first.muscles or t.coordinates != first.coordinates:
            raise EstimatorError(
                f"trial {t.name}: muscles or coordinates differ from trial {first.name}; "
                "rerun the muscle analysis of the subject with one model"
            )
        if abs(t.dt - first.dt) > 1e-6 * max(first.dt, 1e-9):
            raise EstimatorError(
                f"trial {t.name}: sampling interval {t.dt} s differs from {first.dt} s of trial "
                f"{first.name}; the trials of a subject must share one frame rate"
            )
    for t in trials:
        bad = [k for k in ("q", "qdot", "mtu_length", "mtu_velocity", "moment_arm", "id_moment", "excitation")
               if not np.isfinite(getattr(t, k)).all()]
        if bad:
            raise InputDataError(
                f"trial {t.name}: non-finite values in {bad}; rerun the stages that write them "
                "(muscle analysis, inverse dynamics, EMG) and check their logs"
            )
    return list(first.muscles), list(first.coordinates), first.dt


def _pad_start(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` with its first frame repeated ``n`` times in front (axis 0)."""
    return np.concatenate([np.repeat(x[:1], n, axis=0), x], axis=0) if n else x


def _make_windows(
    trials: Sequence[TrialData], module: NMMModule, *, frames: int, context: int, stride: int
) -> _Windows:
    """Windows of ``frames`` loss frames preceded by ``context`` frames (the first frame repeated
    where a window starts near the beginning of its trial); the last window ends at the trial's end."""
    feats, exc, length, vel, arm, mom = [], [], [], [], [], []
    total = frames + context
    for trial in trials:
        if trial.n_frames < frames:
            logger.warning("nmm: trial %s has %d frames, fewer than one window (%d); not used",
                           trial.name, trial.n_frames, frames)
            continue
        f = _pad_start(module.features(trial.excitation, trial.q, trial.qdot).numpy(), context)
        arrays = [_pad_start(a, context) for a in (trial.excitation, trial.mtu_length, trial.mtu_velocity,
                                                   trial.moment_arm, trial.id_moment)]
        starts = list(range(0, trial.n_frames - frames + 1, stride))
        if starts[-1] != trial.n_frames - frames:
            starts.append(trial.n_frames - frames)
        for s in starts:
            sl = slice(s, s + total)
            feats.append(f[sl])
            for out, a in zip((exc, length, vel, arm, mom), arrays, strict=True):
                out.append(a[sl])
    if not feats:
        raise EstimatorError(
            f"nmm: no training window of {frames} frames fits in the training trials "
            f"({[t.name for t in trials]}); lower nmm.window in the config"
        )

    def stack(xs: list[np.ndarray]) -> torch.Tensor:
        return torch.as_tensor(np.stack(xs), dtype=DTYPE)

    return _Windows(torch.as_tensor(np.stack(feats), dtype=torch.float32), stack(exc), stack(length),
                    stack(vel), stack(arm), stack(mom))


def _losses(
    module: NMMModule, batch: _Windows, *, cfg: NMMConfig, dt: float, context: int,
    moment_scale: torch.Tensor, generator: torch.Generator | None,
) -> dict[str, torch.Tensor]:
    """The loss terms of a batch (input dropout when ``generator`` is given)."""
    features = batch.features
    n_in = module.input_index.numel()
    if generator is not None and cfg.input_dropout > 0 and n_in:
        keep = (torch.rand((features.shape[0], 1, n_in), generator=generator) >= cfg.input_dropout)
        mask = torch.cat([keep.to(features.dtype),
                          torch.ones((features.shape[0], 1, features.shape[2] - n_in))], dim=2)
        features = features * mask
    out, _, moments = module(features, batch.excitation, batch.mtu_length, batch.mtu_velocity,
                             batch.moment_arm, dt)
    sl = slice(context, None)
    err = (moments[:, sl] - batch.id_moment[:, sl]) / moment_scale
    terms = {"moment": (err**2).mean()}
    measured = module.measured
    if measured.any():
        diff = out[:, sl][..., measured] - batch.excitation[:, sl][..., measured]
        terms["consistency"] = (diff**2).mean()
    else:
        terms["consistency"] = torch.zeros((), dtype=DTYPE)
    unmeasured = ~measured
    pred = out[:, sl][..., unmeasured]
    step = 0.01 / dt
    terms["smoothness"] = ((torch.diff(pred, dim=1) * step) ** 2).mean() if pred.shape[1] > 1 \
        else torch.zeros((), dtype=DTYPE)
    terms["magnitude"] = (pred**2).mean() if pred.numel() else torch.zeros((), dtype=DTYPE)
    terms["total"] = (
        cfg.moment_weight * terms["moment"] + cfg.consistency_weight * terms["consistency"]
        + cfg.smoothness_weight * terms["smoothness"] + cfg.magnitude_weight * terms["magnitude"]
    )
    return terms


def build_module(
    trials: Sequence[TrialData], *, cfg: NMMConfig,
    physics: PhysicsSettings | Mapping[str, Any] | None = None, calibration: Mapping[str, Any] | None = None,
) -> NMMModule:
    """An untrained :class:`NMMModule` for ``trials`` (already hidden), seeded by ``cfg.seed``.

    The physics model starts from ``calibration`` (the content of ``calibration.json``) when given.
    """
    _check_trials(trials)
    first = trials[0]
    measured = np.asarray(first.measured, dtype=bool)
    for t in trials[1:]:
        if not np.array_equal(t.measured, measured):
            raise EstimatorError(
                f"trial {t.name}: measured muscles {t.measured_muscles} differ from trial {first.name} "
                f"({first.measured_muscles}); every trial of a subject needs the same EMG channels"
            )
    if measured.all():
        raise EstimatorError("nmm: every muscle is measured; there is nothing to estimate")
    kin = np.concatenate([np.concatenate([t.q, t.qdot], axis=1) for t in trials], axis=0)
    if not cfg.kinematics_inputs:
        kin = kin[:, :0]
    kin_mean = kin.mean(axis=0)
    kin_std = np.maximum(kin.std(axis=0), 1e-3)
    input_index = np.flatnonzero(measured)
    synergies = head = None
    n_muscles = len(first.muscles)
    if cfg.output == "synergy":
        stacked = np.concatenate([t.excitation[:, input_index] for t in trials])
        synergies, score = fit_synergies(stacked, n_synergies=cfg.n_synergies,
                                         vaf_threshold=cfg.vaf_threshold, max_synergies=cfg.max_synergies,
                                         seed=cfg.seed)
        activations = frame_activations(stacked, synergies)
        # static weights start where the head outputs about init_excitation on average
        init_weight = cfg.init_excitation / max(float(activations.mean(axis=0).sum()), 1e-6)
        logger.info("nmm: %d synergies of %d measured muscles (VAF %.3f)", len(synergies), len(input_index),
                    score)
    torch.manual_seed(cfg.seed)
    if synergies is not None:
        head = SynergyHead(n_muscles=n_muscles, n_synergies=len(synergies), modulation=cfg.synergy_modulation,
                           residual_bound=cfg.residual_bound, init_weight=init_weight)
    net = CausalTCN(
        n_inputs=len(input_index) + kin.shape[1] + (0 if synergies is None else len(synergies)),
        n_outputs=n_muscles if head is None else head.n_raw, channels=cfg.channels,
        kernel_size=cfg.kernel_size, dilations=cfg.dilations, dropout=cfg.dropout,
        init_excitation=cfg.init_excitation, linear_output=head is not None,
    )
    phys = model_for(first, physics=as_physics(physics), calibration=calibration)
    phys.set_trainable(cfg.physics_parameters)
    return NMMModule(net, phys, input_index=input_index, measured=measured, kin_mean=kin_mean,
                     kin_std=kin_std, head=head, synergies=synergies)


def train_nmm(module: NMMModule, trials: Sequence[TrialData], *, cfg: NMMConfig) -> TrainingResult:
    """Train ``module`` in place on windows of ``trials``; keep the best held-out epoch's weights.

    One log line per epoch (train and held-out loss, and the held-out moment term).
    """
    _, _, dt = _check_trials(trials)
    shortest = min(t.n_frames for t in trials)
    frames = max(2, round(cfg.window / dt)) if cfg.window > 0 else shortest  # 0: full training trials
    if cfg.window > 0 and 2 * frames > shortest:  # at least two windows per trial, so some can be held out
        logger.info("nmm: windows shortened from %d to %d frames (half the shortest training trial)",
                    frames, max(2, shortest // 2))
        frames = max(2, shortest // 2)
    stride = max(1, round(cfg.stride / dt))
    context = module.net.receptive_field - 1
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    windows = _make_windows(trials, module, frames=frames, context=context, stride=stride)
    n = len(windows)
    order = rng.permutation(n)
    if cfg.max_windows and n > cfg.max_windows:
        order = order[: cfg.max_windows]
    n_val = int(round(cfg.val_fraction * len(order)))
    # fewer than 4 windows (e.g. one full-trial window per training trial): no window is held out, the
    # best epoch is the one with the lowest training-window loss
    n_val = min(max(n_val, 1), len(order) - 1) if cfg.val_fraction > 0 and len(order) >= 4 else 0
    val_idx = torch.as_tensor(np.sort(order[:n_val]))
    train_idx = torch.as_tensor(np.sort(order[n_val:]))
    train, val = windows.take(train_idx), windows.take(val_idx)
    moment_scale = torch.clamp(train.id_moment[:, context:].reshape(-1, train.id_moment.shape[-1]).std(dim=0),
                               min=1.0)
    net_params = [p for p in module.net.parameters() if p.requires_grad]
    if module.head is not None:
        net_params += [p for p in module.head.parameters() if p.requires_grad]
    phys_params = [p for p in module.physics.parameters() if p.requires_grad]
    groups: list[dict[str, Any]] = [{"params": net_params, "lr": cfg.learning_rate,
                                     "weight_decay": cfg.weight_decay}]
    if phys_params and cfg.physics_learning_rate > 0:
        groups.append({"params": phys_params, "lr": cfg.physics_learning_rate, "weight_decay": 0.0})
    optimiser = torch.optim.Adam(groups)
    result = TrainingResult(n_train_windows=len(train), n_val_windows=len(val))
    best_state = copy.deepcopy(module.state_dict())
    since_best = 0
    start = time.perf_counter()
    kw = {"cfg": cfg, "dt": dt, "context": context, "moment_scale": moment_scale}
    logger.info("nmm: %d training and %d held-out windows of %d frames (+%d context), dt %.4g s",
                len(train), len(val), frames, context, dt)
    for epoch in range(1, cfg.epochs + 1):
        module.train()
        perm = torch.randperm(len(train), generator=gen)
        total, count = 0.0, 0
        for b in range(0, len(train), cfg.batch_size):
            batch = train.take(perm[b:b + cfg.batch_size])
            optimiser.zero_grad(set_to_none=True)
            terms = _losses(module, batch, generator=gen, **kw)
            terms["total"].backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(net_params, cfg.grad_clip)
            optimiser.step()
            total += float(terms["total"].detach()) * len(batch)
            count += len(batch)
        train_loss = total / max(count, 1)
        module.eval()
        with torch.no_grad():
            vterms = _losses(module, val if len(val) else train, generator=None, **kw)
        val_loss = float(vterms["total"])
        row = {"epoch": epoch, "train": train_loss, "val": val_loss, "val_moment": float(vterms["moment"]),
               "seconds": time.perf_counter() - start}
        result.history.append(row)
        improved = val_loss < result.best_val - 1e-9
        if improved:
            result.best_val, result.best_epoch, since_best = val_loss, epoch, 0
            best_state = copy.deepcopy(module.state_dict())
        else:
            since_best += 1
        logger.info("nmm epoch %d/%d: train %.5f, held-out %.5f (moment %.5f)%s, %.1f s", epoch, cfg.epochs,
                    train_loss, val_loss, row["val_moment"], " *" if improved else "", row["seconds"])
        if since_best >= cfg.patience:
            logger.info("nmm: early stop at epoch %d (best %d)", epoch, result.best_epoch)
            break
    module.load_state_dict(best_state)
    module.eval()
    result.seconds = time.perf_counter() - start
    return result


class NMMEstimator(Estimator):
    """The neural musculoskeletal model in the shared estimator interface.

    Args:
        physics: the ``physics`` settings for the muscle model (a partial mapping is completed
            from the schema).
        calibration: content of the subject's ``calibration.json``; the physics starts from it.
        seed: seed of the weights, the window split and the shuffling.
        **hyper: keys of config section ``nmm`` over the schema's defaults (see :class:`NMMConfig`).
    """

    name: ClassVar[str] = "nmm"

    def __init__(self, *, physics: PhysicsSettings | Mapping[str, Any] | None = None,
                 calibration: Mapping[str, Any] | None = None, seed: int = 0,
                 mse: Mapping[str, Any] | None = None, **hyper: Any):
        self.physics_config = as_physics(physics)
        self.calibration = calibration
        self.mse = dict(mse or {})
        self.config = NMMConfig.from_mapping({**hyper, "seed": int(seed)})
        self.members_: list[NMMModule] = []
        self.hidden_: list[str] = []
        self.muscles_: list[str] = []
        self.coordinates_: list[str] = []
        self.dt_: float = 0.0
        self.trainings_: list[TrainingResult] = []

    @property
    def module_(self) -> NMMModule | None:
        """The ensemble's first network (None before fitting)."""
        return self.members_[0] if self.members_ else None

    @property
    def training_(self) -> TrainingResult | None:
        """The first network's training record (None before fitting or after loading)."""
        return self.trainings_[0] if self.trainings_ else None

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, trials: Sequence[TrialData], *, hidden: Sequence[str] = ()) -> Self:
        """Train the network and the subject's physics parameters on ``trials`` with ``hidden`` hidden.

        ``ensemble`` networks are trained from seeds ``seed``, ``seed + 1``, ..., all from the same
        starting physics (the fold calibration is fitted once).
        """
        hidden = list(hidden)
        seen = [t.hide(hidden) for t in trials]
        muscles, coords, dt = _check_trials(seen)
        everywhere = np.logical_and.reduce([t.measured for t in seen])
        partial = [m for i, m in enumerate(muscles) if any(t.measured[i] for t in seen) and not everywhere[i]]
        if partial:
            logger.warning("nmm: %s lack EMG in some training trials; estimated as unmeasured", partial)
            seen = [t.hide(partial) for t in seen]
        start = self.calibration
        if start is None and self.config.fold_calibration:
            start = self._fold_calibration(seen)
        members, trainings = [], []
        with torch_settings(threads=self.config.threads):
            for i in range(self.config.ensemble):
                cfg = replace(self.config, seed=self.config.seed + i)
                members.append(build_module(seen, cfg=cfg, physics=self.physics_config, calibration=start))
                trainings.append(train_nmm(members[-1], seen, cfg=cfg))
        self.members_, self.trainings_, self.hidden_, self.dt_ = members, trainings, hidden, dt
        self.muscles_, self.coordinates_ = muscles, coords
        logger.info("nmm: fitted %d network(s) on %d trials (hidden %s) in %.1f s, best epochs %s",
                    len(members), len(seen), hidden, sum(t.seconds for t in trainings),
                    [t.best_epoch for t in trainings])
        return self

    def _fold_calibration(self, trials: Sequence[TrialData]) -> dict[str, Any] | None:
        """Physics parameters calibrated on this fit's own training trials (``nmm.fold_calibration``).

        An MSE fit (:class:`musculo.estimators.mse.MSEEstimator`, the ``mse`` settings given at
        construction) with the parameters of ``physics.calibrate`` trainable for
        ``physics.calibration_max_iter`` iterations, as the subject calibration but on these trials only.
        """
        if not any(np.any(t.measured) for t in trials):
            return None
        mse = {**self.mse, "max_iter": self.physics_config.calibration_max_iter}
        est = MSEEstimator(physics=self.physics_config, trainable_physics=list(self.physics_config.calibrate),
                           seed=self.config.seed, **mse).fit(trials)
        assert est.model_ is not None
        logger.info("nmm: physics calibrated on the training trials %s (loss %.4g)", [t.name for t in trials],
                    est.fit_info_["loss"])
        return {"parameters": est.model_.to_dict()}

    def _fitted(self) -> list[NMMModule]:
        if not self.members_:
            raise EstimatorError("nmm: the estimator is not fitted; call fit() or load() first")
        return self.members_

    # -- prediction ---------------------------------------------------------------------------
    def predict(self, trial: TrialData) -> Prediction:
        """Excitations of every muscle (measured: EMG x gain, clipped; others: network), moments and
        muscle forces: the mean over the ensemble's networks."""
        members = self._fitted()
        if list(trial.muscles) != self.muscles_ or list(trial.coordinates) != self.coordinates_:
            raise EstimatorError(
                f"trial {trial.name}: muscles or coordinates differ from those the nmm estimator was "
                "fitted on; fit it on trials of the same subject and model"
            )
        seen = trial.hide([h for h in self.hidden_ if h in trial.muscles])
        missing = [self.muscles_[i] for i in members[0].input_index.tolist() if not seen.measured[i]]
        if missing:
            logger.warning("nmm: trial %s has no EMG for %s; their inputs are zero", trial.name, missing)
        outputs = [self._predict_one(module, seen) for module in members]
        excitation, moments, force = (np.mean([o[k] for o in outputs], axis=0) for k in range(3))
        return prediction_from_arrays(trial, excitation=excitation, moments=moments, forces=force)

    @staticmethod
    def _predict_one(module: NMMModule, seen: TrialData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One network's excitations (T, M), moments (T, C) and muscle forces (T, M) for ``seen``."""
        excitation = seen.excitation * module.measured.numpy()
        ctx = module.net.receptive_field - 1  # the first frame repeated before the trial, as in training

        def tensor(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(_pad_start(np.asarray(x), ctx), dtype=DTYPE)

        with torch.inference_mode():
            feats = torch.as_tensor(_pad_start(module.features(excitation, seen.q, seen.qdot).numpy(), ctx))
            _, u, moments = module(feats.unsqueeze(0), tensor(excitation).unsqueeze(0),
                                   tensor(seen.mtu_length), tensor(seen.mtu_velocity),
                                   tensor(seen.moment_arm), seen.dt)
            force = module.physics(u, tensor(seen.mtu_length), tensor(seen.mtu_velocity),
                                   tensor(seen.moment_arm), seen.dt, gain_mask=module.measured).force
            gain = torch.where(module.measured, module.physics.emg_gain.value, torch.ones_like(
                module.physics.emg_gain.value))
            u = torch.clamp(u * gain, 0.0, 1.0)
        return u[0, ctx:].numpy(), moments[0, ctx:].numpy(), force[0, ctx:].numpy()

    # -- persistence --------------------------------------------------------------------------
    def hyperparameters(self) -> dict[str, Any]:
        """JSON-serialisable description of the fitted estimator (hyper-parameters, data layout, history);
        ``physics_parameters`` and ``training`` hold one entry per network of the ensemble."""
        members = self._fitted()
        module = members[0]
        trainings = self.trainings_ or [TrainingResult()] * len(members)
        return {
            "method": self.name,
            "config": asdict(self.config),
            "physics_config": self.physics_config.to_dict(),
            "hidden": self.hidden_,
            "muscles": self.muscles_,
            "coordinates": self.coordinates_,
            "dt": self.dt_,
            "measured": [m for m, k in zip(self.muscles_, module.measured.tolist(), strict=True) if k],
            "receptive_field": module.net.receptive_field,
            "n_synergies": module.n_synergies,
            "physics_parameters": [m.physics.to_dict() for m in members],
            "training": [{"best_epoch": tr.best_epoch, "best_val": tr.best_val, "seconds": tr.seconds,
                          "n_train_windows": tr.n_train_windows, "n_val_windows": tr.n_val_windows,
                          "history": tr.history} for tr in trainings],
        }

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write ``weights.pt`` (each network's and physics' state, a list) and ``hyperparameters.json``
        under ``directory``."""
        members = self._fitted()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        with atomic_output(d / WEIGHTS_FILE) as tmp:
            torch.save([module.state_dict() for module in members], tmp)
        with atomic_output(d / HYPER_FILE) as tmp:
            tmp.write_text(json.dumps(self.hyperparameters(), indent=1, default=_json_default))

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Self:
        """Read an estimator written by :meth:`save`."""
        hp_path = cls._check_dir(directory, HYPER_FILE)
        w_path = cls._check_dir(directory, WEIGHTS_FILE)
        try:
            hp = json.loads(hp_path.read_text())
            cfg = dict(hp["config"])
            muscles, coords, measured_names = hp["muscles"], hp["coordinates"], hp["measured"]
        except (ValueError, KeyError) as exc:
            raise EstimatorError(f"{hp_path}: unreadable ({exc}); fit and save the estimator again") from exc
        seed = cfg.pop("seed", 0)
        est = cls(physics=hp.get("physics_config"), seed=seed, **cfg)
        measured = np.array([mu in measured_names for mu in muscles], dtype=bool)
        states = torch.load(w_path, map_location="cpu", weights_only=True)
        if not isinstance(states, list) or not states:
            raise EstimatorError(
                f"{w_path}: expected a list of network states; fit and save the estimator again")
        members = []
        for state in states:
            module = _empty_module(est.config, physics=est.physics_config, muscles=muscles,
                                   coordinates=coords, measured=measured,
                                   n_synergies=int(hp.get("n_synergies", 0)))
            try:
                module.load_state_dict(state)
            except RuntimeError as exc:
                raise EstimatorError(
                    f"{w_path}: weights do not match {hp_path} ({exc}); fit and save the estimator again"
                ) from exc
            module.eval()
            members.append(module)
        est.members_, est.hidden_ = members, list(hp["hidden"])
        est.muscles_, est.coordinates_ = muscles, coords
        est.dt_ = float(hp.get("dt", 0.0))
        return est


def _empty_module(cfg: NMMConfig, *, physics: PhysicsSettings, muscles: Sequence[str],
                  coordinates: Sequence[str], measured: np.ndarray, n_synergies: int) -> NMMModule:
    """An :class:`NMMModule` of the saved layout whose weights and buffers a state dict then sets."""
    m = len(muscles)
    params = MuscleParameters(*(np.ones(m) for _ in range(5)))  # buffers: set by the state
    phys = muscle_model(params, muscles, physics=physics)
    n_kin = 2 * len(coordinates) if cfg.kinematics_inputs else 0
    k, n_meas = n_synergies, int(measured.sum())
    head = SynergyHead(n_muscles=m, n_synergies=k, modulation=cfg.synergy_modulation,
                       residual_bound=cfg.residual_bound) if k else None
    net = CausalTCN(n_inputs=n_meas + n_kin + k, n_outputs=m if head is None else head.n_raw,
                    channels=cfg.channels, kernel_size=cfg.kernel_size, dilations=cfg.dilations,
                    dropout=cfg.dropout, init_excitation=cfg.init_excitation, linear_output=head is not None)
    return NMMModule(net, phys, input_index=np.flatnonzero(measured), measured=measured,
                     kin_mean=np.zeros(n_kin), kin_std=np.ones(n_kin), head=head,
                     synergies=np.zeros((k, n_meas)) if k else None)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def _factory(settings: Settings, *, calibration: Mapping[str, Any] | None = None) -> NMMEstimator:
    return NMMEstimator(physics=settings.physics, calibration=calibration, seed=settings.seed,
                        mse=settings.mse.to_dict(), **settings.nmm.to_dict())


SPEC = EstimatorSpec(
    name="nmm", factory=_factory, needs_emg=True, muscle_set="subject",
    uses_calibration=lambda settings: settings.nmm.start_from_calibration,
    description="neural musculoskeletal model: a causal network's deep excitations drive the physics core",
)
