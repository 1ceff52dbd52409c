"""C3D reading with ezc3d: markers, analog channels, force plates and events, with clean labels.

Everything a C3D holds is returned in lab coordinates and SI-friendly units: marker positions in mm
(converted from ``POINT:UNITS``), force-plate forces in N, centres of pressure in m, free moments in
N m. Times honour the file's first frame, so markers, analogs and events share one clock.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from musculo import logger
from musculo.errors import InputDataError

_UNIT_TO_MM = {"mm": 1.0, "m": 1000.0, "cm": 10.0, "dm": 100.0, "in": 25.4}
_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


MODEL_OUTPUT_GROUPS = ("ANGLES", "FORCES", "MOMENTS", "POWERS", "SCALARS", "REACTIONS")
"""POINT parameters listing the points that are model outputs (Vicon Plug-in Gait and the like)."""


def clean_labels(labels: list[str], *, drop_prefix: bool = True) -> list[str]:
    """Return labels usable as file columns and YAML keys, unique, in the same order.

    Leading/trailing blanks are removed, a ``Subject:`` prefix is dropped (``drop_prefix``), runs of
    other characters than letters, digits, ``_ . -`` become ``_``, an empty label becomes ``ch<i>``,
    and repeated labels get ``_2``, ``_3``... in order of appearance.
    """
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(labels):
        text = str(raw).strip()
        if drop_prefix and ":" in text:
            text = text.rsplit(":", 1)[1].strip()
        text = _BAD_CHARS.sub("_", text).strip("_") or f"ch{i + 1}"
        if text in seen:
            seen[text] += 1
            text = f"{text}_{seen[text]}"
        else:
            seen[text] = 1
        out.append(text)
    return out


@dataclass
class ForcePlate:
    """One force plate, in lab coordinates, sampled at the analog rate."""

    number: int
    force: np.ndarray  # (N, 3) N, as ezc3d returns it: the reaction on the body (up in stance)
    cop: np.ndarray  # (N, 3) m (NaN when ezc3d leaves it undefined)
    free_moment: np.ndarray  # (N, 3) N m, about the centre of pressure
    corners: np.ndarray  # (4, 3) m
    origin: np.ndarray  # (3,) m


@dataclass
class C3DData:
    """Content of a C3D file, cleaned; see :func:`read_c3d`."""

    path: Path
    marker_labels: list[str]
    markers: np.ndarray  # (T, M, 3) mm, NaN where missing
    marker_rate: float
    first_frame: int
    analog_labels: list[str]
    analog: np.ndarray  # (N, C) scaled values
    analog_rate: float
    analog_units: list[str]
    plates: list[ForcePlate] = field(default_factory=list)
    events: list[tuple[str, str, float]] = field(default_factory=list)  # (context, label, time s)
    processing: dict[str, float] = field(default_factory=dict)

    @property
    def time(self) -> np.ndarray:
        """Marker sample times (s), starting at first_frame / rate."""
        return (self.first_frame + np.arange(self.markers.shape[0])) / self.marker_rate

    @property
    def analog_time(self) -> np.ndarray:
        """Analog sample times (s), on the same clock as :attr:`time`."""
        return self.first_frame / self.marker_rate + np.arange(self.analog.shape[0]) / self.analog_rate


def _param(params: dict, group: str, name: str, default=None):
    try:
        return params[group][name]["value"]
    except (KeyError, TypeError):
        return default


def _labels(params: dict, group: str) -> list[str]:
    """LABELS, then LABELS2, LABELS3... (files with more than 255 channels split them)."""
    out = list(_param(params, group, "LABELS", []) or [])
    k = 2
    while (more := _param(params, group, f"LABELS{k}")) is not None:
        out += list(more)
        k += 1
    return out


def _announced_frames(path: Path, first_frame: int) -> int | None:
    """Frame count written in the C3D header (words 4-5: first and last frame, 1-based).

    ezc3d adjusts its own header to the frames it could read, so a truncated file is detected by
    comparing with the bytes on disk. The byte order is the one in which word 4 matches ezc3d's
    first frame; ``None`` when neither does or the 16-bit last frame has overflowed.
    """
    with open(path, "rb") as handle:
        head = handle.read(10)
    for order in ("little", "big"):
        first = int.from_bytes(head[6:8], order)
        last = int.from_bytes(head[8:10], order)
        if first == first_frame + 1 and last >= first:
            return last - first + 1
    return None


def read_c3d(path: str | os.PathLike[str], *, plates: bool = True) -> C3DData:
    """Read a C3D file with ezc3d.

    Markers at exactly (0, 0, 0) or NaN are missing (NaN). Analog values are ezc3d's scaled values
    (SCALE x GEN_SCALE, offsets removed). Raises :class:`InputDataError` for an unreadable or
    truncated file (fewer frames than its header announces).
    """
    import ezc3d

    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"{path}: C3D file not found")
    try:
        c3d = ezc3d.c3d(str(path), extract_forceplat_data=plates)
    except Exception as exc:  # ezc3d raises RuntimeError/IOError variants
        raise InputDataError(f"{path}: ezc3d cannot read this C3D file ({exc}); is it a C3D file?") from exc
    params = c3d["parameters"]
    header = c3d["header"]
    points = np.asarray(c3d["data"]["points"], dtype=float)
    n_frames = points.shape[2]
    expected = _announced_frames(path, int(header["points"]["first_frame"]))
    if expected is not None and n_frames != expected:
        raise InputDataError(
            f"{path}: the file header announces {expected} frames but the file holds {n_frames}: the "
            "file is truncated or corrupt; export it again from the capture software"
        )
    rate = float(header["points"]["frame_rate"])
    analog_rate = float(header["analogs"]["frame_rate"])
    analog = np.asarray(c3d["data"]["analogs"], dtype=float)[0].T  # (N, C)
    if not rate > 0:
        raise InputDataError(f"{path}: POINT:RATE is {rate}; the marker rate must be positive")
    param_rate = _param(params, "ANALOG", "RATE")
    if analog.shape[1] and param_rate is not None and np.size(param_rate):
        declared = float(np.ravel(param_rate)[0])
        if declared > 0 and abs(declared - analog_rate) > 1e-6 * max(declared, 1.0):
            raise InputDataError(
                f"{path}: ANALOG:RATE says {declared:g} Hz but the file stores "
                f"{analog_rate / rate:g} analog samples per {rate:g} Hz frame ({analog_rate:g} Hz): "
                "the analog rate is inconsistent; export the file again from the capture software"
            )
    if analog.shape[1] and analog_rate > 0 and abs(analog_rate / rate - round(analog_rate / rate)) > 1e-6:
        raise InputDataError(
            f"{path}: analog rate {analog_rate:g} Hz is not a whole multiple of the marker rate "
            f"{rate:g} Hz, which a C3D requires; the file is corrupt"
        )
    if analog.shape[1] and analog_rate > 0:
        n_expected = round(n_frames * analog_rate / rate)
        if abs(analog.shape[0] - n_expected) > max(1, analog_rate / rate):
            raise InputDataError(
                f"{path}: {analog.shape[0]} analog samples for {n_frames} frames at {analog_rate}/{rate} Hz "
                f"(expected about {n_expected}): the file is truncated or corrupt"
            )
    units = str((_param(params, "POINT", "UNITS", ["mm"]) or ["mm"])[0]).strip().lower()
    if units not in _UNIT_TO_MM:
        raise InputDataError(f"{path}: POINT:UNITS is {units!r}; expected one of {sorted(_UNIT_TO_MM)}")
    xyz = points[:3].transpose(2, 1, 0) * _UNIT_TO_MM[units]  # (T, M, 3) mm
    zero = np.all(xyz == 0.0, axis=2)
    xyz[zero] = np.nan
    raw_labels = _labels(params, "POINT")[: xyz.shape[1]]
    # unlabelled trajectories (Vicon writes them as '*<n>') are not markers of the subject, nor are
    # the model outputs stored as points (angles, forces, moments, powers, scalars): drop them
    outputs = {str(v).strip() for group in MODEL_OUTPUT_GROUPS
               for v in (_param(params, "POINT", group, []) or [])}
    named = [j for j, lab in enumerate(raw_labels)
             if not str(lab).strip().startswith("*") and str(lab).strip() not in outputs]
    if len(named) < len(raw_labels):
        logger.debug("%s: %d unlabelled trajectories ('*n') and model outputs left out", path.name,
                     len(raw_labels) - len(named))
        xyz = xyz[:, named, :]
    marker_labels = clean_labels([raw_labels[j] for j in named])
    analog_labels = clean_labels(_labels(params, "ANALOG"), drop_prefix=False)[: analog.shape[1]]
    analog_units = [str(u).strip() for u in (_param(params, "ANALOG", "UNITS", []) or [])]
    data = C3DData(
        path=path,
        marker_labels=marker_labels,
        markers=xyz,
        marker_rate=rate,
        first_frame=int(header["points"]["first_frame"]),
        analog_labels=analog_labels,
        analog=analog,
        analog_rate=analog_rate,
        analog_units=analog_units,
    )
    if plates:
        for i, pf in enumerate(c3d["data"]["platform"], start=1):
            pos = str(pf["unit_position"]).strip().lower()
            to_m = _UNIT_TO_MM.get(pos, 1.0) / 1000.0
            mom = str(pf["unit_moment"]).strip().lower()
            to_nm = 1e-3 if mom.endswith("mm") else 1.0
            data.plates.append(
                ForcePlate(
                    number=i,
                    force=np.asarray(pf["force"], dtype=float).T,
                    cop=np.asarray(pf["center_of_pressure"], dtype=float).T * to_m,
                    free_moment=np.asarray(pf["Tz"], dtype=float).T * to_nm,
                    corners=np.asarray(pf["corners"], dtype=float).T * to_m,
                    origin=np.asarray(pf["origin"], dtype=float) * to_m,
                )
            )
    times = _param(params, "EVENT", "TIMES")
    if times is not None and np.size(times):
        times = np.asarray(times, dtype=float).reshape(2, -1)
        contexts = list(_param(params, "EVENT", "CONTEXTS", []) or [])
        labels = list(_param(params, "EVENT", "LABELS", []) or [])
        for j in range(min(times.shape[1], len(labels))):
            ctx = contexts[j].strip() if j < len(contexts) else ""
            data.events.append((ctx, labels[j].strip(), float(times[0, j] * 60.0 + times[1, j])))
    proc = params.get("PROCESSING", {})
    for key, val in proc.items():
        if isinstance(val, dict) and "value" in val:
            arr = np.asarray(val["value"])
            if arr.size == 1 and np.issubdtype(arr.dtype, np.number):
                data.processing[key] = float(arr.ravel()[0])
    logger.debug(
        "%s: %d markers at %g Hz, %d analogs at %g Hz, %d plates",
        path.name,
        len(marker_labels),
        rate,
        len(analog_labels),
        analog_rate,
        len(data.plates),
    )
    return data
