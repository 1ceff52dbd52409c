"""Gait events of a trial (``events.json``, written at import): the foot contacts per foot.

The import finds each foot's contacts on the force plates and merges in the gait events the C3D
file itself carries, which also mark foot strikes off the plates.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from musculo.errors import InputDataError
from musculo.io.tables import read_sto

PathLike = str | os.PathLike[str]
GroundReactions = PathLike | pd.DataFrame
"""A trial's ``grf.mot``: its path, or the table :func:`musculo.io.tables.read_sto` read from it."""


PLATE_THRESHOLD = 20.0
"""N: a foot is on a plate while its vertical ground reaction exceeds this (the import's default)."""

EVENT_TOLERANCE = 0.05
"""s: a foot's stance by its events and its load on a plate may disagree this close to an event."""


def stance(side: Mapping[str, Sequence[float]], times: np.ndarray) -> np.ndarray | None:
    """Stance frames (bool) of one foot at ``times``, from its ``{"strike": [...], "off": [...]}``.

    Stance runs from a strike to the next off; frames before the first event take the phase that
    event ends. ``None`` when the foot has no event.
    """
    marks = sorted([(float(t), True) for t in side.get("strike", [])]
                   + [(float(t), False) for t in side.get("off", [])], key=lambda m: m[0])
    if not marks:
        return None
    state = np.full(len(times), not marks[0][1])
    for t, on in marks:
        state[times >= t] = on
    return state


def plate_file(events: PathLike) -> Path | None:
    """The ``grf.mot`` the import wrote beside a trial's ``events.json``; ``None`` when there is none."""
    grf = Path(events).parent / "grf.mot"
    return grf if grf.is_file() else None


def _reactions(grf: GroundReactions) -> pd.DataFrame:
    """The ground-reaction table of ``grf`` (read once by the caller when it is a path)."""
    return grf if isinstance(grf, pd.DataFrame) else read_sto(grf)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open index runs ``[a, b)`` where ``mask`` is True."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def measured_frames(
    events: Mapping[str, Mapping[str, Sequence[float]]], grf: GroundReactions, *,
    threshold: float = PLATE_THRESHOLD, tolerance: float = EVENT_TOLERANCE,
) -> tuple[np.ndarray, np.ndarray]:
    """Times of ``grf.mot`` and whether each foot's ground reaction there is the one it bears.

    A frame is measured when every foot with events is loaded on a plate (``ground_force_<r|l>_vy``
    above ``threshold``) exactly while it is in stance by its events, up to ``tolerance`` around
    either's changes. It is not when a foot stands off the plates (a strike only the C3D file
    marks: inverse dynamics reads a loaded foot as a swing), or when a plate loads a foot in swing
    (both feet on one plate, its force given to one of them).
    """
    table = _reactions(grf)
    time = table.index.to_numpy(dtype=float)
    ok = np.ones(len(time), dtype=bool)
    for side, marks in events.items():
        column = f"ground_force_{str(side)[:1]}_vy"
        on = stance(marks, time)
        if on is None or column not in table.columns:
            continue
        loaded = np.abs(table[column].to_numpy(dtype=float)) > threshold
        changes = [float(t) for k in ("strike", "off") for t in marks.get(k, [])]
        changes += [float(time[a]) for a, _ in _runs(loaded) if a > 0]
        changes += [float(time[b - 1]) for _, b in _runs(loaded) if b < len(time)]
        near = np.zeros(len(time), dtype=bool)
        for t in changes:
            near |= np.abs(time - t) <= tolerance + 1e-9
        ok &= (loaded == on) | near
    return time, ok


def plate_span(grf: GroundReactions, *, threshold: float = PLATE_THRESHOLD,
               source: PathLike = "grf.mot") -> tuple[float, float] | None:
    """First and last time (s) a foot's vertical ground reaction in ``grf.mot`` exceeds ``threshold``.

    ``source`` names the file in the error when ``grf`` is an already-read table.
    """
    table = _reactions(grf)
    if not isinstance(grf, pd.DataFrame):
        source = grf
    vertical = [c for c in table.columns if str(c).endswith("_vy")]
    if not vertical:
        raise InputDataError(f"{source}: no vertical force column (*_vy); rerun the import stage")
    loaded = (table[vertical].abs().to_numpy(dtype=float) > threshold).any(axis=1)
    if not loaded.any():
        return None
    time = table.index.to_numpy(dtype=float)[loaded]
    return float(time[0]), float(time[-1])


def contact_window(
    events: PathLike, *, grf: GroundReactions | None = None, threshold: float = PLATE_THRESHOLD,
    within: tuple[float, float] | None = None,
) -> tuple[float, float] | None:
    """The span from the first foot strike to the last foot off of ``events.json`` (s), if any.

    With ``grf`` (the trial's ``grf.mot``) the span is also kept within the plates' contacts
    (:func:`plate_span`) and, inside them, to the longest run of frames whose ground reactions are
    measured (:func:`measured_frames`): a strike the C3D file marks off the plates loads a foot
    whose ground reaction no plate measured, and a plate both feet step on gives both loads to one
    foot; there the inverse-dynamics moments are meaningless. ``within`` (s) bounds the search to
    the frames a trial holds (a window cut short by ``max_frames``). ``None`` when no span is left.
    """
    path = Path(events)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputDataError(f"{path}: cannot read the gait events ({exc}); rerun the import stage") from exc
    strikes = [float(t) for side in data.values() for t in side.get("strike", [])]
    offs = [float(t) for side in data.values() for t in side.get("off", [])]
    if not strikes or not offs or max(offs) <= min(strikes):
        return None
    start, end = min(strikes), max(offs)
    if within is not None:
        start, end = max(start, float(within[0])), min(end, float(within[1]))
        if end <= start:
            return None
    if grf is None:
        return start, end
    table = _reactions(grf)
    source = path.parent / "grf.mot" if isinstance(grf, pd.DataFrame) else grf
    plates = plate_span(table, threshold=threshold, source=source)
    if plates is None:
        return None
    start, end = max(start, plates[0]), min(end, plates[1])
    time, ok = measured_frames(data, table, threshold=threshold)
    inside = (time >= start - 1e-9) & (time <= end + 1e-9)
    runs = _runs(ok & inside)
    if not runs:
        return None
    a, b = max(runs, key=lambda r: r[1] - r[0])
    if b - a < 2:
        return None
    return max(start, float(time[a])), min(end, float(time[b - 1]))
