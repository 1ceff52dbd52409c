"""Workflow entry points: the stage functions with their model and setup files read from inputs.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from musculo.errors import InputDataError
from musculo.opensim_tools.common import PathLike
from musculo.opensim_tools.ik import run_ik
from musculo.opensim_tools.scale import scale_model


def read_inputs(path: PathLike) -> dict[str, Any]:
    """The resolved input paths written by the fetch stage (``results/<s>/inputs.json``)."""
    p = Path(path)
    if not p.is_file():
        raise InputDataError(f"{p}: file not found; run the fetch stage first")
    data = json.loads(p.read_text())
    for key in ("model", "marker_set"):
        if not data.get(key):
            raise InputDataError(f"{p}: field {key!r} is empty; set it in the subject file")
    return data


def trial_window(*, subject: Any, trial: str, default: list[float] | None = None) -> list[float] | None:
    """The trial's own ``time_range`` (s) from the subject file, else ``default``."""
    for t in subject.trials:
        if t.name == trial and t.time_range:
            return list(t.time_range)
    return default


def scale_subject(*, inputs_json: PathLike, **kwargs: Any) -> dict[str, Any]:
    """:func:`scale_model` with the generic model, marker set and scale setup of ``inputs_json``."""
    data = read_inputs(inputs_json)
    return scale_model(
        generic_model=data["model"],
        marker_set=data["marker_set"],
        scale_setup=data.get("scale_setup"),
        **kwargs,
    )


def ik_trial(*, inputs_json: PathLike, **kwargs: Any) -> dict[str, Any]:
    """:func:`run_ik` with the subject's IK task set (``ik_tasks`` of ``inputs_json``) if any."""
    data = read_inputs(inputs_json)
    return run_ik(task_set=data.get("ik_tasks"), **kwargs)
