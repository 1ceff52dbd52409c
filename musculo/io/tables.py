"""OpenSim text tables (.sto / .mot): read into pandas, write from pandas.

The format: header lines (a name, ``version=1``, ``nRows``, ``nColumns``, ``inDegrees``), then
``endheader``, then a tab-separated table whose first column is ``time``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from musculo.errors import InputDataError
from musculo.io.atomic import atomic_output


def read_sto(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read an OpenSim .sto/.mot file into a DataFrame indexed by ``time``.

    The header's key=value pairs are kept in ``df.attrs`` (``inDegrees`` among them).
    """
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"{path}: file not found")
    attrs: dict[str, str] = {}
    with open(path) as handle:
        for n_header, line in enumerate(handle, start=1):  # noqa: B007 - used after the loop
            text = line.strip()
            if text.lower() == "endheader":
                break
            if "=" in text:
                key, _, value = text.partition("=")
                attrs[key.strip()] = value.strip()
        else:
            raise InputDataError(f"{path}: no 'endheader' line; is this an OpenSim .sto/.mot file?")
    df = pd.read_csv(path, sep=r"\s+", skiprows=n_header, engine="c")
    if "time" not in df.columns:
        raise InputDataError(f"{path}: the first column is {df.columns[0]!r}, expected 'time'")
    df = df.set_index("time")
    df.attrs.update(attrs)
    return df


def covers(times: np.ndarray, start: float, end: float) -> bool:
    """Whether a table's ``times`` span ``start``-``end``, give or take one of its samples.

    OpenSim's ID, AnalyzeTool and JointReaction resample a coordinates file with uneven times
    (60 Hz rounded) on a grid of their own, shifted by up to one sample from the file's frames, and
    tools round times differently (-1e-6 for 0): a table is held to cover a window when it reaches
    within one sample (at least 1e-6 s) of each end. Values there are interpolated or held.
    """
    t = np.asarray(times, dtype=float)
    if len(t) < 2:
        return False
    slack = max(1e-6, float(np.median(np.diff(t))))
    return bool(t[0] <= start + slack and t[-1] >= end - slack)


def in_degrees(df: pd.DataFrame) -> bool:
    """Whether a table read by :func:`read_sto` declares its angles in degrees."""
    return str(df.attrs.get("inDegrees", "no")).lower() == "yes"


def write_sto(
    path: str | os.PathLike[str],
    df: pd.DataFrame,
    *,
    name: str | None = None,
    in_degrees: bool = False,
    precision: int = 8,
) -> Path:
    """Write ``df`` (index = time in s) as an OpenSim table, atomically."""
    path = Path(path)
    values = np.asarray(df.to_numpy(dtype=float))
    time = np.asarray(df.index, dtype=float)
    header = [
        name or path.stem,
        "version=1",
        f"nRows={len(df)}",
        f"nColumns={df.shape[1] + 1}",
        f"inDegrees={'yes' if in_degrees else 'no'}",
        "endheader",
        "\t".join(["time", *map(str, df.columns)]),
    ]
    with atomic_output(path) as tmp, open(tmp, "w") as handle:
        handle.write("\n".join(header) + "\n")
        np.savetxt(
            handle, np.column_stack([time, values]), delimiter="\t", fmt=f"%.{precision}g"
        )
    return path


EVALUATION_COLUMNS = ["subject", "trial", "method", "quantity", "channel", "metric", "value"]


def write_evaluation_table(table: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a long-format evaluation table (:data:`EVALUATION_COLUMNS`) as TSV, atomically.

    The float format is fixed, so that reruns write identical files.
    """
    with atomic_output(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g", na_rep="nan")
