"""musculo: an OpenSim-coupled pipeline from raw lab recordings to deep-muscle excitations."""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("musculo")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

logger = logging.getLogger("musculo")
logger.addHandler(logging.NullHandler())

__all__ = ["__version__", "logger"]
