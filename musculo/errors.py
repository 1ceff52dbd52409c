"""Error types of musculo.

Every error says which file and which field are at fault and what to do about it, so that a lab can
fix its input without reading the code.
"""

from __future__ import annotations


class MusculoError(Exception):
    """Base class of every error musculo raises on purpose."""


class ConfigError(MusculoError):
    """The configuration file is invalid."""


class SubjectFileError(MusculoError):
    """A subject.yaml is invalid or refers to something that does not exist."""


class DatasetError(MusculoError):
    """A registered dataset file cannot be found, fetched or verified."""


class ChecksumError(DatasetError):
    """A file's sha256 differs from the one in the dataset registry."""


class InputDataError(MusculoError):
    """A raw recording (C3D, TRC, MOT, ANC) is unreadable or inconsistent."""


class OpenSimToolError(MusculoError):
    """An OpenSim tool failed or produced implausible results."""


class EstimatorError(MusculoError):
    """An estimator was misused (e.g. predict before fit) or cannot be fitted."""
