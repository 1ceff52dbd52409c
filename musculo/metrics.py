"""Agreement metrics shared by the evaluation and the twins' truth evaluation.

Pearson r (NaN for a constant series) and one muscle's excitation metrics over the whole trial
and over its active frames (reference at or above :data:`ACTIVE_THRESHOLD`).
"""

from __future__ import annotations

import numpy as np

ACTIVE_THRESHOLD = 0.05
"""Normalised excitation from which a muscle counts as active (hidden-muscle metrics)."""
MIN_PHASE_FRAMES = 3
"""Fewest frames a phase (stance, swing, active) needs to be scored."""


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two series; NaN when either is constant."""
    if np.std(a) < 1e-12 or np.std(b) < 1e-12:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def excitation_metrics(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """r, RMSE and VAF (1 - SSE / sum of squared reference) of one muscle's excitation, and the same
    over its active frames (reference >= ``ACTIVE_THRESHOLD``): ``r_active``, ``rmse_active``,
    ``mean_active`` (mean prediction), ``mean_active_reference`` and ``active_share`` (share of
    frames active). A target that is never active scores NaN on the active metrics."""
    p, y = np.asarray(predicted, dtype=float), np.asarray(reference, dtype=float)
    denom = float(np.sum(y**2))
    active = y >= ACTIVE_THRESHOLD
    n_act = int(active.sum())
    nan = float("nan")
    return {
        "r": correlation(p, y),
        "rmse": float(np.sqrt(np.mean((p - y) ** 2))),
        "vaf": 1.0 - float(np.sum((p - y) ** 2)) / denom if denom > 0 else float("nan"),
        "r_active": correlation(p[active], y[active]) if n_act >= MIN_PHASE_FRAMES else nan,
        "rmse_active": float(np.sqrt(np.mean((p[active] - y[active]) ** 2))) if n_act else nan,
        "mean_active": float(np.mean(p[active])) if n_act else nan,
        "mean_active_reference": float(np.mean(y[active])) if n_act else nan,
        "active_share": n_act / max(len(y), 1),
    }
