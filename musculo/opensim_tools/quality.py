"""Per-subject quality table: marker errors, ID residuals, SO reserve use (and EMG flags)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from musculo.errors import InputDataError
from musculo.io.atomic import atomic_output
from musculo.opensim_tools.common import PathLike

COLUMNS = ["subject", "trial", "stage", "quantity", "value", "unit", "limit", "flag"]


def _json(path: PathLike) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise InputDataError(f"{p}: file not found; run the stage that writes it")
    return json.loads(p.read_text())


def _row(
    subject: str, trial: str, stage: str, quantity: str, value: float, unit: str, limit: float | None = None
) -> dict[str, Any]:
    flagged = limit is not None and math.isfinite(value) and value > limit
    return {
        "subject": subject,
        "trial": trial,
        "stage": stage,
        "quantity": quantity,
        "value": float(value),
        "unit": unit,
        "limit": math.nan if limit is None else float(limit),
        "flag": "over_limit" if flagged else "",
    }


def write_quality_table(
    *,
    subject: str,
    scale_quality: PathLike,
    ik_errors: Sequence[PathLike] = (),
    id_residuals: Sequence[PathLike] = (),
    so_reserves: Sequence[PathLike] = (),
    emg_quality: Sequence[PathLike] = (),
    output_tsv: PathLike,
    max_marker_rms: float = 0.04,
    ik_flag_limit: float = 0.04,
    residual_force_pct_limit: float = 5.0,
    reserve_limit: float = 10.0,
) -> pd.DataFrame:
    """Collect one subject's quality numbers into a long TSV (one row per quantity).

    Per-trial files are named by their trial folder (``results/<s>/<trial>/...``). Rows whose
    value exceeds its limit are flagged ``over_limit``: scale marker RMS (m), IK frames over
    ``ik_flag_limit``, pelvis residual forces RMS (% body weight), reserve moments max (N m).
    """
    from musculo.io.tables import read_sto

    rows: list[dict[str, Any]] = []
    sq = _json(scale_quality)
    rows.append(_row(subject, "", "scale", "marker_rms", sq["marker_rms"], "m", max_marker_rms))
    rows.append(_row(subject, "", "scale", "marker_max", sq["marker_max"], "m"))
    for seg, factors in sq.get("scale_factors", {}).items():
        rows.append(_row(subject, "", "scale", f"scale_factor:{seg}", max(factors), "1"))
    for path in ik_errors:
        trial = Path(path).parent.name
        err = read_sto(path)
        rms = err["marker_error_RMS"].to_numpy(dtype=float)
        mx = err["marker_error_max"].to_numpy(dtype=float)
        rows.append(_row(subject, trial, "ik", "marker_rms_mean", float(rms.mean()), "m"))
        rows.append(_row(subject, trial, "ik", "marker_max", float(mx.max()), "m", ik_flag_limit))
        rows.append(
            _row(subject, trial, "ik", "frames_over_limit", float((mx > ik_flag_limit).sum()), "frames", 0.0)
        )
    for path in id_residuals:
        trial = Path(path).parent.name
        res = _json(path)
        for coord, entry in res.get("coordinates", {}).items():
            rows.append(_row(subject, trial, "id", f"residual_rms:{coord}", entry["rms"], entry["unit"]))
            if "rms_pct_bw" in entry:
                rows.append(
                    _row(
                        subject,
                        trial,
                        "id",
                        f"residual_rms_pct_bw:{coord}",
                        entry["rms_pct_bw"],
                        "%BW",
                        residual_force_pct_limit,
                    )
                )
    for path in so_reserves:
        trial = Path(path).parent.name
        rep = _json(path)
        for entry in rep.get("actuators", {}).values():
            limit = reserve_limit if entry.get("kind") == "reserve" else None
            rows.append(
                _row(
                    subject,
                    trial,
                    "so",
                    f"{entry.get('kind')}_max:{entry['coordinate']}",
                    entry["max_abs"],
                    "N m" if limit else "N or N m",
                    limit,
                )
            )
            rows.append(
                _row(
                    subject,
                    trial,
                    "so",
                    f"{entry.get('kind')}_rms:{entry['coordinate']}",
                    entry["rms"],
                    "N m" if limit else "N or N m",
                )
            )
    for path in emg_quality:
        trial = Path(path).parent.name
        for channel, entry in _json(path).items():
            flags = entry.get("flags", []) if isinstance(entry, dict) else []
            row = _row(
                subject,
                trial,
                "emg",
                f"usable:{channel}",
                1.0 if (isinstance(entry, dict) and entry.get("use")) else 0.0,
                "1",
            )
            row["flag"] = ";".join(map(str, flags))
            rows.append(row)
    table = pd.DataFrame(rows, columns=COLUMNS)
    with atomic_output(output_tsv) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    return table
