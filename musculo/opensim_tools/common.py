"""Helpers shared by the OpenSim stages: errors, input checks, time windows, publishing outputs.

Every stage runs one OpenSim tool into a private temporary folder beside its outputs, checks what
the tool wrote, and only then moves the files onto their final names (each move atomic), so a
failed or implausible run never leaves a half result where a later stage would take it.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from musculo import logger
from musculo.errors import InputDataError, OpenSimToolError
from musculo.io.atomic import atomic_output

PathLike = str | os.PathLike[str]


class ModelFileError(OpenSimToolError):
    """A model file (.osim) does not exist or cannot be loaded."""


class MarkerNotInModelError(OpenSimToolError):
    """A marker named in a marker set, measurement set or task set is absent from the model."""


class TooFewMarkersError(OpenSimToolError):
    """A marker trial has too few usable markers for the requested tool."""


class ImplausibleScaleError(OpenSimToolError):
    """Scaling produced a scale factor outside the configured bounds."""


class MarkerErrorTooLargeError(OpenSimToolError):
    """Marker error after scaling (or IK) is over the configured limit."""


class OutputCheckError(OpenSimToolError):
    """An OpenSim tool finished but its outputs are missing or not sane."""


def import_opensim() -> Any:
    """Import OpenSim with its default ``./opensim.log`` file sink removed.

    OpenSim's console messages then go to the process's stdout, which a workflow job redirects
    into its own log (:func:`musculo.log.job_logging`).
    """
    import opensim

    opensim.Logger.removeFileSink()
    return opensim


def route_opensim_log(log: PathLike | None, *, level: str = "Info") -> Any:
    """Import OpenSim and send its log to ``log`` (or only to stdout when ``None``)."""
    opensim = import_opensim()
    if log is not None:
        from musculo.log import opensim_log_to

        Path(log).parent.mkdir(parents=True, exist_ok=True)
        opensim_log_to(log, level=level)
    else:
        opensim.Logger.setLevelString(level)
    return opensim


def require_file(path: PathLike | None, *, what: str, field: str) -> Path:
    """Return ``path`` as an absolute Path, or raise naming the field when it is not a file."""
    if path is None or str(path) == "":
        raise InputDataError(f"{field}: no {what} given; pass the path of the {what}")
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise InputDataError(f"{field}: {what} {resolved} does not exist; check the path")
    return resolved


def load_model(path: PathLike, *, field: str = "model") -> Any:
    """Load an OpenSim model after checking the file exists (a bad path can crash OpenSim)."""
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise ModelFileError(
            f"{field}: model file {resolved} does not exist; check the path in the subject file "
            f"(model) or run the stage that writes it"
        )
    opensim = import_opensim()
    try:
        model = opensim.Model(str(resolved))
        model.initSystem()
    except Exception as exc:  # OpenSim raises RuntimeError subclasses with its own message
        raise ModelFileError(
            f"{field}: OpenSim cannot load model {resolved}: {exc}; is it a valid .osim file?"
        ) from exc
    return model


def time_window(
    times: Sequence[float] | np.ndarray,
    *,
    time_range: Sequence[float] | None = None,
    max_frames: int | None = None,
    source: PathLike = "",
) -> tuple[float, float]:
    """Return ``(start, end)`` within ``times``, limited by ``time_range`` and ``max_frames``.

    ``time_range`` is clipped to the data; ``max_frames`` (if positive) keeps only the first
    frames of that window, for short runs.
    """
    t = np.asarray(times, dtype=float)
    if t.size == 0:
        raise InputDataError(f"{source}: no frames")
    lo, hi = float(t[0]), float(t[-1])
    if time_range is not None:
        if len(time_range) != 2 or not time_range[0] < time_range[1]:
            raise InputDataError(f"time_range {list(time_range)} must be [start, end] with start < end")
        lo, hi = max(lo, float(time_range[0])), min(hi, float(time_range[1]))
        if not lo < hi:
            raise InputDataError(
                f"{source}: time_range {list(time_range)} does not overlap the data "
                f"({t[0]:.3f}-{t[-1]:.3f} s); fix the trial's time_range"
            )
    inside = t[(t >= lo - 1e-9) & (t <= hi + 1e-9)]
    if max_frames is not None and max_frames > 0 and inside.size > max_frames:
        hi = float(inside[max_frames - 1])
        inside = inside[:max_frames]
    if inside.size < 2:
        raise InputDataError(f"{source}: the window {lo:.3f}-{hi:.3f} s holds fewer than 2 frames")
    return float(inside[0]), float(inside[-1])


def table_times(path: PathLike) -> np.ndarray:
    """Times of an OpenSim table file (.trc, .mot or .sto)."""
    opensim = import_opensim()
    p = str(path)
    table = opensim.TimeSeriesTableVec3(p) if p.lower().endswith(".trc") else opensim.TimeSeriesTable(p)
    return np.asarray(table.getIndependentColumn(), dtype=float)


def table_span(path: PathLike) -> list[float]:
    """``[first, last]`` time of an OpenSim table file: the window a later stage analyses."""
    t = table_times(path)
    if t.size < 2:
        raise InputDataError(f"{path}: fewer than 2 frames; rerun the stage that wrote it")
    return [float(t[0]), float(t[-1])]


@contextlib.contextmanager
def work_dir(near: PathLike) -> Iterator[Path]:
    """A private temporary folder in the folder of ``near`` (same file system), removed after."""
    parent = Path(near).resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".opensim-", dir=parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(pairs: Sequence[tuple[PathLike, PathLike]]) -> None:
    """Move each finished temporary file onto its final name (atomically, one by one)."""
    for src, dst in pairs:
        with atomic_output(dst) as tmp:
            shutil.copyfile(src, tmp)
        logger.info("wrote %s", dst)


def publish_dir(src: PathLike, dst: PathLike) -> None:
    """Replace folder ``dst`` with a copy of ``src``, atomically."""
    with atomic_output(dst, is_dir=True) as tmp:
        shutil.rmtree(tmp)
        shutil.copytree(src, tmp)
    logger.info("wrote %s/", dst)


def check_table(
    path: PathLike,
    *,
    tool: str,
    columns: Sequence[str] = (),
    min_rows: int = 2,
    bounds: tuple[float, float] | None = None,
    bounded_columns: Sequence[str] | None = None,
) -> Any:
    """Read an OpenSim output table and check it is sane; return the DataFrame.

    Checks: the file exists, has at least ``min_rows`` rows, holds ``columns``, has only finite
    values, and (optionally) values of ``bounded_columns`` within ``bounds``.
    """
    from musculo.io.tables import read_sto

    p = Path(path)
    if not p.is_file():
        raise OutputCheckError(f"{tool}: OpenSim wrote no {p.name}; see the job log for its error")
    df = read_sto(p)
    if len(df) < min_rows:
        raise OutputCheckError(f"{tool}: {p.name} has {len(df)} rows, expected at least {min_rows}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise OutputCheckError(f"{tool}: {p.name} lacks columns {missing}")
    values = df.to_numpy(dtype=float)
    if not np.all(np.isfinite(values)):
        bad = [c for c in df.columns if not np.all(np.isfinite(df[c].to_numpy(dtype=float)))]
        raise OutputCheckError(f"{tool}: {p.name} has non-finite values in {bad[:10]}")
    if bounds is not None:
        cols = list(bounded_columns) if bounded_columns is not None else list(df.columns)
        sub = df[cols].to_numpy(dtype=float)
        if sub.size and (sub.min() < bounds[0] - 1e-6 or sub.max() > bounds[1] + 1e-6):
            raise OutputCheckError(
                f"{tool}: {p.name} values outside {list(bounds)} (min {sub.min():.4g}, max {sub.max():.4g})"
            )
    return df


def free_coordinates(model: Any) -> list[str]:
    """Names of the model's coordinates that are neither locked nor prescribed/constrained."""
    state = model.initSystem()
    names = []
    for coord in model.getCoordinateSet():
        if coord.getLocked(state) or coord.isConstrained(state) or coord.get_prescribed():
            continue
        names.append(coord.getName())
    return names


def root_coordinates(model: Any) -> list[str]:
    """Coordinates of the joint(s) connecting a body to ground (the residual coordinates)."""
    names: list[str] = []
    for joint in model.getJointSet():
        if joint.getParentFrame().findBaseFrame().getName() == "ground" and joint.numCoordinates() > 0:
            names += [joint.get_coordinates(i).getName() for i in range(joint.numCoordinates())]
    return names


def is_rotational(model: Any, coordinate: str) -> bool:
    """Whether a model coordinate is a rotation (radians) rather than a translation (m)."""
    coord = model.getCoordinateSet().get(coordinate)
    return coord.getMotionType() == 1  # Coordinate.Rotational


def stats(values: np.ndarray) -> dict[str, float]:
    """RMS and maximum absolute value of an array (NaNs ignored)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"rms": math.nan, "max_abs": math.nan}
    return {"rms": float(np.sqrt(np.mean(v**2))), "max_abs": float(np.max(np.abs(v)))}
