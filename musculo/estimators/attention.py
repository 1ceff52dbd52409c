"""``attention``: synergy + multi-scale + self-attention torque estimator with adversarial adaptation.

After Dong et al. (IEEE TNSRE 2025): EMG -> muscle activation -> muscle synergies -> multi-scale
temporal features fused by self-attention -> joint moments, with a domain discriminator behind a
gradient-reversal layer so that a model trained on some subjects or sessions adapts to a new one
without its moment labels.

1. Activation: the input muscles' EMG excitations pass a causal first-order activation filter
   (time constant ``activation_tau``, :func:`musculo.estimators.sequence.activation_dynamics`).
2. Synergies: NMF (scikit-learn, :func:`musculo.estimators.mse.fit_synergies`) of the training
   activations gives k synergy vectors; each frame's synergy activation coefficients are the
   non-negative least-squares fit of its activations on them (SciPy NNLS).
3. Features per frame: activations, synergy coefficients (and joint angles and speeds with
   ``kinematics_inputs``), standardised on the training trials.
4. :class:`MultiScaleAttentionNet`: causal dilated convolutions at several temporal scales in
   parallel, fused by a linear layer, then causal self-attention over the last
   ``attention_window`` seconds, a feed-forward layer and a linear moment head.
5. Adversarial adaptation (``adversarial: true``): a :class:`~musculo.estimators.sequence.DomainDiscriminator`
   on the network's features through gradient reversal (weight ``adversarial_weight``) learns which
   domain a window comes from; the feature extractor learns to hide it. In the per-subject
   evaluation every training trial is its own domain (session-invariant features); across
   subjects (:mod:`musculo.loso`) the domains are subjects and the left-out subject's unlabelled
   trials enter the discriminator (``fit(..., target=...)``) but never the moment loss.

Every step is causal, so the estimator also streams (:mod:`musculo.stream`). It predicts moments
only: the :class:`~musculo.estimators.base.Prediction`'s excitations pass measured EMG through and
give unmeasured and hidden muscles a null-like constant (see :mod:`musculo.estimators.sequence`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np
import torch
from scipy.optimize import nnls
from torch import nn
from torch.nn import functional as F  # noqa: N812

from musculo.errors import ConfigError, EstimatorError
from musculo.estimators.mse import fit_synergies
from musculo.estimators.registry import EstimatorSpec
from musculo.estimators.sequence import (
    DomainDiscriminator,
    SequenceEstimator,
    activation_dynamics,
    torch_settings,
    with_moments,
)
from musculo.physics.data import TrialData
from musculo.settings import AttentionSettings, Settings


class _CausalConv(nn.Module):
    """Causal dilated convolution (B, C, T) -> (B, C, T) with GELU."""

    def __init__(self, channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.pad = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(channels, channels, kernel_size, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.conv(F.pad(x, (self.pad, 0))))


def causal_mask(frames: int, window: int) -> torch.Tensor:
    """Boolean (T, T) mask, True where frame i may NOT attend to frame j (j > i or i - j >= window)."""
    i = torch.arange(frames)[:, None]
    j = torch.arange(frames)[None, :]
    return (j > i) | (i - j >= window)


class MultiScaleAttentionNet(nn.Module):
    """Multi-scale causal convolutions + causal local self-attention -> moments.

    Args:
        n_inputs: features per frame.
        n_outputs: moments per frame.
        channels: hidden width H.
        kernel_size: width of every scale's convolution.
        scales: dilation of each parallel branch (its receptive field ``1 + (kernel_size - 1) * scale``).
        heads: attention heads (must divide ``channels``).
        window: frames a frame attends to (itself included).
        dropout: dropout after fusion and attention (training only).
    """

    def __init__(self, *, n_inputs: int, n_outputs: int, channels: int = 32, kernel_size: int = 3,
                 scales: Sequence[int] = (1, 2, 4), heads: int = 2, window: int = 20, dropout: float = 0.0):
        super().__init__()
        if channels % heads:
            raise EstimatorError(f"attention: channels ({channels}) must be a multiple of heads ({heads}); "
                                 "fix the attention section of the config")
        self.scales = tuple(int(s) for s in scales)
        self.kernel_size = int(kernel_size)
        self.window = max(1, int(window))
        self.inp = nn.Linear(n_inputs, channels)
        self.branches = nn.ModuleList(_CausalConv(channels, kernel_size, s) for s in self.scales)
        self.fuse = nn.Linear(channels * len(self.scales), channels)
        self.norm1 = nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, dropout=0.0, batch_first=True)
        self.norm2 = nn.LayerNorm(channels)
        self.ff = nn.Sequential(nn.Linear(channels, 2 * channels), nn.GELU(),
                                nn.Linear(2 * channels, channels))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels, n_outputs)

    @property
    def context(self) -> int:
        """Past frames an output frame depends on."""
        return (self.kernel_size - 1) * max(self.scales) + self.window - 1

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(moments (B, T, n_outputs), features (B, T, H)) of inputs (B, T, n_inputs)."""
        h = self.inp(x)
        hc = h.transpose(1, 2)
        multi = torch.cat([b(hc) for b in self.branches], dim=1).transpose(1, 2)
        h = h + self.dropout(self.fuse(multi))
        z = self.norm1(h)
        mask = causal_mask(x.shape[1], self.window)
        att, _ = self.attn(z, z, z, attn_mask=mask, need_weights=False)
        h = h + self.dropout(att)
        h = h + self.ff(self.norm2(h))
        return self.head(h), h


class AttentionEstimator(SequenceEstimator):
    """The synergy + multi-scale attention moment estimator (see the module docstring).

    Args:
        config: keys of config section ``attention`` (:class:`musculo.settings.AttentionSettings`).
        seed: seed of the NMF, the weights and the training.
    """

    name: ClassVar[str] = "attention"

    def __init__(self, *, config: Mapping[str, Any], seed: int = 0):
        super().__init__(config=config, seed=seed)
        self.discriminator_: DomainDiscriminator | None = None

    def context_frames(self) -> int:
        """Receptive field of the network minus one (frames)."""
        return (self.config["kernel_size"] - 1) * max(self.config["scales"]) + self._window_frames() - 1

    def _window_frames(self) -> int:
        return max(1, round(self.config["attention_window"] / self.dt_)) if self.dt_ > 0 else 1

    def _activation(self, emg: np.ndarray, dt: float) -> np.ndarray:
        return activation_dynamics(emg, dt=dt, tau=float(self.config["activation_tau"]))

    def _prepare(self, trials: Sequence[TrialData]) -> None:
        act = np.concatenate([self._activation(self.input_emg(t), t.dt) for t in trials])
        cfg = self.config
        n_max = min(cfg["max_synergies"], act.shape[1])
        w, vaf = fit_synergies(act, n_synergies=min(cfg["n_synergies"], act.shape[1]) if cfg["n_synergies"]
                               else None, vaf_threshold=cfg["vaf_threshold"], max_synergies=n_max,
                               max_iter=200, seed=self.seed)
        self.extra_["synergies"] = w
        self.extra_["synergy_vaf"] = float(vaf)

    def synergy_coefficients(self, activation: np.ndarray) -> np.ndarray:
        """Synergy activation coefficients (T, k): per-frame NNLS on the fitted synergy vectors."""
        w = np.asarray(self.extra_["synergies"], dtype=float)
        basis = np.ascontiguousarray(w.T)
        data = np.clip(activation, 0.0, None)
        if not len(data):
            return np.zeros((0, len(w)))
        return np.stack([nnls(basis, row)[0] for row in data])

    def _extra_features(self, excitation: np.ndarray, dt: float) -> list[np.ndarray]:
        act = self._activation(excitation, dt)
        return [act, self.synergy_coefficients(act)]

    def _build_net(self, n_inputs: int, n_outputs: int) -> nn.Module:
        c = self.config
        return MultiScaleAttentionNet(n_inputs=n_inputs, n_outputs=n_outputs, channels=c["channels"],
                                      kernel_size=c["kernel_size"], scales=c["scales"], heads=c["heads"],
                                      window=self._window_frames(), dropout=c["dropout"])

    def _aux_modules(self) -> list[nn.Module]:
        return [self.discriminator_] if self.discriminator_ is not None else []

    def _aux_losses(self, batch: dict[str, torch.Tensor], features: torch.Tensor,
                    context: int) -> dict[str, torch.Tensor]:
        if self.discriminator_ is None:
            return {}
        logits = self.discriminator_(features[:, context:])
        return {"domain": F.cross_entropy(logits, batch["domain"])}

    def _restore_aux(self) -> None:
        n = int(self.extra_.get("n_domains", 0))
        if n >= 2:
            self.discriminator_ = DomainDiscriminator(int(self.config["channels"]), n,
                                                      hidden=int(self.config["discriminator_hidden"]),
                                                      scale=float(self.config["adversarial_weight"]))

    def fit(self, trials: Sequence[TrialData], *, hidden: Sequence[str] = (),
            target: Sequence[TrialData] = (), domains: Sequence[str] | None = None,
            target_domains: Sequence[str] | None = None) -> Self:
        """Train on labelled ``trials``; ``target`` trials (moments unused) only feed the discriminator.

        Args:
            trials: labelled training trials.
            hidden: measured muscles treated as unmeasured (leave-one-muscle-out).
            target: unlabelled trials of the domain to adapt to (e.g. a left-out subject); their
                inverse-dynamics moments are never read.
            domains: domain label of each training trial (default: each trial its own domain).
            target_domains: domain label of each target trial (default: one shared ``"target"``).
        """
        target = list(target)
        labels = list(domains) if domains is not None else [t.name for t in trials]
        tlabels = list(target_domains) if target_domains is not None else ["target"] * len(target)
        if len(labels) != len(trials) or len(tlabels) != len(target):
            raise EstimatorError("attention: one domain label per trial is needed")
        seen = self._setup([*trials, *target], hidden)
        # unlabelled trials: their moments are replaced so nothing can leak into the loss
        seen = seen[: len(trials)] + [with_moments(t, np.zeros_like(t.id_moment)) for t in seen[len(trials):]]
        names = sorted(set(labels) | set(tlabels))
        self.extra_["domains"] = names
        self.extra_["n_domains"] = len(names)
        self.discriminator_ = None
        if self.config["adversarial"] and len(names) >= 2:
            self._restore_aux()
        else:
            self.extra_["n_domains"] = 0
        with torch_settings(threads=int(self.config["threads"])):
            if self.discriminator_ is not None:
                torch.manual_seed(self.seed + 1)
                self.discriminator_ = DomainDiscriminator(
                    int(self.config["channels"]), len(names), hidden=int(self.config["discriminator_hidden"]),
                    scale=float(self.config["adversarial_weight"]))
            self._train(seen, labelled=[True] * len(trials) + [False] * len(target),
                        domains=[names.index(d) for d in [*labels, *tlabels]], activities=[0] * len(seen))
        return self


def _factory(settings: Settings, *, calibration: Mapping[str, Any] | None = None) -> AttentionEstimator:
    section = settings.section("attention")
    if not isinstance(section, AttentionSettings):
        raise ConfigError("config section attention: not parsed; update musculo.settings")
    return AttentionEstimator(config=section.to_dict(), seed=settings.seed)


SPEC = EstimatorSpec(
    name="attention", factory=_factory, needs_emg=True, muscle_set="subject",
    description="EMG synergies + multi-scale causal self-attention -> moments (gradient-reversal adaptation)",
)
