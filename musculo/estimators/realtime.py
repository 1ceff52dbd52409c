"""``realtime``: a small causal multi-task network (joint moments + activity) for streaming.

After MMTL-Net (arXiv 2410.19769): a MobileNetV3-style network of depthwise-separable convolutions
with two heads. Here every convolution is causal (left padding only) so an output frame depends only
on the current and past frames:

- stem: a 1x1 convolution of the per-frame features (the input muscles' EMG excitations, zero where
  unmeasured, and with ``kinematics_inputs`` the joint angles and speeds, standardised) + hardswish;
- ``blocks`` inverted-residual blocks: 1x1 expansion (``expansion`` x), hardswish, causal depthwise
  convolution (``kernel_size``, dilation ``dilations[i]``), a causal squeeze-and-excitation gate (the
  channel means over the last ``se_frames`` frames instead of the whole sequence), hardswish, 1x1
  projection, residual;
- a moment head (one output per tracked coordinate) and an activity head (logits over the training
  trials' ``task`` labels; trained only when tasks are given, e.g. across a cohort in :mod:`musculo.loso`).

:class:`RealtimeStreamer` runs the fitted network chunk by chunk with a buffer of the last
``receptive_field - 1`` feature frames: its outputs equal the offline ones frame for frame.

It predicts moments (and activity) only: the :class:`~musculo.estimators.base.Prediction`'s
excitations pass measured EMG through and give unmeasured and hidden muscles a null-like constant
(see :mod:`musculo.estimators.sequence`).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from musculo.errors import ConfigError, EstimatorError
from musculo.estimators.registry import EstimatorSpec
from musculo.estimators.sequence import SequenceEstimator, torch_settings
from musculo.physics.data import TrialData
from musculo.settings import RealtimeSettings, Settings


class _CausalSE(nn.Module):
    """Squeeze-and-excitation over the last ``frames`` frames (causal moving channel mean)."""

    def __init__(self, channels: int, frames: int, reduction: int = 4):
        super().__init__()
        self.frames = max(1, int(frames))
        mid = max(4, channels // reduction)
        self.fc1 = nn.Conv1d(channels, mid, 1)
        self.fc2 = nn.Conv1d(mid, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, T) scaled per channel by a gate from its causal moving mean."""
        s = F.avg_pool1d(F.pad(x, (self.frames - 1, 0), mode="replicate"), self.frames, stride=1) \
            if self.frames > 1 else x
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))


class InvertedResidual(nn.Module):
    """MobileNetV3 block in 1-D: 1x1 expand, causal depthwise conv, causal SE, 1x1 project, residual."""

    def __init__(self, channels: int, *, expansion: int, kernel_size: int, dilation: int, se_frames: int):
        super().__init__()
        wide = channels * expansion
        self.pad = (kernel_size - 1) * dilation
        self.expand = nn.Conv1d(channels, wide, 1)
        self.depthwise = nn.Conv1d(wide, wide, kernel_size, dilation=dilation, groups=wide)
        self.se = _CausalSE(wide, se_frames)
        self.project = nn.Conv1d(wide, channels, 1)
        self.context = self.pad + self.se.frames - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T), causally."""
        h = F.hardswish(self.expand(x))
        h = F.hardswish(self.se(self._depthwise(F.pad(h, (self.pad, 0)))))
        return x + self.project(h)

    def _depthwise(self, h: torch.Tensor) -> torch.Tensor:
        """``self.depthwise`` on left-padded ``h`` as a sum of its dilated taps.

        The same numbers as ``conv1d(..., groups=channels)``; on CPU, PyTorch's grouped 1-D
        convolution costs 50-80 us per call for a 100 ms chunk, the taps a few us.
        """
        w, d = self.depthwise.weight, self.depthwise.dilation[0]
        k, t = w.shape[-1], h.shape[-1] - self.pad
        out = self.depthwise.bias[:, None] + w[:, 0, 0, None] * h[..., :t]
        for j in range(1, k):
            out = out + w[:, 0, j, None] * h[..., j * d:j * d + t]
        return out


class RealtimeNet(nn.Module):
    """The causal multi-task network; ``forward`` returns (moments, features, activity logits)."""

    def __init__(self, *, n_inputs: int, n_outputs: int, n_classes: int, channels: int = 16,
                 expansion: int = 2, kernel_size: int = 3, dilations: Sequence[int] = (1, 2, 4),
                 se_frames: int = 8):
        super().__init__()
        self.stem = nn.Conv1d(n_inputs, channels, 1)
        self.blocks = nn.ModuleList(InvertedResidual(channels, expansion=expansion, kernel_size=kernel_size,
                                                     dilation=d, se_frames=se_frames) for d in dilations)
        self.moment = nn.Conv1d(channels, n_outputs, 1)
        self.activity = nn.Conv1d(channels, max(1, n_classes), 1)

    @property
    def context(self) -> int:
        """Past frames an output frame depends on (receptive field minus one)."""
        return sum(b.context for b in self.blocks)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Features (B, H, T) of inputs (B, T, F)."""
        h = F.hardswish(self.stem(x.transpose(1, 2)))
        for block in self.blocks:
            h = block(h)
        return h

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(moments (B, T, C), features (B, T, H))."""
        h = self.trunk(x)
        return self.moment(h).transpose(1, 2), h.transpose(1, 2)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(moments (B, T, C), activity logits (B, T, classes))."""
        h = self.trunk(x)
        return self.moment(h).transpose(1, 2), self.activity(h).transpose(1, 2)


class RealtimeEstimator(SequenceEstimator):
    """The real-time multi-task estimator (see the module docstring).

    Args:
        config: keys of config section ``realtime`` (:class:`musculo.settings.RealtimeSettings`).
        seed: seed of the weights and the training.
    """

    name: ClassVar[str] = "realtime"

    def context_frames(self) -> int:
        """Receptive field of the network minus one (frames)."""
        c = self.config
        return sum((c["kernel_size"] - 1) * d + max(1, c["se_frames"]) - 1 for d in c["dilations"])

    def _build_net(self, n_inputs: int, n_outputs: int) -> nn.Module:
        c = self.config
        return RealtimeNet(n_inputs=n_inputs, n_outputs=n_outputs, n_classes=len(self.classes_),
                           channels=c["channels"], expansion=c["expansion"], kernel_size=c["kernel_size"],
                           dilations=c["dilations"], se_frames=c["se_frames"])

    def _aux_losses(self, batch: dict[str, torch.Tensor], features: torch.Tensor,
                    context: int) -> dict[str, torch.Tensor]:
        if len(self.classes_) < 2:
            return {}
        logits = self.net_.activity(features.transpose(1, 2)).transpose(1, 2)[:, context:]
        target = batch["activity"][:, None].expand(-1, logits.shape[1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
        return {"activity": float(self.config["activity_weight"]) * loss}

    def _val_terms(self, batch: dict[str, torch.Tensor], features: torch.Tensor,
                   context: int) -> list[torch.Tensor]:
        return list(self._aux_losses(batch, features, context).values())

    def fit(self, trials: Sequence[TrialData], *, hidden: Sequence[str] = (),
            tasks: Sequence[str] | None = None) -> Self:
        """Train on ``trials``; with ``tasks`` (one activity label per trial) also the activity head."""
        if tasks is not None and len(tasks) != len(trials):
            raise EstimatorError(f"realtime: {len(tasks)} task labels for {len(trials)} trials")
        self.classes_ = sorted(set(tasks)) if tasks is not None else []
        seen = self._setup(trials, hidden)
        act = [self.classes_.index(k) for k in tasks] if tasks is not None else [0] * len(seen)
        with torch_settings(threads=int(self.config["threads"])):
            self._train(seen, labelled=[True] * len(seen), domains=[0] * len(seen), activities=act)
        return self

    def predict_activity(self, trial: TrialData) -> tuple[list[str], np.ndarray]:
        """Per-frame activity (T labels) and class probabilities (T, classes)."""
        self._check_trial(trial)
        if not self.classes_:
            raise EstimatorError("realtime: fitted without task labels; no activity head to predict with")
        feats = self.features(trial)
        ctx = self.context_frames()
        x = np.concatenate([np.repeat(feats[:1], ctx, axis=0), feats]) if ctx else feats
        with torch_settings(threads=int(self.config["threads"])), torch.inference_mode():
            _, logits = self.net_.heads(torch.as_tensor(x).unsqueeze(0))
        prob = torch.softmax(logits[0, ctx:], dim=-1).numpy()
        return [self.classes_[i] for i in prob.argmax(axis=1)], prob

    def streamer(self, muscles: Sequence[str]) -> RealtimeStreamer:
        """A :class:`RealtimeStreamer` reading frames whose excitation columns are ``muscles``."""
        if self.net_ is None:
            raise EstimatorError("realtime: the estimator is not fitted; call fit() or load() first")
        return RealtimeStreamer(self, list(muscles))


class _Heads(nn.Module):
    """``RealtimeNet.heads`` as a module's forward, so that it can be traced."""

    def __init__(self, net: RealtimeNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.heads(x)


def _frozen_heads(net: RealtimeNet, frames: int, n_features: int) -> torch.jit.ScriptModule:
    """``net.heads`` traced and frozen by TorchScript for inference (same numbers, any length).

    Eager PyTorch spends most of a 100 ms chunk's time dispatching its ~40 small operators one by
    one; the frozen graph folds the parameters in and runs the same operators without the Python
    module calls, about halving the latency. It is warmed up here, so the stream's first chunk
    does not pay for the graph's optimisation.
    """
    example = torch.zeros(1, frames, n_features)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(_Heads(copy.deepcopy(net)).eval(), example, check_trace=False)
        frozen = torch.jit.freeze(traced)
        for _ in range(3):  # TorchScript profiles and optimises the graph over its first runs
            frozen(example)
    return frozen


class RealtimeStreamer:
    """Chunk-by-chunk inference with the last ``receptive_field - 1`` feature frames kept as history.

    The first chunk's first frame is repeated as history (as in offline prediction), so the
    concatenated outputs equal :meth:`RealtimeEstimator.predict_moments` on the whole trial.
    """

    def __init__(self, estimator: RealtimeEstimator, muscles: list[str]):
        missing = [m for m in estimator.inputs_ if m not in muscles]
        if missing:
            raise EstimatorError(f"realtime stream: input muscles {missing} are not in the stream's columns")
        self.est = estimator
        self.index = np.array([muscles.index(m) for m in estimator.inputs_], dtype=int)
        self.hidden = np.array([m in estimator.hidden_ for m in estimator.inputs_])
        self.context = estimator.context_frames()
        self.buffer: np.ndarray | None = None
        self.mean = estimator.feat_mean_.astype(np.float32)
        self.std = estimator.feat_std_.astype(np.float32)
        self.m_mean, self.m_std = estimator.moment_mean_, estimator.moment_std_
        self.heads = _frozen_heads(estimator.net_, self.context + 1, len(self.mean))

    def push(self, excitation: np.ndarray, q: np.ndarray, qdot: np.ndarray,
             measured: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Moments (n, C) and activity probabilities (n, classes) or None for the next ``n`` frames."""
        emg = np.asarray(excitation, dtype=np.float32)[:, self.index]
        keep = ~self.hidden if measured is None else (~self.hidden & np.asarray(measured)[self.index])
        parts = [emg * keep[None, :]]
        if self.est.config["kinematics_inputs"]:
            parts += [np.asarray(q, dtype=np.float32), np.asarray(qdot, dtype=np.float32)]
        feats = (np.concatenate(parts, axis=1) - self.mean) / self.std
        if self.buffer is None:
            self.buffer = np.repeat(feats[:1], self.context, axis=0)
        x = np.concatenate([self.buffer, feats])
        with torch.inference_mode():
            xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(0)
            mom, logits = self.heads(xt)
            prob = torch.softmax(logits[0, -len(feats):], dim=-1).numpy() if self.est.classes_ else None
        self.buffer = x[len(x) - self.context:] if self.context else x[:0]
        return mom[0, -len(feats):].numpy().astype(float) * self.m_std + self.m_mean, prob


def _factory(settings: Settings, *, calibration: Mapping[str, Any] | None = None) -> RealtimeEstimator:
    section = settings.section("realtime")
    if not isinstance(section, RealtimeSettings):
        raise ConfigError("config section realtime: not parsed; update musculo.settings")
    return RealtimeEstimator(config=section.to_dict(), seed=settings.seed)


SPEC = EstimatorSpec(
    name="realtime", factory=_factory, needs_emg=True, muscle_set="subject",
    description="causal depthwise-separable multi-task network: moments (+ activity) from streamed EMG",
)
