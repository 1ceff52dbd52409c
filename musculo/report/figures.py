"""Report figures (matplotlib, object-oriented API: no pyplot state, no backend switching).

Every figure function takes tables (pandas DataFrames indexed by time in s) and returns a
:class:`matplotlib.figure.Figure`; :func:`figure_png` turns it into PNG bytes for embedding.
When gait events are given, curves are normalised to the gait cycle (0-100 % between successive
foot strikes of one side) and drawn as the mean over cycles with a +/- 1 SD band.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

# A colour-blind-safe cycle (Okabe-Ito), first entry for the reference signal.
COLOURS = ("#000000", "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")


def gait_cycles(
    events: Mapping[str, Any] | None, *, side: str, start: float, end: float
) -> list[tuple[float, float]]:
    """Complete gait cycles (strike to next strike of ``side``) lying inside ``[start, end]``.

    ``events`` is the content of ``events.json``: ``{"right": {"strike": [...], ...}, ...}``.
    Returns an empty list when the side has fewer than two strikes inside the data.
    """
    if not events:
        return []
    strikes = sorted(float(t) for t in (events.get(side) or {}).get("strike", []) or [])
    inside = [t for t in strikes if start - 1e-9 <= t <= end + 1e-9]
    return [(a, b) for a, b in zip(inside[:-1], inside[1:], strict=True) if b > a]


def cycle_normalise(
    table: pd.DataFrame, cycles: Sequence[tuple[float, float]], *, points: int = 101
) -> np.ndarray:
    """Resample every column of ``table`` onto each cycle's 0-100 % grid.

    Returns an array (cycles, points, columns).
    """
    time = np.asarray(table.index, dtype=float)
    values = table.to_numpy(dtype=float)
    out = np.empty((len(cycles), points, values.shape[1]))
    for i, (a, b) in enumerate(cycles):
        grid = np.linspace(a, b, points)
        for j in range(values.shape[1]):
            out[i, :, j] = np.interp(grid, time, values[:, j])
    return out


def _grid(n: int, ncols: int) -> tuple[int, int]:
    cols = max(1, min(ncols, n))
    return math.ceil(n / cols), cols


def overlay_figure(
    *,
    sources: Mapping[str, pd.DataFrame],
    columns: Sequence[str],
    ylabel: str,
    title: str,
    events: Mapping[str, Any] | None = None,
    side: str = "right",
    points: int = 101,
    ncols: int = 4,
    labels: Mapping[str, str] | None = None,
) -> Figure:
    """One panel per column, one line per source (e.g. measured vs each estimator).

    Sources lacking a column are left out of that panel. With ``events`` holding a complete gait
    cycle of ``side`` inside the time span that every source covers, the x axis is the gait cycle
    (%) for every source, each drawn as the mean over those cycles with a +/- 1 SD band; otherwise
    every source is drawn against time (s). One axis for all: a source never mixes seconds into a
    gait-cycle axis.
    """
    if not sources:
        raise ValueError("overlay_figure needs at least one source table")
    if not columns:
        raise ValueError("overlay_figure needs at least one column to plot")
    start = max(float(t.index.min()) for t in sources.values())
    end = min(float(t.index.max()) for t in sources.values())
    cycles = gait_cycles(events, side=side, start=start, end=end) if start < end else []
    rows, cols = _grid(len(columns), ncols)
    fig = Figure(figsize=(3.4 * cols, 2.5 * rows + 0.9))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    _fixed_margins(fig, rows, cols)
    pct = np.linspace(0.0, 100.0, points)
    for ax, column in zip(axes, columns, strict=False):
        for k, (name, table) in enumerate(sources.items()):
            if column not in table.columns:
                continue
            colour = COLOURS[k % len(COLOURS)]
            series = table[[column]].dropna()
            if series.empty:
                continue
            usable = [
                c for c in cycles if series.index.min() <= c[0] and c[1] <= series.index.max()
            ]
            if cycles and not usable:
                continue  # gaps in this source's column: it cannot be drawn on the cycle axis
            if cycles:
                data = cycle_normalise(series, usable, points=points)[:, :, 0]
                mean = data.mean(axis=0)
                ax.plot(pct, mean, color=colour, lw=1.4, label=name)
                if len(usable) > 1:
                    sd = data.std(axis=0)
                    ax.fill_between(pct, mean - sd, mean + sd, color=colour, alpha=0.15, lw=0)
            else:
                ax.plot(series.index, series[column], color=colour, lw=1.2, label=name)
        ax.set_title((labels or {}).get(column, column), fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("gait cycle (%)" if cycles else "time (s)", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
    for ax in axes[len(columns):]:
        ax.set_visible(False)
    handles, names = _legend_entries(axes)
    if len(handles) > 1:
        fig.legend(handles, names, loc="lower center", ncols=len(names), fontsize=8, frameon=False)
    suffix = f" (mean +/- SD of {len(cycles)} {side} cycles)" if len(cycles) > 1 else ""
    fig.suptitle(title + suffix, fontsize=10)
    return fig


def cohort_figure(*, summary: pd.DataFrame, metrics: Sequence[str], ncols: int = 3) -> Figure:
    """Grouped bars of headline metrics: one panel per metric, subjects on x, one bar per method.

    ``summary`` has columns ``subject``, ``method`` and one column per metric.
    """
    if not metrics:
        raise ValueError("cohort_figure needs at least one metric column")
    subjects = list(dict.fromkeys(summary["subject"]))
    methods = list(dict.fromkeys(summary["method"]))
    rows, cols = _grid(len(metrics), ncols)
    fig = Figure(figsize=(max(4.0, 1.2 * len(subjects) + 2.5) * cols, 3.0 * rows + 0.6),
                 layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(subjects))
    for ax, metric in zip(axes, metrics, strict=False):
        for k, method in enumerate(methods):
            part = summary[summary["method"] == method].set_index("subject")
            heights = [
                float(part.at[s, metric]) if s in part.index and pd.notna(part.at[s, metric])
                else np.nan
                for s in subjects
            ]
            ax.bar(x + (k - (len(methods) - 1) / 2) * width, heights, width,
                   color=COLOURS[(k + 1) % len(COLOURS)], label=method)
        ax.set_xticks(x, subjects, rotation=30, ha="right", fontsize=8)
        ax.set_title(metric, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    handles, names = _legend_entries(axes)
    if handles:
        fig.legend(handles, names, loc="outside lower center", ncols=len(names), fontsize=8)
    fig.suptitle("Headline metrics per subject and method (mean over trials and channels)",
                 fontsize=10)
    return fig


def _legend_entries(axes: Any) -> tuple[list[Any], list[str]]:
    """One legend entry per label over all panels (a source may be absent from some)."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(name, handle)
    return list(entries.values()), list(entries)


def _fixed_margins(fig: Figure, rows: int, cols: int) -> None:
    """Margins and gaps of a panel grid in inches: room for tick labels, axis labels, panel titles,
    the figure title above and a legend below (a fixed layout draws once; a constrained one measures
    every tick label first, which doubles the time to render)."""
    width, height = fig.get_size_inches()
    left, right, top, bottom, gap_w, gap_h = 0.65, 0.15, 0.6, 0.9, 0.7, 0.75
    panel_w = (width - left - right - (cols - 1) * gap_w) / cols
    panel_h = (height - top - bottom - (rows - 1) * gap_h) / rows
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        top=1 - top / height,
        bottom=bottom / height,
        wspace=gap_w / panel_w,
        hspace=gap_h / panel_h,
    )


def figure_png(fig: Figure, *, dpi: int = 100) -> bytes:
    """Render a figure to PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
