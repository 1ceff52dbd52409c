"""Gait events of a trial (``events.json``, written at import): the force-plate contacts per foot."""

from __future__ import annotations

import json
import os
from pathlib import Path

from musculo.errors import InputDataError

PathLike = str | os.PathLike[str]


def contact_window(events: PathLike) -> tuple[float, float] | None:
    """The span from the first foot strike to the last foot off of ``events.json`` (s), if any.

    The events are the force-plate contacts found at import, so inside this span the ground
    reactions that inverse dynamics needs are measured (outside it a foot may be on the floor off
    the plates and the inverse-dynamics moments are meaningless).
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
    return min(strikes), max(offs)
