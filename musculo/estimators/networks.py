"""Networks of the neural musculoskeletal model (NMM).

:class:`CausalTCN` maps a sequence of input features (measured excitations, joint angles and
speeds) to excitations in [0, 1] with dilated causal 1-D convolutions: every output frame depends
only on the current and past ``receptive_field - 1`` frames, so the same network runs offline on a
whole trial and online on a stream of short windows. Convolutions process all frames of a window
in parallel (a recurrent network steps frame by frame), which keeps both training through the
physics core and single-window inference fast on a CPU.

:class:`SynergyHead` turns the network's raw outputs into excitations that share the structure of
the measured muscles: each muscle's excitation is a non-negative combination of the synergy
activations of the measured excitations (as in synergy extrapolation), with weights that the
network modulates over time within a bounded factor, plus a small bounded residual.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from musculo.errors import EstimatorError


class _CausalBlock(nn.Module):
    """Residual block: causal dilated convolution, GELU, 1x1 convolution."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.pad = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(channels, channels, kernel_size, dilation=dilation)
        self.mix = nn.Conv1d(channels, channels, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(F.pad(x, (self.pad, 0)))
        h = self.mix(F.gelu(h))
        return x + self.dropout(F.gelu(h))


class CausalTCN(nn.Module):
    """Causal temporal convolutional network with a sigmoid output (excitations in [0, 1]).

    Args:
        n_inputs: features per frame.
        n_outputs: excitations per frame.
        channels: hidden channels.
        kernel_size: convolution width (frames).
        dilations: dilation of each residual block; the receptive field is
            ``1 + (kernel_size - 1) * sum(dilations)`` frames.
        dropout: dropout inside the residual blocks (training only).
        init_excitation: the output every frame starts at (the output bias is its logit), so that
            an untrained network predicts small, physiological excitations.
        linear_output: return the raw outputs (no sigmoid, zero output bias), e.g. for a
            :class:`SynergyHead`; ``init_excitation`` is then unused.
    """

    def __init__(
        self,
        *,
        n_inputs: int,
        n_outputs: int,
        channels: int = 32,
        kernel_size: int = 3,
        dilations: Sequence[int] = (1, 2, 4),
        dropout: float = 0.0,
        init_excitation: float = 0.05,
        linear_output: bool = False,
    ):
        super().__init__()
        if n_inputs < 1 or n_outputs < 1:
            raise EstimatorError(
                f"network: needs at least one input and one output feature (got {n_inputs}, {n_outputs}); "
                "check that the subject has measured muscles or tracked coordinates and unmeasured muscles"
            )
        if kernel_size < 1 or channels < 1 or any(d < 1 for d in dilations):
            raise EstimatorError(
                f"nmm: channels ({channels}), kernel_size ({kernel_size}) and dilations ({list(dilations)}) "
                "must be positive; fix the nmm section of the config"
            )
        if not 0.0 < init_excitation < 1.0:
            raise EstimatorError(f"nmm.init_excitation: {init_excitation} must lie in (0, 1)")
        self.n_inputs = int(n_inputs)
        self.n_outputs = int(n_outputs)
        self.kernel_size = int(kernel_size)
        self.dilations = tuple(int(d) for d in dilations)
        self.inp = nn.Conv1d(n_inputs, channels, 1)
        self.blocks = nn.ModuleList(_CausalBlock(channels, kernel_size, d, dropout) for d in self.dilations)
        self.linear_output = bool(linear_output)
        self.out = nn.Conv1d(channels, n_outputs, 1)
        with torch.no_grad():
            self.out.weight.mul_(0.1)
            self.out.bias.fill_(0.0 if linear_output else math.log(init_excitation / (1.0 - init_excitation)))

    @property
    def receptive_field(self) -> int:
        """Frames (current included) that one output frame depends on."""
        return 1 + (self.kernel_size - 1) * sum(self.dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Excitations (B, T, n_outputs) in [0, 1] (raw outputs with ``linear_output``) from features
        (B, T, n_inputs)."""
        if x.dim() != 3 or x.shape[-1] != self.n_inputs:
            raise EstimatorError(
                f"network input: expected (batch, time, {self.n_inputs}), got {tuple(x.shape)}"
            )
        h = self.inp(x.transpose(1, 2))
        for block in self.blocks:
            h = block(h)
        out = self.out(h).transpose(1, 2)
        return out if self.linear_output else torch.sigmoid(out)


class SynergyHead(nn.Module):
    """Excitations from synergy activations with time-varying, bounded non-negative weights.

    ``u[m](t) = clip(sum_k w[m, k] exp(modulation * tanh(g[m, k](t))) h[k](t)
    + residual_bound * tanh(r[m](t)), 0, 1)``, where ``w = softplus(weight_raw)`` are learned static
    weights (one per muscle and synergy), ``h`` the synergy activations of the measured excitations
    and ``g``, ``r`` the network's raw outputs. With ``modulation = 0`` and ``residual_bound = 0``
    this is synergy extrapolation with constant weights.

    Args:
        n_muscles: excitations per frame (M).
        n_synergies: synergy activations per frame (k).
        modulation: largest log-factor by which the network scales a static weight.
        residual_bound: largest absolute residual excitation added per muscle.
        init_weight: starting value of every static weight.
    """

    def __init__(self, *, n_muscles: int, n_synergies: int, modulation: float = 0.5,
                 residual_bound: float = 0.05, init_weight: float = 0.1):
        super().__init__()
        if n_muscles < 1 or n_synergies < 1:
            raise EstimatorError(
                f"synergy head: needs at least one muscle and one synergy (got {n_muscles}, {n_synergies}); "
                "check that the subject has measured muscles"
            )
        if modulation < 0 or residual_bound < 0 or init_weight <= 0:
            raise EstimatorError(
                f"nmm: synergy_modulation ({modulation}) and residual_bound ({residual_bound}) must be >= 0 "
                f"and the initial weight ({init_weight}) > 0; fix the nmm section of the config"
            )
        self.n_muscles = int(n_muscles)
        self.n_synergies = int(n_synergies)
        self.modulation = float(modulation)
        self.residual_bound = float(residual_bound)
        inv = math.log(math.expm1(init_weight))  # softplus^-1
        self.weight_raw = nn.Parameter(torch.full((self.n_muscles, self.n_synergies), inv))

    @property
    def n_raw(self) -> int:
        """Raw network outputs the head reads per frame: M x k modulations + M residuals."""
        return self.n_muscles * (self.n_synergies + 1)

    def forward(self, raw: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
        """Excitations (B, T, M) in [0, 1] from raw outputs (B, T, n_raw) and activations (B, T, k)."""
        b, t, _ = raw.shape
        m, k = self.n_muscles, self.n_synergies
        mod = raw[..., : m * k].reshape(b, t, m, k)
        res = raw[..., m * k:]
        w = F.softplus(self.weight_raw) * torch.exp(self.modulation * torch.tanh(mod))
        u = (w * activations.unsqueeze(2)).sum(-1) + self.residual_bound * torch.tanh(res)
        return torch.clamp(u, 0.0, 1.0)
