"""Reading what the pipeline stages wrote, for the reports: evaluation tables, quality verdicts.

Every reader tolerates a missing file (the report states what is missing) but rejects a file that
exists and is malformed, naming the file, the field and what to do.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd

from musculo.config import schema
from musculo.errors import MusculoError
from musculo.io.tables import read_sto

EVALUATION_COLUMNS = ("subject", "trial", "method", "quantity", "channel", "metric", "value")
GRAVITY = 9.80665


class ReportInputError(MusculoError):
    """A results file read by the report exists but cannot be used."""


def settings_with_defaults(settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``report`` config section: the schema's defaults updated with ``settings``."""
    props = schema("config")["properties"]["report"]["properties"]
    out = {key: spec["default"] for key, spec in props.items()}
    unknown = sorted(set(settings or {}) - set(out))
    if unknown:
        raise ReportInputError(
            f"report settings: unknown key(s) {unknown}; allowed: {sorted(out)} "
            "(see musculo/schemas/config.schema.yaml, section report)"
        )
    out.update(settings or {})
    return out


def config_sha256(config: Mapping[str, Any]) -> str:
    """sha256 of a configuration's canonical JSON (sorted keys), a short name for a run's settings."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def package_versions(names: Sequence[str] = ("musculo", "opensim", "torch", "numpy", "scipy",
                                             "pandas", "scikit-learn", "matplotlib", "snakemake")
                     ) -> dict[str, str]:
    """Installed versions of the packages that shape the results (without importing them)."""
    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def read_evaluation(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read an ``evaluation.tsv`` (long format) and check its columns and values."""
    path = Path(path)
    if not path.is_file():
        raise ReportInputError(f"{path}: evaluation table not found; run the evaluation stage")
    # only the value column has missing markers: the method "null" (the floor) is a name, not NaN
    table = pd.read_csv(path, sep="\t", dtype={c: str for c in EVALUATION_COLUMNS[:-1]},
                        keep_default_na=False,
                        na_values={"value": ["", "NaN", "nan", "-nan", "NA", "N/A", "null", "None"]})
    missing = [c for c in EVALUATION_COLUMNS if c not in table.columns]
    if missing:
        raise ReportInputError(
            f"{path}: missing column(s) {missing}; an evaluation table has the columns "
            f"{list(EVALUATION_COLUMNS)} (tab-separated, one row per value)"
        )
    values = pd.to_numeric(table["value"], errors="coerce")
    bad = table.loc[values.isna() & table["value"].notna(), "value"]
    if not bad.empty:
        raise ReportInputError(
            f"{path}: column 'value' holds non-numbers (first: {bad.iloc[0]!r} on data row "
            f"{bad.index[0] + 1}); write numbers, or NaN for undefined values"
        )
    table["value"] = values.astype(float)
    for col in EVALUATION_COLUMNS[:-1]:
        table[col] = table[col].fillna("")
    return table


def read_json(path: Path) -> Any:
    """Read a JSON file, raising :class:`ReportInputError` naming the file when it is invalid."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ReportInputError(
            f"{path}: not valid JSON ({exc}); rerun the stage that writes it") from None


def read_table(path: Path) -> pd.DataFrame | None:
    """Read an OpenSim table if it exists (``None`` otherwise)."""
    return read_sto(path) if path.is_file() else None


def flatten_numbers(data: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Yield ``(dotted.key.path, value)`` for every finite number in nested dicts and lists."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            yield from flatten_numbers(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(data, list) and len(data) <= 16:
        for i, value in enumerate(data):
            yield from flatten_numbers(value, f"{prefix}[{i}]")
    elif isinstance(data, int | float) and not isinstance(data, bool) and math.isfinite(data):
        yield prefix, float(data)


def method_order(found: Sequence[str], preferred: Sequence[str]) -> list[str]:
    """``found`` methods ordered as in ``preferred``, the others after them in found order."""
    found = list(dict.fromkeys(found))
    return [m for m in preferred if m in found] + [m for m in found if m not in preferred]


def metric_direction(metric: str, settings: Mapping[str, Any]) -> int:
    """-1 when smaller is better, +1 when larger is better, 0 when unknown."""
    name = metric.strip().lower()
    for suffix in ("_stance", "_swing", "_active", "_pct_peak"):  # rmse_pct_peak_swing -> rmse
        name = name.removesuffix(suffix)
    if name in {m.lower() for m in settings["lower_is_better"]}:
        return -1
    if name in {m.lower() for m in settings["higher_is_better"]}:
        return 1
    return 0


# ---------------------------------------------------------------- the null floor

NULL_METHOD = "null"
ROLES = {"null": "floor (training-mean moments)", "so": "consistency check (fitted to the same moments)"}


def null_floor_table(evaluation: pd.DataFrame) -> pd.DataFrame:
    """Per subject and method: does it beat the ``null`` floor on held-out moment RMSE?

    Columns: ``subject``, ``method``, ``role`` (``null`` is the floor; ``so``, static optimisation
    fitted to the same inverse-dynamics moments with every model muscle, is a consistency check,
    not a competitor; the others are estimators), ``rmse`` and ``null_rmse`` (N m, mean over held-out
    trials and coordinates), ``median_r2`` (median over trials and coordinates),
    ``coordinates_beaten`` (``k/n``: coordinates whose mean RMSE is below the null's) and ``verdict``
    (``yes`` every coordinate, ``partly``, ``no``, or ``no null floor``).
    """
    cols = ["subject", "method", "role", "rmse", "null_rmse", "median_r2", "coordinates_beaten", "verdict"]
    if evaluation.empty:
        return pd.DataFrame(columns=cols)
    moments = evaluation[evaluation["quantity"] == "moment"]
    rmse = moments[moments["metric"] == "rmse"].groupby(["subject", "method", "channel"], sort=False)[
        "value"].mean()
    r2 = moments[moments["metric"] == "r2"].groupby(["subject", "method"], sort=False)["value"].median()
    rows = []
    for (subject, method), per_coord in rmse.groupby(level=[0, 1], sort=False):
        per_coord = per_coord.droplevel([0, 1])
        floor = rmse.get((subject, NULL_METHOD))
        row = {"subject": subject, "method": method, "role": ROLES.get(method, "estimator"),
               "rmse": float(per_coord.mean()), "median_r2": float(r2.get((subject, method), math.nan)),
               "null_rmse": math.nan, "coordinates_beaten": "", "verdict": "no null floor"}
        if method == NULL_METHOD:
            row["verdict"] = "the floor"
        elif floor is not None and len(floor):
            common = [c for c in per_coord.index if c in floor.index]
            beaten = sum(bool(per_coord[c] < floor[c]) for c in common)
            row["null_rmse"] = float(floor[common].mean()) if common else math.nan
            row["coordinates_beaten"] = f"{beaten}/{len(common)}"
            row["verdict"] = "yes" if common and beaten == len(common) else ("partly" if beaten else "no")
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


# ---------------------------------------------------------------- quality verdicts


@dataclass(frozen=True)
class QualityItem:
    """One checked quantity with its verdict (pass, warn, fail, info or missing)."""

    group: str
    item: str
    value: str
    limit: str
    verdict: str
    source: str


def verdict(value: float | None, limit: float | None) -> str:
    """pass when ``value <= limit``, warn up to twice the limit, fail beyond; info without limit."""
    if value is None or not math.isfinite(value):
        return "missing"
    if limit is None:
        return "info"
    if value <= limit:
        return "pass"
    return "warn" if value <= 2 * limit else "fail"


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    return f"{value:.4g}{(' ' + unit) if unit else ''}"


_FORCE = re.compile(r"force|_t[xyz]\b|_t[xyz][._]|\bf[xyz]\b|residual_f", re.IGNORECASE)
_MOMENT = re.compile(r"moment|torque|_m[xyz]\b|tilt|list|rotation|flexion|adduction|angle",
                     re.IGNORECASE)


def _kind(key: str) -> str | None:
    if _FORCE.search(key):
        return "force"
    if _MOMENT.search(key):
        return "moment"
    return None


def quality_items(quality_tsv: Path) -> list[QualityItem]:
    """The rows of a subject's ``quality.tsv`` with their verdicts, as they were judged there.

    The quality stage holds the only limits (config section ``opensim``); the report renders its
    verdicts and judges nothing itself.
    """
    table = pd.read_csv(quality_tsv, sep="\t", keep_default_na=False)
    missing = {"verdict", "limit", "value", "unit", "stage", "trial", "quantity"} - set(table.columns)
    if missing:
        raise ReportInputError(f"{quality_tsv}: columns {sorted(missing)} missing; rerun the quality rule")
    items = []
    for row in table.itertuples(index=False):
        value = float(row.value) if str(row.value) not in ("", "nan") else None
        limit = float(row.limit) if str(row.limit) not in ("", "nan") else None
        group = f"{row.stage} {row.trial}".strip()
        shown = _fmt(value, str(row.unit)) + (f" ({row.flag})" if getattr(row, "flag", "") else "")
        items.append(QualityItem(group, str(row.quantity), shown, _fmt(limit, str(row.unit)),
                                 str(row.verdict).lower(), str(quality_tsv)))
    return items


def inputs_checksums(path: Path) -> list[tuple[str, str]]:
    """``(file, sha256)`` pairs listed in ``inputs.json`` (its ``sha256`` mapping)."""
    data = read_json(path)
    sums = data.get("sha256", {}) if isinstance(data, Mapping) else {}
    if not isinstance(sums, Mapping):
        raise ReportInputError(f"{path}: field 'sha256' must map file paths to checksums; "
                               "rerun the fetch stage")
    return sorted((str(k), str(v)) for k, v in sums.items())
