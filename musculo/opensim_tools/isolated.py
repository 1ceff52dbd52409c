"""Run one OpenSim stage in a child process and bring back its result or its error."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from musculo import errors as _errors
from musculo.opensim_tools import common as _common

#: tool name -> (module, function)
TOOLS: dict[str, tuple[str, str]] = {
    "scale": ("musculo.opensim_tools.scale", "scale_model"),
    "ik": ("musculo.opensim_tools.ik", "run_ik"),
    "id": ("musculo.opensim_tools.inverse_dynamics", "run_id"),
    "so": ("musculo.opensim_tools.static_optimization", "run_so"),
    "muscle_analysis": ("musculo.opensim_tools.muscle_analysis", "run_muscle_analysis"),
    "path_fit": ("musculo.opensim_tools.path_fit", "fit_paths"),
    "muscle_analysis_polynomial": ("musculo.opensim_tools.path_fit", "run_polynomial_muscle_analysis"),
    "so_batched": ("musculo.opensim_tools.batched_so", "run_batched_so"),
    "joint_reaction": ("musculo.opensim_tools.joint_reaction", "run_joint_reaction"),
    "quality": ("musculo.opensim_tools.quality", "write_quality_table"),
}


def tool_function(tool: str) -> Any:
    """The public function behind a tool name."""
    if tool not in TOOLS:
        raise _errors.OpenSimToolError(f"unknown tool {tool!r}; known tools: {', '.join(TOOLS)}")
    module, name = TOOLS[tool]
    return getattr(importlib.import_module(module), name)


def error_class(name: str) -> type[_errors.MusculoError]:
    """The musculo error class called ``name`` (OpenSimToolError when unknown)."""
    for module in (_common, _errors):
        cls = getattr(module, name, None)
        if isinstance(cls, type) and issubclass(cls, _errors.MusculoError):
            return cls
    return _errors.OpenSimToolError


def _output_dirs(kwargs: dict[str, Any]) -> set[Path]:
    dirs = set()
    for key, value in kwargs.items():
        if isinstance(value, str | os.PathLike) and (key.endswith("_out") or key.startswith("output")):
            dirs.add(Path(value).resolve().parent)
    return dirs


def _temp_dirs(dirs: set[Path]) -> set[Path]:
    return {p for d in dirs if d.is_dir() for p in d.glob(".opensim-*")}


def run_isolated(tool: str, *, timeout: float | None = None, **kwargs: Any) -> Any:
    """Run ``tool`` (see :data:`TOOLS`) with keyword arguments in a child Python process.

    Returns the tool's (JSON) result. A musculo error in the child is raised again here with its
    own class; a crash (e.g. a segmentation fault inside OpenSim) raises
    :class:`musculo.errors.OpenSimToolError`, and temporary folders it left are removed.
    """
    tool_function(tool)  # fail early on an unknown tool
    outs = _output_dirs(kwargs)
    before = _temp_dirs(outs)
    with tempfile.TemporaryDirectory(prefix="musculo-opensim-") as tmp:
        args, result = Path(tmp) / "args.json", Path(tmp) / "result.json"
        args.write_text(json.dumps(kwargs, default=str))
        cmd = [
            sys.executable,
            "-m",
            "musculo.opensim_tools",
            tool,
            "--json",
            str(args),
            "--result",
            str(result),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        payload = json.loads(result.read_text()) if result.is_file() else None
    if proc.returncode == 0 and payload is not None:
        return payload.get("result")
    for leftover in _temp_dirs(outs) - before:
        shutil.rmtree(leftover, ignore_errors=True)
    if payload is not None and "error" in payload:
        raise error_class(payload["error"])(payload["message"])
    how = (
        f"was killed by signal {signal.Signals(-proc.returncode).name}"
        if proc.returncode < 0
        else f"exited with status {proc.returncode}"
    )
    tail = "\n".join((proc.stderr or proc.stdout or "").splitlines()[-15:])
    raise _errors.OpenSimToolError(f"OpenSim tool {tool!r} {how}; last output:\n{tail}")
