"""TRC marker files: read and write through OpenSim's own TRC adapter."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musculo.errors import InputDataError
from musculo.io.atomic import atomic_output


@dataclass
class MarkerData:
    """Marker trajectories: ``data`` is (T, M, 3), NaN where a marker is missing."""

    time: np.ndarray
    labels: list[str]
    data: np.ndarray
    units: str
    rate: float


def read_trc(path: str | os.PathLike[str]) -> MarkerData:
    """Read a TRC file with OpenSim's ``TimeSeriesTableVec3`` (units from its header)."""
    import opensim

    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"{path}: TRC file not found")
    try:
        table = opensim.TimeSeriesTableVec3(str(path))
    except Exception as exc:  # OpenSim raises RuntimeError with its own message
        raise InputDataError(f"{path}: OpenSim cannot read this TRC file ({exc})") from exc
    labels = list(table.getColumnLabels())
    time = np.asarray(table.getIndependentColumn(), dtype=float)
    flat_table = table.flatten()  # keep a reference: the matrix view dies with its table
    data = np.array(flat_table.getMatrix().to_numpy(), dtype=float).reshape(len(time), len(labels), 3)
    meta = table.getTableMetaDataKeys()
    units = table.getTableMetaDataAsString("Units").strip() if "Units" in meta else "mm"
    rate = (
        float(table.getTableMetaDataAsString("DataRate"))
        if "DataRate" in meta
        else (1.0 / float(np.median(np.diff(time))) if len(time) > 1 else 0.0)
    )
    return MarkerData(time=time, labels=labels, data=data, units=units, rate=rate)


def write_trc(
    path: str | os.PathLike[str],
    *,
    time: np.ndarray,
    labels: list[str],
    data: np.ndarray,
    units: str = "mm",
    rate: float | None = None,
) -> Path:
    """Write marker trajectories (T, M, 3) as a TRC that OpenSim's tools read, atomically.

    Missing samples (NaN) stay NaN: OpenSim's inverse kinematics leaves such markers out of those
    frames.
    """
    import opensim

    path = Path(path)
    time = np.asarray(time, dtype=float)
    data = np.asarray(data, dtype=float)
    if data.shape != (len(time), len(labels), 3):
        raise ValueError(
            f"marker data shape {data.shape} does not match {len(time)} times x {len(labels)} labels"
        )
    if rate is None:
        rate = 1.0 / float(np.median(np.diff(time))) if len(time) > 1 else 1.0
    table = opensim.TimeSeriesTableVec3()
    table.setColumnLabels(list(labels))
    for i, t in enumerate(time):
        row = opensim.RowVectorVec3(len(labels))
        for j in range(len(labels)):
            x, y, z = data[i, j]
            row[j] = opensim.Vec3(float(x), float(y), float(z))
        table.appendRow(float(t), row)
    table.addTableMetaDataString("DataRate", f"{rate:g}")
    table.addTableMetaDataString("CameraRate", f"{rate:g}")
    table.addTableMetaDataString("Units", units)
    with atomic_output(path) as tmp:
        opensim.TRCFileAdapter.write(table, str(tmp))
        # the first header line names the file: give the final name, not the temporary one
        text = tmp.read_text()
        first, sep, rest = text.partition("\n")
        tmp.write_text(first.replace(tmp.name, path.name) + sep + rest)
    return path
