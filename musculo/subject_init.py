"""Draft a subject file from a folder of C3D files (``musculo subject init``).

The draft holds what the files tell: the trials (the static one detected as the trial in which the
markers travel least), the body mass from the static trial's force plates, the lab's up axis (the
direction of the plates' reaction) and walking direction, the EMG channels (analog channels that are
not force-plate channels) and the foot markers found among common names. What the files cannot
tell (the muscle each electrode measures, the marker set on the model) is left as comments to fill.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from musculo import logger
from musculo.errors import InputDataError, MusculoError, SubjectFileError
from musculo.io.atomic import atomic_output
from musculo.io.c3d import C3DData, read_c3d
from musculo.subject import ID_PATTERN

GRAVITY = 9.80665
_PLATE_CHANNEL = re.compile(r"^(F[xyz]|M[xyz]|C[xy]|Tz)\d*$|force|moment|plate", re.IGNORECASE)
_FEET = {
    "right": ["RHEE", "RTOE", "RANK", "R_Heel", "R_Toe"],
    "left": ["LHEE", "LTOE", "LANK", "L_Heel", "L_Toe"],
}


def _travel(c3d: C3DData) -> float:
    """Largest displacement (mm) of the markers' median position between first and last seen frame."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        centre = np.nanmedian(c3d.markers, axis=1)
    ok = ~np.isnan(centre).any(axis=1)
    if ok.sum() < 2:
        return 0.0
    return float(np.max(np.abs(centre[ok][-1] - centre[ok][0])))


def _axis(v: np.ndarray) -> str:
    k = int(np.argmax(np.abs(v)))
    return ("+" if v[k] > 0 else "-") + "XYZ"[k]


def draft_subject(
    folder: str | os.PathLike[str], *, subject_id: str | None = None, force: bool = False
) -> Path:
    """Write ``<folder>/subject.yaml`` drafted from the folder's C3D files; return its path.

    Raises :class:`SubjectFileError` when the folder holds no readable C3D file or a subject.yaml
    exists (unless ``force``).
    """
    folder = Path(folder)
    sid = subject_id or folder.resolve().name
    if not ID_PATTERN.match(sid):
        raise SubjectFileError(f"{folder}: {sid!r} is not a usable subject id; pass --id lab-s01")
    out = folder / "subject.yaml"
    if out.exists() and not force:
        raise SubjectFileError(f"{out} exists; pass --force to overwrite it")
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() == ".c3d")
    trials: dict[str, C3DData] = {}
    for path in files:
        try:
            trials[path.name] = read_c3d(path)
        except InputDataError as exc:
            logger.warning("%s: left out of the draft: %s", path.name, exc)
    if not trials:
        raise SubjectFileError(f"{folder}: no readable C3D file; put the lab's C3D files there")
    travel = {name: _travel(c) for name, c in trials.items()}
    named = [n for n in trials if re.search(r"stat|cal|still", n, re.IGNORECASE)]
    still = sorted(travel, key=travel.get)
    static = named[0] if named else (still[0] if travel[still[0]] < 300.0 else None)
    notes: list[str] = []
    if static is None:
        notes.append("no static trial found: declare a still stretch of a dynamic trial as static "
                     "(same file, another name, role static, time_range of ~0.5 s)")
    # up axis: the plates' reaction points up; walking direction: the markers' travel
    up = "+Z"
    forces = [np.nansum(np.nan_to_num(p.force), axis=0) for c in trials.values() for p in c.plates]
    if forces and np.linalg.norm(sum(forces)) > 0:
        up = _axis(sum(forces))
    k_up = "XYZ".index(up[1])
    moves = []
    for name, c in trials.items():
        if name == static:
            continue
        centre = np.nanmedian(c.markers, axis=1) if np.isfinite(c.markers).any() else None
        if centre is not None:
            ok = ~np.isnan(centre).any(axis=1)
            if ok.sum() >= 2:
                d = centre[ok][-1] - centre[ok][0]
                d[k_up] = 0.0
                if np.max(np.abs(d)) > 500.0:
                    moves.append(_axis(d))
    forward = max(set(moves), key=moves.count) if moves else ("+X" if up[1] != "X" else "+Y")
    if not moves:
        notes.append("walking direction not seen in the markers: check lab_frame.forward")
    # mass and height from the static trial
    mass, mass_source, height = 70.0, "PLACEHOLDER: give the measured mass", 1.75
    if static is not None:
        c = trials[static]
        if c.plates:
            total = sum(np.nan_to_num(p.force) for p in c.plates)
            weight = float(np.median(np.abs(total[:, k_up])))
            if 100.0 < weight < 3000.0:
                mass, mass_source = round(weight / GRAVITY, 1), f"static trial {static} on the plates"
        sign = 1 if up[0] == "+" else -1
        top = np.nanmax(sign * c.markers[..., k_up]) if np.isfinite(c.markers).any() else None
        if top is not None and 800.0 < top < 2300.0:
            height = round(float(top) / 1000.0 + 0.05, 2)  # top marker plus about a head marker's offset
    first = next(iter(trials.values()))
    emg = [lab for lab in first.analog_labels if not _PLATE_CHANNEL.search(lab)]
    labels = set(first.marker_labels)
    feet = {f: [m for m in names if m in labels] for f, names in _FEET.items()}
    raw: dict[str, Any] = {
        "id": sid,
        "mass": mass,
        "mass_source": mass_source,
        "height": height,
        "model": {"dataset": "opensim-models", "file": "models/gait2392_thelen2003muscle.osim"},
        "marker_set": "markerset.xml",
        "lab_frame": {"up": up, "forward": forward},
        "trials": [
            {"name": re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(n).stem).lstrip("."),
             "role": "static" if n == static else "dynamic", "file": n}
            for n in trials
        ],
        "force_plates": "auto",
    }
    if all(feet.values()):
        raw["foot_markers"] = feet
    header = [
        f"# Draft by musculo subject init from {len(trials)} C3D file(s); edit, then run",
        f"#   musculo subject validate {folder}",
        "# marker_set: write an OpenSim MarkerSet naming these markers on the model: "
        + ", ".join(first.marker_labels[:40]) + ("..." if len(first.marker_labels) > 40 else ""),
        "# EMG: map each channel to the model muscle(s) under its electrode, e.g.",
        "# emg:",
        "#   channels:",
        *[f"#     {lab}: [MUSCLE_{'l' if lab.upper().startswith('L') else 'r'}]" for lab in emg],
        "# coordinates: [hip_flexion_r, knee_angle_r, ankle_angle_r]  # moments the EMG-driven model tracks",
        "# unmeasured: auto  # estimate every muscle without EMG that spans those coordinates",
        *[f"# NOTE: {n}" for n in notes],
    ]
    text = "\n".join(header) + "\n" + yaml.safe_dump(raw, sort_keys=False)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_output(out) as tmp:
            tmp.write_text(text)
    except OSError as exc:
        raise MusculoError(f"{out}: cannot write the draft ({exc})") from exc
    logger.info("%s: %d trials (static: %s), up %s, forward %s, %d EMG channels", sid, len(trials),
                static, up, forward, len(emg))
    return out
