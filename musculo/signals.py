"""Zero-phase Butterworth filters shared by trial import, EMG processing and the digital twins.

Every filter of musculo is a SciPy second-order-sections Butterworth run forwards and backwards
(``sosfiltfilt``), so the same cut-off means the same filter everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import signal

from musculo.errors import InputDataError


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous True runs of ``mask`` as [start, stop) index pairs."""
    padded = np.concatenate([[False], np.asarray(mask).astype(bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(int)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _sos(order: int, cutoff: float | Sequence[float], *, rate: float, btype: str) -> np.ndarray:
    return signal.butter(int(order), cutoff, btype=btype, fs=float(rate), output="sos")


def lowpass(x: np.ndarray, *, rate: float, cutoff: float, order: int = 4, axis: int = 0) -> np.ndarray:
    """Zero-phase Butterworth low-pass along ``axis``.

    Returns ``x`` unchanged when the cut-off is at or above Nyquist or the series is too short
    for the filter's padding (a handful of samples).
    """
    x = np.asarray(x, dtype=float)
    if cutoff >= 0.5 * rate:
        return x
    sos = _sos(order, cutoff, rate=rate, btype="low")
    padlen = 3 * (2 * len(sos) + 1)
    if x.shape[axis] <= padlen:
        return x
    return signal.sosfiltfilt(sos, x, axis=axis)


def band_edges(rate: float, band: Sequence[float]) -> tuple[float, float]:
    """``band`` (Hz) with its upper edge capped at 0.95 x Nyquist; an empty band is an error."""
    low, high = float(band[0]), min(float(band[1]), 0.95 * 0.5 * rate)
    if not 0 < low < high:
        raise InputDataError(f"band {list(band)} Hz is empty at a sampling rate of {rate} Hz; "
                             "lower the band's upper edge or check the analog rate")
    return low, high


def bandpass(
    x: np.ndarray, *, rate: float, band: Sequence[float], order: int = 4, axis: int = 0
) -> np.ndarray:
    """Zero-phase Butterworth band-pass along ``axis`` (upper edge capped, see :func:`band_edges`)."""
    sos = _sos(order, band_edges(rate, band), rate=rate, btype="bandpass")
    return signal.sosfiltfilt(sos, np.asarray(x, dtype=float), axis=axis)


def envelope(
    x: np.ndarray, *, rate: float, band: Sequence[float] = (20.0, 450.0), cutoff: float = 6.0, order: int = 4
) -> np.ndarray:
    """Linear envelope along axis 0: band-pass, full-wave rectification, zero-phase low-pass."""
    rect = np.abs(bandpass(x, rate=rate, band=band, order=order))
    return signal.sosfiltfilt(_sos(order, cutoff, rate=rate, btype="low"), rect, axis=0)
