"""OpenSim stages: scaling, inverse kinematics, inverse dynamics, static optimization, muscle analysis.

Each public function runs one OpenSim tool and writes its outputs atomically, with the resolved
setup XML beside them. A failing OpenSim tool can kill the interpreter, so callers that must
survive one (tests, the CLI) use :func:`run_isolated`, which runs the tool in a child process
(``python -m musculo.opensim_tools <tool> --json args.json``) and re-raises its error.
"""

from __future__ import annotations

from musculo.opensim_tools.common import (
    ImplausibleScaleError,
    MarkerErrorTooLargeError,
    MarkerNotInModelError,
    ModelFileError,
    OutputCheckError,
    TooFewMarkersError,
)
from musculo.opensim_tools.isolated import TOOLS, run_isolated

__all__ = [
    "TOOLS",
    "ImplausibleScaleError",
    "MarkerErrorTooLargeError",
    "MarkerNotInModelError",
    "ModelFileError",
    "OutputCheckError",
    "TooFewMarkersError",
    "run_isolated",
]
