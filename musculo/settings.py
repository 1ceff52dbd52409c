"""Typed settings: the validated configuration parsed once into frozen objects.

The config schema (``musculo/schemas/config.schema.yaml``) is the only place defaults live: every
object here is built from a section that the schema has validated and filled, so the package called
from Python, from the command line or from Snakemake applies the same science. Build the whole set
with :func:`load_settings` (files) or :meth:`Settings.from_config` (a mapping, e.g. Snakemake's
``config``), or one section with the class's ``from_config(overrides)``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Self

from musculo.config import _merge, load_config, validate
from musculo.errors import ConfigError


def config_section(name: str, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Section ``name`` of the config with ``values`` over the schema's defaults, validated."""
    cfg = validate({name: copy.deepcopy(dict(values or {}))}, "config", source=f"config section {name}")
    return cfg[name]


@dataclass(frozen=True)
class Section:
    """A config section as a frozen object; its fields are exactly the schema's keys."""

    SECTION: ClassVar[str] = ""

    @classmethod
    def from_config(cls, values: Mapping[str, Any] | None = None) -> Self:
        """Build from a (possibly partial) mapping; missing keys take the schema's defaults."""
        section = config_section(cls.SECTION, values)
        names = {f.name for f in fields(cls)}
        if set(section) != names:
            raise ConfigError(  # a developer error: the schema and this class disagree
                f"config section {cls.SECTION}: schema keys {sorted(set(section) ^ names)} "
                f"are not fields of {cls.__name__} (or the other way round)")
        return cls(**{k: _frozen(v) for k, v in section.items()})

    def to_dict(self) -> dict[str, Any]:
        """The section as plain JSON-serialisable values (lists for tuples)."""
        return _thawed(asdict(self))


def _frozen(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return {k: _frozen(v) for k, v in value.items()}
    return value


def as_physics(physics: PhysicsSettings | Mapping[str, Any] | None) -> PhysicsSettings:
    """``physics`` as settings: a (partial) mapping is completed with the schema's defaults."""
    return physics if isinstance(physics, PhysicsSettings) else PhysicsSettings.from_config(physics)


def _thawed(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_thawed(v) for v in value]
    if isinstance(value, dict):
        return {k: _thawed(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class PhysicsSettings(Section):
    """Config section ``physics``: the differentiable muscle model and its calibration."""

    SECTION: ClassVar[str] = "physics"
    bounds: dict[str, tuple[float, float]]
    muscle_bounds: dict[str, dict[str, tuple[float, float]]]
    deactivation_ratio: float
    use_delay: bool
    tau_act: float
    shape: float
    delay: float
    calibrate: tuple[str, ...]
    calibration_max_iter: int
    calibration_trials: int
    window: str
    prior_weight: float


@dataclass(frozen=True)
class MSESettings(Section):
    """Config section ``mse``: muscle synergy extrapolation."""

    SECTION: ClassVar[str] = "mse"
    n_synergies: int | None
    vaf_threshold: float
    max_synergies: int
    magnitude_weight: float
    residuals: bool
    residual_bound: float
    max_iter: int
    calibrate_physics: bool
    moment_tolerance: float
    trial_gain: bool
    trial_gain_bounds: tuple[float, float]


@dataclass(frozen=True)
class NMMSettings(Section):
    """Config section ``nmm``: the neural musculoskeletal model (see the schema for each key)."""

    SECTION: ClassVar[str] = "nmm"
    window: float
    stride: float
    max_windows: int
    batch_size: int
    epochs: int
    patience: int
    val_fraction: float
    learning_rate: float
    physics_learning_rate: float
    weight_decay: float
    grad_clip: float
    channels: int
    kernel_size: int
    dilations: tuple[int, ...]
    dropout: float
    input_dropout: float
    init_excitation: float
    kinematics_inputs: bool
    moment_weight: float
    consistency_weight: float
    smoothness_weight: float
    magnitude_weight: float
    physics_parameters: tuple[str, ...]
    output: str
    n_synergies: int | None
    vaf_threshold: float
    max_synergies: int
    synergy_modulation: float
    residual_bound: float
    threads: int
    start_from_calibration: bool
    fold_calibration: bool
    ensemble: int


@dataclass(frozen=True)
class PICNNSettings(Section):
    """Config section ``picnn``: the physics-informed CNN and its generic-to-personal transfer."""

    SECTION: ClassVar[str] = "picnn"
    window: int
    stride: int
    channels: int
    kernel_size: int
    hidden: int
    dropout: float
    epochs: int
    min_steps: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    angle_weight: float
    force_weight: float
    physics_weight: float
    threads: int
    finetune_epochs: int
    finetune_min_steps: int
    finetune_learning_rate: float
    shares: tuple[float, ...]
    selections: tuple[str, ...]
    cohorts: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class EvaluationSettings(Section):
    """Config section ``evaluation``: the methods compared and the held-out protocol."""

    SECTION: ClassVar[str] = "evaluation"
    methods: tuple[str, ...]
    plugins: tuple[str, ...]
    n_folds: int
    n_segments: int


@dataclass(frozen=True)
class AttentionSettings(Section):
    """Config section ``attention``: the synergy + multi-scale self-attention moment estimator."""

    SECTION: ClassVar[str] = "attention"
    window: float
    stride: float
    max_windows: int
    batch_size: int
    epochs: int
    patience: int
    val_fraction: float
    learning_rate: float
    weight_decay: float
    kinematics_inputs: bool
    input_dropout: float
    threads: int
    channels: int
    kernel_size: int
    scales: tuple[int, ...]
    heads: int
    attention_window: float
    dropout: float
    activation_tau: float
    n_synergies: int | None
    vaf_threshold: float
    max_synergies: int
    adversarial: bool
    adversarial_weight: float
    discriminator_hidden: int


@dataclass(frozen=True)
class RealtimeSettings(Section):
    """Config section ``realtime``: the causal multi-task (moments + activity) streaming estimator."""

    SECTION: ClassVar[str] = "realtime"
    window: float
    stride: float
    max_windows: int
    batch_size: int
    epochs: int
    patience: int
    val_fraction: float
    learning_rate: float
    weight_decay: float
    kinematics_inputs: bool
    input_dropout: float
    threads: int
    channels: int
    expansion: int
    kernel_size: int
    dilations: tuple[int, ...]
    se_frames: int
    activity_weight: float
    chunk: float


@dataclass(frozen=True)
class Settings:
    """The sections the estimators and the evaluation read, plus the whole validated mapping."""

    seed: int
    physics: PhysicsSettings
    mse: MSESettings
    nmm: NMMSettings
    evaluation: EvaluationSettings
    raw: dict[str, Any]
    picnn: PICNNSettings
    attention: AttentionSettings
    realtime: RealtimeSettings

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, overrides: Mapping[str, Any] | None = None
    ) -> Settings:
        """Validate ``config`` (defaults filled) with ``overrides`` (a subject's ``config``) over it."""
        merged = _merge(copy.deepcopy(dict(config)), copy.deepcopy(dict(overrides or {})))
        cfg = validate(merged, "config", source="config" + (" + subject overrides" if overrides else ""))
        return cls(
            seed=int(cfg["seed"]), physics=PhysicsSettings.from_config(cfg["physics"]),
            mse=MSESettings.from_config(cfg["mse"]), nmm=NMMSettings.from_config(cfg["nmm"]),
            evaluation=EvaluationSettings.from_config(cfg["evaluation"]), raw=cfg,
            picnn=PICNNSettings.from_config(cfg["picnn"]),
            attention=AttentionSettings.from_config(cfg["attention"]),
            realtime=RealtimeSettings.from_config(cfg["realtime"]),
        )

    @classmethod
    def typed_sections(cls) -> list[str]:
        """Names of the config sections held as typed objects."""
        return [f.name for f in fields(cls) if f.name not in ("seed", "raw")]

    def section(self, name: str) -> Any:
        """A typed section by name (see :meth:`typed_sections`), else the section's raw mapping."""
        return getattr(self, name) if name in self.typed_sections() else self.raw[name]


def load_settings(
    path: str | os.PathLike[str] = "config/config.yaml",
    overlays: Iterable[str | os.PathLike[str]] = (),
    *,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Settings from the config file plus overlays (e.g. ``config/ci.yaml``) and subject overrides."""
    return Settings.from_config(load_config(path, overlays), overrides=overrides)
