"""Differentiable EMG-driven Hill-type muscle model in torch, batched over sequences and time.

excitation u (B, T, M) -> [EMG gain, electromechanical delay] -> first-order activation dynamics
(time constant ``tau_act`` when rising, ``deactivation_ratio * tau_act`` when falling) -> activation
non-linearity ``a ** (1 - A)`` (A = 0: linear) -> rigid-tendon Hill fibre force from the scaled
model's own parameters (max isometric force, optimal fibre length, tendon slack length, pennation at
constant fibre height) with the smooth active force-length, passive force-length and force-velocity
curves of De Groote et al. (2016, Ann Biomed Eng 44:2922) -> tendon force F (B, T, M) ->
joint moments ``sum_m moment_arm[m, c] * F[m]`` (B, T, C).

Subject-specific parameters are bounded: each is ``lo + (hi - lo) * sigmoid(raw)`` with an
unconstrained ``raw``, so gradient steps can never leave the physiological range.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from musculo.errors import EstimatorError
from musculo.physics.data import MuscleParameters, TrialData
from musculo.settings import PhysicsSettings, as_physics

DTYPE = torch.float64

# De Groote et al. 2016 curve constants.
_FL_B = (
    (0.815, 1.055, 0.162, 0.063),
    (0.433, 0.717, -0.030, 0.200),
    (0.100, 1.000, 0.354, 0.000),
)
_FP_KPE, _FP_E0 = 4.0, 0.6
_FV_D = (-0.318, -8.149, -0.374, 0.886)


def active_force_length(norm_length: torch.Tensor) -> torch.Tensor:
    """Active force-length multiplier (1 at optimal fibre length) of a normalised fibre length."""
    out = torch.zeros_like(norm_length)
    for b1, b2, b3, b4 in _FL_B:
        out = out + b1 * torch.exp(-0.5 * (norm_length - b2) ** 2 / (b3 + b4 * norm_length) ** 2)
    return out


def passive_force_length(norm_length: torch.Tensor) -> torch.Tensor:
    """Passive force-length multiplier: 0 up to optimal fibre length, 1 at 1.6 x optimal."""
    raw = (torch.exp(_FP_KPE * (norm_length - 1.0) / _FP_E0) - 1.0) / (math.exp(_FP_KPE) - 1.0)
    return torch.clamp(raw, min=0.0)


def force_velocity(norm_velocity: torch.Tensor) -> torch.Tensor:
    """Force-velocity multiplier of a fibre velocity normalised by the maximum (lengthening > 0).

    About 1 when isometric, 0 at maximum shortening velocity (-1), up to about 1.8 lengthening.
    """
    d1, d2, d3, d4 = _FV_D
    v = torch.clamp(norm_velocity, -1.0, 1.0)
    return d1 * torch.asinh(d2 * v + d3) + d4


@dataclass(frozen=True)
class PhysicsBounds:
    """Lower and upper bounds of the subject-specific parameters (config ``physics.bounds``)."""

    strength_scale: tuple[float, float]
    optimal_fiber_length_scale: tuple[float, float]
    tendon_slack_length_scale: tuple[float, float]
    tau_act: tuple[float, float]
    shape: tuple[float, float]
    emg_gain: tuple[float, float]
    delay: tuple[float, float]

    @classmethod
    def from_config(cls, bounds: Mapping[str, Any] | None = None) -> PhysicsBounds:
        """Build from a mapping name -> [lo, hi]; missing names take the schema's defaults."""
        given = dict(bounds or {})
        unknown = set(given) - set(cls.__dataclass_fields__)
        if unknown:
            raise EstimatorError(f"physics.bounds: unknown parameters {sorted(unknown)}; "
                                 f"known: {sorted(cls.__dataclass_fields__)}")
        full = {**PhysicsSettings.from_config().bounds, **given}
        return cls(**{k: (float(v[0]), float(v[1])) for k, v in full.items()})


class Bounded(nn.Module):
    """A tensor parameter kept in [lo, hi] through a sigmoid of an unconstrained ``raw`` tensor."""

    def __init__(self, lo: float | np.ndarray, hi: float | np.ndarray, init: float | np.ndarray,
                 shape: tuple[int, ...] = ()):
        super().__init__()
        lo_a, hi_a = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
        if not np.all(lo_a < hi_a):
            raise EstimatorError(f"bounds [{lo}, {hi}]: lower bound must be below the upper bound")
        self.register_buffer("lo", torch.as_tensor(lo_a, dtype=DTYPE))
        self.register_buffer("hi", torch.as_tensor(hi_a, dtype=DTYPE))
        self.raw = nn.Parameter(torch.zeros(shape, dtype=DTYPE))
        self.set(init)

    @property
    def value(self) -> torch.Tensor:
        """The bounded value."""
        return self.lo + (self.hi - self.lo) * torch.sigmoid(self.raw)

    @torch.no_grad()
    def set(self, value: float | np.ndarray | torch.Tensor) -> None:
        """Set the value (clipped just inside the bounds)."""
        v = torch.as_tensor(np.asarray(value, dtype=float), dtype=DTYPE).expand_as(self.raw)
        frac = ((v - self.lo) / (self.hi - self.lo)).clamp(1e-6, 1 - 1e-6)
        self.raw.copy_(torch.logit(frac))


def per_muscle_bounds(
    muscles: Sequence[str], default: tuple[float, float], patterns: Mapping[str, Sequence[float]]
) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) arrays (M,): ``default`` for every muscle, overridden by the first pattern of
    ``patterns`` (regular expression searched in the name, case-insensitive) a muscle matches."""
    lo = np.full(len(muscles), float(default[0]))
    hi = np.full(len(muscles), float(default[1]))
    for i, name in enumerate(muscles):
        for pattern, (p_lo, p_hi) in patterns.items():
            try:
                hit = re.search(pattern, name, flags=re.IGNORECASE)
            except re.error as exc:
                raise EstimatorError(
                    f"physics.muscle_bounds: {pattern!r} is not a regular expression ({exc})") from exc
            if hit:
                lo[i], hi[i] = float(p_lo), float(p_hi)
                break
    return lo, hi


class MuscleOutput(NamedTuple):
    """Output of :meth:`MuscleModel.forward`."""

    moments: torch.Tensor  # (B, T, C) N m
    activation: torch.Tensor  # (B, T, M)
    force: torch.Tensor  # (B, T, M) N, along the tendon


class MuscleModel(nn.Module):
    """EMG-driven Hill-type model of M muscles with bounded subject-specific parameters.

    Per-muscle parameters: ``strength_scale`` (x max isometric force), ``optimal_fiber_length_scale``,
    ``tendon_slack_length_scale``, ``emg_gain`` (applied only to muscles whose excitation is EMG,
    see ``gain_mask`` in :meth:`forward`). Shared parameters: ``tau_act`` (s), ``shape`` (activation
    non-linearity A), ``delay`` (s, electromechanical delay; used only when ``use_delay``).
    Deactivation time constant = ``deactivation_ratio * tau_act``.

    All parameters are trainable by default; use :meth:`set_trainable` to choose.
    """

    PER_MUSCLE = ("strength_scale", "optimal_fiber_length_scale", "tendon_slack_length_scale", "emg_gain")
    SHARED = ("tau_act", "shape", "delay")

    def __init__(
        self,
        params: MuscleParameters,
        muscles: list[str],
        *,
        bounds: PhysicsBounds | None = None,
        muscle_bounds: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
        deactivation_ratio: float = 4.0,
        use_delay: bool = False,
        tau_act: float = 0.015,
        shape: float = 0.0,
        delay: float = 0.0,
    ):
        super().__init__()
        self.muscles = list(muscles)
        m = len(self.muscles)
        b = bounds or PhysicsBounds.from_config()
        self.bounds = b
        self.deactivation_ratio = float(deactivation_ratio)
        self.use_delay = bool(use_delay)
        for key in ("max_isometric_force", "optimal_fiber_length", "tendon_slack_length",
                    "pennation_angle", "max_contraction_velocity"):
            arr = np.asarray(getattr(params, key), dtype=float)
            if arr.shape != (m,):
                raise EstimatorError(f"muscle parameter {key}: shape {arr.shape}, expected ({m},)")
            self.register_buffer(key, torch.as_tensor(arr, dtype=DTYPE))
        for key in self.PER_MUSCLE:
            lo, hi = per_muscle_bounds(self.muscles, getattr(b, key), (muscle_bounds or {}).get(key, {}))
            setattr(self, key, Bounded(lo, hi, 1.0, (m,)))
        self.tau_act = Bounded(*b.tau_act, tau_act)
        self.shape = Bounded(*b.shape, shape)
        self.delay = Bounded(*b.delay, delay)
        self.delay.raw.requires_grad_(self.use_delay)

    # -- parameters -------------------------------------------------------------------------
    def set_trainable(self, names: Iterable[str]) -> None:
        """Make only the parameters ``names`` (of PER_MUSCLE + SHARED) trainable."""
        names = set(names)
        unknown = names - set(self.PER_MUSCLE + self.SHARED)
        if unknown:
            raise EstimatorError(f"physics.calibrate: unknown parameters {sorted(unknown)}")
        for key in self.PER_MUSCLE + self.SHARED:
            getattr(self, key).raw.requires_grad_(key in names and (key != "delay" or self.use_delay))

    def change_penalty(self) -> Callable[[], torch.Tensor]:
        """A prior on the trainable parameters, from their values now.

        The returned function gives the mean, over the trainable parameters, of their mean squared
        change since this call as a fraction of their bound range (0 when nothing is trainable).
        Weighted by ``physics.prior_weight`` (calibration and MSE fits) it keeps a fit from
        trading an excitation for a strength (or a gain, a fibre length) further than the data demand.
        """
        trainable = [getattr(self, k) for k in self.PER_MUSCLE + self.SHARED
                     if getattr(self, k).raw.requires_grad]
        start = [b.value.detach().clone() for b in trainable]

        def penalty() -> torch.Tensor:
            if not trainable:
                return torch.zeros((), dtype=DTYPE)
            terms = [(((b.value - s0) / (b.hi - b.lo)) ** 2).mean() for b, s0 in zip(trainable, start,
                                                                                   strict=True)]
            return torch.stack(terms).mean()

        return penalty

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable parameter values (per-muscle values keyed by muscle name)."""
        out: dict[str, Any] = {"muscles": self.muscles, "deactivation_ratio": self.deactivation_ratio,
                               "use_delay": self.use_delay, "bounds": asdict(self.bounds)}
        for key in self.PER_MUSCLE:
            vals = getattr(self, key).value.detach().cpu().numpy()
            out[key] = {mu: float(v) for mu, v in zip(self.muscles, vals, strict=True)}
        for key in self.SHARED:
            out[key] = float(getattr(self, key).value.detach())
        return out

    def load_dict(self, values: dict[str, Any]) -> None:
        """Set parameter values from :meth:`to_dict` output; muscles absent from it keep theirs."""
        for key in self.PER_MUSCLE:
            given = values.get(key, {})
            cur = getattr(self, key).value.detach().cpu().numpy().copy()
            for i, mu in enumerate(self.muscles):
                if mu in given:
                    cur[i] = float(given[mu])
            getattr(self, key).set(cur)
        for key in self.SHARED:
            if key in values:
                getattr(self, key).set(float(values[key]))

    # -- the model --------------------------------------------------------------------------
    def activation(self, excitation: torch.Tensor, dt: float) -> torch.Tensor:
        """Activation (B, T, M) from excitation (B, T, M): delay, first-order dynamics, non-linearity.

        The initial activation equals the first excitation (steady state).
        """
        u = excitation
        if self.use_delay:
            u = _delay(u, self.delay.value / dt)
        tau_a = self.tau_act.value
        alpha_a = 1.0 - torch.exp(-dt / tau_a)
        alpha_d = 1.0 - torch.exp(-dt / (self.deactivation_ratio * tau_a))
        act = first_order_activation(u, alpha_a, alpha_d)
        return self.nonlinearity(act)

    def nonlinearity(self, activation: torch.Tensor) -> torch.Tensor:
        """Activation non-linearity ``a ** (1 - A)`` (concave for A > 0, identity for A = 0)."""
        return torch.clamp(activation, min=1e-6) ** (1.0 - self.shape.value)

    def force(
        self, activation: torch.Tensor, mtu_length: torch.Tensor, mtu_velocity: torch.Tensor
    ) -> torch.Tensor:
        """Tendon force (N) of a rigid-tendon Hill muscle; all arguments (B, T, M) or broadcastable."""
        lopt = self.optimal_fiber_length * self.optimal_fiber_length_scale.value
        lts = self.tendon_slack_length * self.tendon_slack_length_scale.value
        height = lopt * torch.sin(self.pennation_angle)
        along = torch.clamp(mtu_length - lts, min=1e-3 * lopt)
        fiber = torch.sqrt(along**2 + height**2)
        cos_pen = along / fiber
        norm_len = fiber / lopt
        norm_vel = mtu_velocity * cos_pen / (self.max_contraction_velocity * lopt)
        f_iso = self.max_isometric_force * self.strength_scale.value
        fiber_force = activation * active_force_length(norm_len) * force_velocity(norm_vel) \
            + passive_force_length(norm_len)
        return f_iso * fiber_force * cos_pen

    @staticmethod
    def moments(force: torch.Tensor, moment_arm: torch.Tensor) -> torch.Tensor:
        """Joint moments (B, T, C) = sum over muscles of moment_arm (B, T, M, C) x force (B, T, M)."""
        return torch.einsum("btmc,btm->btc", moment_arm, force)

    def forward(
        self,
        excitation: torch.Tensor,
        mtu_length: torch.Tensor,
        mtu_velocity: torch.Tensor,
        moment_arm: torch.Tensor,
        dt: float,
        *,
        gain_mask: torch.Tensor | None = None,
    ) -> MuscleOutput:
        """Moments, activations and forces from excitations.

        Args:
            excitation: (B, T, M) excitation of every modelled muscle, 0..1.
            mtu_length, mtu_velocity: (B, T, M) or (T, M).
            moment_arm: (B, T, M, C) or (T, M, C).
            dt: sampling interval (s).
            gain_mask: (M,) bool, muscles whose excitation is measured EMG (their ``emg_gain``
                applies); None means no gain.
        """
        if excitation.dim() != 3:
            raise EstimatorError(f"excitation: expected (B, T, M), got shape {tuple(excitation.shape)}")
        bsz = excitation.shape[0]
        if mtu_length.dim() == 2:
            mtu_length = mtu_length.expand(bsz, *mtu_length.shape)
            mtu_velocity = mtu_velocity.expand(bsz, *mtu_velocity.shape)
        if moment_arm.dim() == 3:
            moment_arm = moment_arm.expand(bsz, *moment_arm.shape)
        u = excitation
        if gain_mask is not None:
            g = self.emg_gain.value
            gain = torch.where(gain_mask.to(torch.bool), g, torch.ones_like(g))
            u = torch.clamp(u * gain, 0.0, 1.0)
        act = self.activation(u, dt)
        force = self.force(act, mtu_length, mtu_velocity)
        return MuscleOutput(self.moments(force, moment_arm), act, force)


class _FirstOrder(torch.autograd.Function):
    """``a[t] = a[t-1] + (u[t] - a[t-1]) * (alpha_a if u[t] > a[t-1] else alpha_d)``, ``a[0] = u[0]``.

    The recursion runs as a NumPy loop over time (vectorised over batch and muscles) and its
    gradient as the reverse-time adjoint loop, instead of one autograd node per frame.
    """

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, alpha_a: torch.Tensor, alpha_d: torch.Tensor) -> torch.Tensor:
        un = u.detach().cpu().numpy()
        aa, ad = float(alpha_a), float(alpha_d)
        out = np.empty_like(un)
        rising = np.zeros(un.shape, dtype=bool)
        a = un[:, 0].copy()
        out[:, 0] = a
        for t in range(1, un.shape[1]):
            up = un[:, t] > a
            rising[:, t] = up
            a = a + (un[:, t] - a) * np.where(up, aa, ad)
            out[:, t] = a
        ctx.save_for_backward(u, alpha_a, alpha_d)
        ctx.np_cache = (un, out, rising, aa, ad)
        return torch.as_tensor(out, dtype=u.dtype, device=u.device)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        u, alpha_a, alpha_d = ctx.saved_tensors
        un, out, rising, aa, ad = ctx.np_cache
        g = grad.detach().cpu().numpy()
        grad_u = np.zeros_like(un)
        grad_aa = 0.0
        grad_ad = 0.0
        lam = g[:, -1].copy()
        for t in range(un.shape[1] - 1, 0, -1):
            up = rising[:, t]
            alpha = np.where(up, aa, ad)
            grad_u[:, t] = lam * alpha
            d_alpha = lam * (un[:, t] - out[:, t - 1])
            grad_aa += float(d_alpha[up].sum())
            grad_ad += float(d_alpha[~up].sum())
            lam = g[:, t - 1] + lam * (1.0 - alpha)
        grad_u[:, 0] = lam

        def as_t(x: Any, like: torch.Tensor) -> torch.Tensor:
            return torch.as_tensor(x, dtype=like.dtype, device=like.device).reshape(like.shape)

        return (as_t(grad_u, u) if ctx.needs_input_grad[0] else None,
                as_t(grad_aa, alpha_a) if ctx.needs_input_grad[1] else None,
                as_t(grad_ad, alpha_d) if ctx.needs_input_grad[2] else None)


def first_order_activation(u: torch.Tensor, alpha_a: torch.Tensor, alpha_d: torch.Tensor) -> torch.Tensor:
    """First-order activation dynamics of excitations ``u`` (B, T, M), differentiable.

    ``alpha_a`` / ``alpha_d`` (scalar tensors) are the per-frame gains ``1 - exp(-dt / tau)`` of
    rising and falling activation; the initial activation equals the first excitation.
    """
    if u.shape[1] == 0:
        return u
    return _FirstOrder.apply(u, torch.as_tensor(alpha_a, dtype=u.dtype),
                             torch.as_tensor(alpha_d, dtype=u.dtype))


def _delay(u: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """u(t - shift) along dim 1 with linear interpolation (shift in frames, differentiable)."""
    n = int(torch.floor(shift.detach()).item())
    frac = shift - n
    pad = u[:, :1].expand(-1, n + 1, -1)
    padded = torch.cat([pad, u], dim=1)
    t_len = u.shape[1]
    now = padded[:, 1:1 + t_len]  # u(t - n)
    before = padded[:, 0:t_len]  # u(t - n - 1)
    return (1 - frac) * now + frac * before


@dataclass(frozen=True)
class TrialTensors:
    """A trial's arrays as torch tensors with a batch dimension of one."""

    excitation: torch.Tensor  # (1, T, M)
    mtu_length: torch.Tensor  # (1, T, M)
    mtu_velocity: torch.Tensor  # (1, T, M)
    moment_arm: torch.Tensor  # (1, T, M, C)
    id_moment: torch.Tensor  # (1, T, C)
    measured: torch.Tensor  # (M,) bool
    dt: float


def trial_tensors(trial: TrialData) -> TrialTensors:
    """Convert a :class:`TrialData` to tensors for :class:`MuscleModel`."""

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(x), dtype=DTYPE).unsqueeze(0)

    return TrialTensors(
        excitation=t(trial.excitation), mtu_length=t(trial.mtu_length), mtu_velocity=t(trial.mtu_velocity),
        moment_arm=t(trial.moment_arm), id_moment=t(trial.id_moment),
        measured=torch.as_tensor(trial.measured, dtype=torch.bool), dt=trial.dt,
    )


def muscle_model(
    params: MuscleParameters, muscles: Sequence[str], *, physics: PhysicsSettings
) -> MuscleModel:
    """The :class:`MuscleModel` of ``muscles`` with the settings of config section ``physics``.

    The one place a muscle model is built from settings: the estimators' fits and their ``load``
    go through it, so a saved estimator comes back with the physics it was fitted with.
    """
    return MuscleModel(
        params, list(muscles), bounds=PhysicsBounds.from_config(physics.bounds),
        muscle_bounds=physics.muscle_bounds, deactivation_ratio=physics.deactivation_ratio,
        use_delay=physics.use_delay,
        tau_act=physics.tau_act, shape=physics.shape, delay=physics.delay,
    )


def model_for(trial: TrialData, *, physics: PhysicsSettings | Mapping[str, Any] | None = None,
              calibration: Mapping[str, Any] | None = None) -> MuscleModel:
    """A :class:`MuscleModel` for a trial's muscles from the ``physics`` settings and a calibration.

    ``physics`` None (or a partial mapping) takes the schema's defaults for what it does not give.
    ``calibration`` is the content of ``calibration.json`` (its ``parameters`` entry, or the
    parameter dict itself).
    """
    model = muscle_model(trial.params, trial.muscles, physics=as_physics(physics))
    if calibration:
        model.load_dict(calibration.get("parameters", calibration))
    return model
