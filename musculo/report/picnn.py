"""Report piece for the PI-CNN transfer: accuracy against the share of the subject's data fine-tuned on.

Reads the summary of :func:`musculo.estimators.transfer.share_summary` (one subject or a cohort's
subjects): per variant (``random``, ``active`` lines over the shares; ``scratch`` at 100 % and ``generic``
at 0 % as markers) the mean angle RMSE (deg), moment RMSE (% of peak) and moment R2.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

PANELS = (
    ("angle", "rmse", "angle RMSE (deg)"),
    ("moment", "pct_peak", "moment RMSE (% of peak)"),
    ("moment", "r2", "moment R2"),
    ("force", "r", "force r vs reference"),
)
STYLE = {
    "random": ("tab:blue", "o-"),
    "active": ("tab:red", "s-"),
    "scratch": ("black", "D"),
    "generic": ("tab:grey", "^"),
}


def share_figure(summary: pd.DataFrame, *, title: str = "") -> Figure:
    """One panel per metric of :data:`PANELS`; x the fine-tuned share (%), mean over subjects."""
    fig = Figure(figsize=(11, 3))
    axes = fig.subplots(1, len(PANELS))
    for ax, (quantity, metric, label) in zip(axes, PANELS, strict=True):
        part = summary[(summary["quantity"] == quantity) & (summary["metric"] == metric)]
        mean = part.groupby(["variant", "share"], as_index=False)["value"].mean()
        for variant, (colour, marker) in STYLE.items():
            rows = mean[mean["variant"] == variant].sort_values("share")
            if not rows.empty:
                ax.plot(rows["share"], rows["value"], marker, color=colour, label=variant)
        ax.set_xlabel("fine-tuned share (%)", fontsize=8)
        ax.set_title(label, fontsize=9)
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
