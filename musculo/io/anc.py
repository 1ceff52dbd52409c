"""ANC files: ASCII analog recordings (Motion Analysis "Analog R/C ASCII"), as in rajagopal-walk."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from musculo.errors import InputDataError


@dataclass
class AnalogData:
    """Analog channels: ``data`` is (N, C) in volts, sampled at ``rate`` from ``time[0]``."""

    time: np.ndarray
    labels: list[str]
    data: np.ndarray
    rate: float


def read_anc(path: str | os.PathLike[str]) -> AnalogData:
    """Read an ANC file.

    The header's ``Name``, ``Rate`` and ``Range`` rows give each channel's label, rate (Hz) and
    input range (mV); values are signed integers of ``BitDepth`` bits and are converted to volts
    (``value / 2**(BitDepth-1) * Range / 1000``). The first column is time (s).
    """
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"{path}: ANC file not found")
    lines = path.read_text(errors="replace").splitlines()
    header: dict[str, list[str]] = {}
    bit_depth = 16
    start = None
    for i, line in enumerate(lines):
        cells = line.strip().split("\t")
        key = cells[0].strip()
        if "BitDepth:" in line:
            parts = line.split()
            bit_depth = int(parts[parts.index("BitDepth:") + 1])
        if key in ("Name", "Rate", "Range"):
            header[key] = [c.strip() for c in cells[1:] if c.strip()]
            if key == "Range":
                start = i + 1
                break
    if start is None or "Name" not in header or "Rate" not in header:
        raise InputDataError(f"{path}: no Name/Rate/Range header rows; is this an ANC file?")
    labels = header["Name"]
    try:
        table = pd.read_csv(path, sep=r"\s+", skiprows=start, header=None, engine="c").to_numpy(float)
    except Exception as exc:
        raise InputDataError(f"{path}: the data rows after the header cannot be read ({exc})") from exc
    if table.shape[1] < len(labels) + 1:
        raise InputDataError(f"{path}: {table.shape[1] - 1} data columns for {len(labels)} channel names")
    rates = {float(r) for r in header["Rate"]}
    if len(rates) != 1:
        raise InputDataError(f"{path}: channels have different rates {sorted(rates)}; resample them first")
    ranges = np.array([float(r) for r in header.get("Range", ["1000"] * len(labels))], dtype=float)
    volts = table[:, 1 : len(labels) + 1] / 2 ** (bit_depth - 1) * ranges / 1000.0
    return AnalogData(time=table[:, 0], labels=labels, data=volts, rate=rates.pop())
