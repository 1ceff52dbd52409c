"""The estimator registry: method name -> how to build it, what it reads and which config section it takes.

Every method of the comparison (the ``null`` floor, OpenSim static optimisation, MSE, NMM, and any
estimator added later) goes through one evaluation driver (:func:`musculo.evaluation.run_evaluation`)
and one workflow rule (``estimate``, generic over ``{method}``). Adding an estimator is one module
with an :class:`~musculo.estimators.base.Estimator` subclass, one :func:`register` call and, if it
has hyper-parameters, one config section. Modules named in the config key ``evaluation.plugins`` are
imported by :func:`load_plugins`, so an estimator outside the package registers itself the same way.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from musculo.errors import ConfigError
from musculo.estimators.base import Estimator
from musculo.settings import Settings

Factory = Callable[..., Estimator]


@dataclass(frozen=True)
class EstimatorSpec:
    """How the evaluation builds and feeds one method.

    Attributes:
        name: the ``method`` column of ``evaluation.tsv`` and the ``{method}`` of the workflow.
        factory: ``factory(settings, *, calibration=None) -> Estimator`` (unfitted). ``calibration``
            is the content of the subject's ``calibration.json`` and is passed only to the
            deployable estimator fitted on every trial after the folds, never to a fold.
        needs_emg: the method reads EMG excitations; subjects without usable EMG are recorded as
            "not fitted" instead of failing.
        needs_so: the trials carry OpenSim static optimisation's activations (``so_activation.sto``).
        uses_calibration: whether the deployable estimator starts from ``calibration.json``
            (a function of the settings, e.g. of a config switch).
        muscle_set: ``subject`` models the subject's measured + unmeasured muscles, ``model`` every
            muscle of the scaled model.
        description: one line for documentation and reports.
    """

    name: str
    factory: Factory
    needs_emg: bool = True
    needs_so: bool = False
    uses_calibration: Callable[[Settings], bool] = lambda settings: False
    muscle_set: str = "subject"
    description: str = ""


_REGISTRY: dict[str, EstimatorSpec] = {}


def register(spec: EstimatorSpec, *, replace: bool = False) -> EstimatorSpec:
    """Add ``spec`` to the registry (an existing name needs ``replace=True``)."""
    if spec.muscle_set not in ("subject", "model"):
        raise ConfigError(f"estimator {spec.name!r}: muscle_set must be 'subject' or 'model'")
    if spec.name in _REGISTRY and not replace:
        raise ConfigError(f"estimator {spec.name!r} is registered already; pass replace=True to override it")
    _REGISTRY[spec.name] = spec
    return spec


def load_plugins(modules: Iterable[str]) -> None:
    """Import the modules of config ``evaluation.plugins`` (each registers its estimators)."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(
                f"evaluation.plugins: cannot import {name!r} ({exc}); put the module on PYTHONPATH or "
                "remove it from the config") from exc


def get(name: str) -> EstimatorSpec:
    """The spec of a registered method; an unknown name lists the known ones."""
    _builtins()
    if name not in _REGISTRY:
        raise ConfigError(
            f"evaluation.methods: unknown estimator {name!r}; registered: {sorted(_REGISTRY)} "
            "(an estimator of your own needs a register() call in a module listed in evaluation.plugins)")
    return _REGISTRY[name]


def names() -> list[str]:
    """Every registered method name."""
    _builtins()
    return sorted(_REGISTRY)


def specs(methods: Iterable[str]) -> Mapping[str, EstimatorSpec]:
    """Specs of ``methods`` in order (each must be registered)."""
    return {m: get(m) for m in methods}


_LOADED = False


def _builtins() -> None:
    """Register the package's own estimators (on first use, so importing the registry stays light)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from musculo.estimators import attention, mse, nmm, null, picnn, realtime, so

    for module in (null, so, mse, nmm, picnn, attention, realtime):
        spec: EstimatorSpec = module.SPEC
        _REGISTRY.setdefault(spec.name, spec)


def build(name: str, settings: Settings, **kwargs: Any) -> Estimator:
    """An unfitted estimator of method ``name`` from the settings (see :attr:`EstimatorSpec.factory`)."""
    return get(name).factory(settings, **kwargs)
