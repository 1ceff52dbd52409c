"""Evaluate a twin subject's pipeline results against its ground truth (``truth.npz``).

Rows of ``results/<s>/truth/evaluation.tsv`` (long format, the columns of ``evaluation.tsv``):

- every estimator of ``methods`` (``mse``, ``nmm``, ``so``, ``null``, ...): its held-out prediction
  ``results/<s>/<method>/predictions/<trial>.excitations.sto`` against the true excitations
  (``quantity = excitation``; every muscle column, deep and surface);
- ``method`` opensim: ``ik.mot`` against the true coordinates (``quantity = coordinate``; degrees
  for rotations, m for translations) and ``id.sto`` against the true joint moments
  (``quantity = moment``; N m; pelvis residual columns are left out);

with ``metric`` ``r_truth`` (Pearson r) and ``rmse_truth`` (RMSE, in the quantity's unit); for
excitations also over the frames where the true excitation is at least
:data:`musculo.metrics.ACTIVE_THRESHOLD` (``r_active_truth``, ``rmse_active_truth``,
``mean_active_truth`` of the prediction, ``mean_active_reference_truth``, ``active_share_truth``).
The truth is interpolated onto each result's time samples inside the common time span.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from musculo import logger
from musculo.errors import MusculoError
from musculo.io.tables import EVALUATION_COLUMNS as COLUMNS
from musculo.io.tables import in_degrees, read_sto
from musculo.io.tables import write_evaluation_table as write_table
from musculo.metrics import excitation_metrics
from musculo.twin.generate import load_truth

METHODS = ("mse", "nmm", "so", "null", "opensim")  # the defaults; any estimator with predictions/ works
_PELVIS = ("pelvis_tilt", "pelvis_tx", "pelvis_ty")


class TruthEvaluationError(MusculoError):
    """Results cannot be compared with a twin's truth."""


ANTAGONISTS: tuple[tuple[str, str], ...] = (
    ("hamstrings", "vasti"), ("bifemsh", "vasti"), ("gastroc", "tib_ant"), ("soleus", "tib_ant"),
    ("iliopsoas", "glut_max"), ("iliopsoas", "hamstrings"), ("rect_fem", "hamstrings"),
)  # fmt: skip
"""Antagonist muscle pairs of the twin model (side suffix left out): knee extensor / flexor,
ankle plantar / dorsal flexor, hip flexor / extensor."""


def cocontraction(
    truth: Mapping[str, Any], trial: str, *, side: str = "r", threshold: float = 0.05
) -> dict[str, float]:
    """Share of a trial's frames in which both muscles of each antagonist pair (:data:`ANTAGONISTS`)
    have a true excitation above ``threshold``, keyed ``"<a>/<b>"``."""
    muscles = [str(m) for m in truth["muscles"]]
    u = np.asarray(truth[f"{trial}/excitation"], dtype=float)
    out = {}
    for a, b in ANTAGONISTS:
        ua, ub = u[:, muscles.index(f"{a}_{side}")], u[:, muscles.index(f"{b}_{side}")]
        out[f"{a}/{b}"] = float(((ua > threshold) & (ub > threshold)).mean())
    return out


def truth_metrics(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """``r_truth`` (Pearson r; NaN for a constant series) and ``rmse_truth``."""
    p, y = np.asarray(predicted, dtype=float), np.asarray(reference, dtype=float)
    ok = np.isfinite(p) & np.isfinite(y)
    p, y = p[ok], y[ok]
    if len(p) < 2:
        return {"r_truth": float("nan"), "rmse_truth": float("nan")}
    r = float(np.corrcoef(p, y)[0, 1]) if np.std(p) > 1e-12 and np.std(y) > 1e-12 else float("nan")
    return {"r_truth": r, "rmse_truth": float(np.sqrt(np.mean((p - y) ** 2)))}


def _compare(
    *, subject: str, trial: str, method: str, quantity: str, table: pd.DataFrame,
    truth_time: np.ndarray, truth_values: np.ndarray, names: Sequence[str],
    columns: dict[str, str] | None = None, scale: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Rows for every truth channel ``names[j]`` found in ``table`` (as ``columns[name]``)."""
    time = table.index.to_numpy(dtype=float)
    keep = (time >= truth_time[0] - 1e-9) & (time <= truth_time[-1] + 1e-9)
    rows: list[dict[str, Any]] = []
    for j, name in enumerate(names):
        col = (columns or {}).get(name, name)
        if col not in table.columns:
            continue
        ref = np.interp(time[keep], truth_time, truth_values[:, j]) * (scale or {}).get(name, 1.0)
        pred = table[col].to_numpy(dtype=float)[keep]
        metrics = truth_metrics(pred, ref)
        if quantity == "excitation":  # and over the muscle's true active frames
            active = excitation_metrics(pred, ref)
            metrics.update({f"{k}_truth": active[k] for k in (
                "r_active", "rmse_active", "mean_active", "mean_active_reference", "active_share")})
        for metric, value in metrics.items():
            rows.append({"subject": subject, "trial": trial, "method": method, "quantity": quantity,
                         "channel": name, "metric": metric, "value": value})
    return rows


def evaluate_truth(
    *,
    subject: str,
    truth: str | os.PathLike[str],
    results_dir: str | os.PathLike[str],
    output: str | os.PathLike[str],
    methods: Sequence[str] = METHODS,
) -> pd.DataFrame:
    """Compare a twin's results under ``results_dir`` (``results/<s>``) with ``truth``; write ``output``.

    Every dynamic trial of the truth file is looked up for each method of ``methods``; a missing
    prediction file is logged and skipped (e.g. a trial never held out), but at least one row must
    come out, or :class:`TruthEvaluationError` is raised.
    """
    data = load_truth(truth)
    results = Path(results_dir)
    muscles = [str(m) for m in data["muscles"]]
    coords = [str(c) for c in data["coordinates"]]
    rows: list[dict[str, Any]] = []
    for trial in (str(t) for t in data["trials"]):
        time = data[f"{trial}/time"]
        files: dict[str, Path] = {  # an estimator's held-out predictions, SO's activations
            m: results / m / "predictions" / f"{trial}.excitations.sto" for m in methods if m != "opensim"
        }
        files["so"] = results / trial / "so_activation.sto"
        for method in (m for m in methods if m in files):
            path = files[method]
            if not path.is_file():
                logger.warning("twin truth %s: no %s prediction %s; skipped", subject, method, path)
                continue
            rows += _compare(subject=subject, trial=trial, method=method, quantity="excitation",
                             table=read_sto(path), truth_time=time,
                             truth_values=data[f"{trial}/excitation"], names=muscles)
        if "opensim" not in methods:
            continue
        ik, id_ = results / trial / "ik.mot", results / trial / "id.sto"
        if ik.is_file():
            table = read_sto(ik)
            factor = float(np.degrees(1.0)) if in_degrees(table) else 1.0
            scale = {c: factor
                     for c in coords if c not in ("pelvis_tx", "pelvis_ty")}
            rows += _compare(subject=subject, trial=trial, method="opensim", quantity="coordinate",
                             table=table, truth_time=time, truth_values=data[f"{trial}/q"],
                             names=coords, scale=scale)
        else:
            logger.warning("twin truth %s: no %s; skipped", subject, ik)
        if id_.is_file():
            joints = [c for c in coords if c not in _PELVIS]
            idx = [coords.index(c) for c in joints]
            rows += _compare(subject=subject, trial=trial, method="opensim", quantity="moment",
                             table=read_sto(id_), truth_time=time,
                             truth_values=data[f"{trial}/moments"][:, idx], names=joints,
                             columns={c: f"{c}_moment" for c in joints})
        else:
            logger.warning("twin truth %s: no %s; skipped", subject, id_)
    if not rows:
        raise TruthEvaluationError(
            f"{truth}: no result of {list(methods)} under {results} matches the truth's trials "
            f"{[str(t) for t in data['trials']]}; run the pipeline for {subject} first"
        )
    table = pd.DataFrame(rows, columns=COLUMNS)
    write_table(table, output)
    return table
