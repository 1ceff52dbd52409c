"""Report pieces for joint contact forces: per-method figures and the summary's contact columns.

Reads what the contact stage wrote (``results/<s>/contact/<method>/curves/<trial>.sto`` in N and
``info.json`` with the body weight and the published peak ranges). Each figure shows one panel per
channel in body weights, one line per method: the mean over the trials' gait cycles (strike to
next strike of the channel's side) with a +/- 1 SD band, or over their stance phases (strike to
foot off) when no trial holds a whole cycle; the published range of walking peaks is a grey band.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from musculo.io.tables import read_sto
from musculo.report.figures import COLOURS, cycle_normalise, gait_cycles

INTRO = (
    "Joint contact forces from each method's muscle forces (OpenSim JointReaction with the "
    "method's forces and the external loads; knee compartments by a frontal-plane moment balance), "
    "in body weights (BW). Grey bands: range of walking peaks reported by instrumented-implant "
    "studies. Peaks per trial are in the metrics (quantity contact_force)."
)

_SIDES = {"r": "right", "l": "left"}


def channel_stem(channel: str) -> tuple[str, str]:
    """``knee_r_total`` -> (``knee_total``, ``r``); ``hip_l`` -> (``hip``, ``l``)."""
    parts = channel.split("_")
    if len(parts) >= 2 and parts[1] in _SIDES:
        return "_".join([parts[0], *parts[2:]]), parts[1]
    return channel, ""


def phases(events: Mapping[str, Any] | None, *, side: str, start: float, end: float
           ) -> dict[str, list[tuple[float, float]]]:
    """``{"gait cycle (%)": cycles, "stance (%)": stance phases}`` of ``side`` inside ``[start, end]``."""
    record = (events or {}).get(side) or {}
    strikes = sorted(float(t) for t in record.get("strike", []) or [])
    offs = sorted(float(t) for t in record.get("off", []) or [])
    stance = []
    for a in strikes:
        b = next((t for t in offs if t > a), None)
        if b is not None and start - 1e-9 <= a and b <= end + 1e-9:
            stance.append((a, b))
    return {"gait cycle (%)": gait_cycles(events, side=side, start=start, end=end), "stance (%)": stance}


def _events(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        return None


def contact_figure(
    *,
    curves: Mapping[str, Mapping[str, pd.DataFrame]],
    events: Mapping[str, Mapping[str, Any] | None],
    body_weight: float,
    bands: Mapping[str, Sequence[float]] | None = None,
    title: str,
    points: int = 101,
) -> tuple[Figure, list[str]]:
    """One panel per channel, one mean +/- SD line per method (BW); returns the figure and notes.

    ``curves``: method -> trial -> channels over time (N); ``events``: trial -> ``events.json``.
    """
    channels = list(dict.fromkeys(c for per in curves.values() for t in per.values() for c in t.columns))
    cols = min(5, max(1, len(channels)))
    rows = -(-len(channels) // cols)
    fig = Figure(figsize=(3.0 * cols, 2.4 * rows + 0.7), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    notes: list[str] = []
    pct = np.linspace(0.0, 100.0, points)
    for ax, channel in zip(axes, channels, strict=False):
        stem, side = channel_stem(channel)
        xlabel = "time (s)"
        for k, (method, per_trial) in enumerate(curves.items()):
            colour = COLOURS[0] if method == "truth" else COLOURS[(k + 1) % len(COLOURS)]
            # one kind of phase for all trials: whole cycles when every trial has one, else stance
            found = {}
            for trial, table in per_trial.items():
                if channel in table.columns:
                    t = table.index.to_numpy(dtype=float)
                    found[trial] = phases(events.get(trial), side=_SIDES.get(side, "right"),
                                          start=float(t[0]), end=float(t[-1]))
            kind = next((k for k in ("gait cycle (%)", "stance (%)")
                         if found and all(p[k] for p in found.values())), None)
            if kind is not None:
                data = np.concatenate([
                    cycle_normalise(per_trial[trial][[channel]] / body_weight, spans[kind],
                                    points=points)[:, :, 0]
                    for trial, spans in found.items()
                ])
                mean = data.mean(axis=0)
                ax.plot(pct, mean, color=colour, lw=1.4, label=method.upper())
                if len(data) > 1:
                    sd = data.std(axis=0)
                    ax.fill_between(pct, mean - sd, mean + sd, color=colour, alpha=0.15, lw=0)
                xlabel = kind
            else:
                for j, table in enumerate(per_trial.values()):
                    if channel in table.columns:
                        ax.plot(table.index, table[channel] / body_weight, color=colour, lw=1.0,
                                label=method.upper() if j == 0 else None)
                if found:
                    notes.append(f"{channel} ({method}): no trial with a whole gait cycle or stance "
                                 "phase of that side; drawn over time")
        if bands and stem in bands:
            lo, hi = bands[stem]
            ax.axhspan(lo, hi, color="0.5", alpha=0.2, lw=0, label="published peaks")
        ax.set_title(channel, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("force (BW)", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
    for ax in axes[len(channels):]:
        ax.set_visible(False)
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(name, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside lower center",
                   ncols=len(entries), fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig, notes


def contact_figures(
    *,
    results: Path,
    subject: str,
    trials: Sequence[str],
    methods: Sequence[str] = (),
    points: int = 101,
    notes: list[str] | None = None,
    missing: list[str] | None = None,
) -> list[tuple[str, str, str, Figure]]:
    """Figures of the subject's contact forces: ``(slug, title, caption, figure)``.

    Methods are the folders of ``results/contact`` (``methods`` first, in their order). Trials
    without curves are listed in ``missing``; notes on drawing in ``notes``.
    """
    notes = notes if notes is not None else []
    missing = missing if missing is not None else []
    root = results / "contact"
    if not root.is_dir():
        missing.append(str(root))
        return []
    found = sorted(p.parent.parent.name for p in root.glob("*/curves/info.json"))
    order = [m for m in ("truth", *methods) if m in found]
    order += [m for m in found if m not in order]
    curves: dict[str, dict[str, pd.DataFrame]] = {}
    body_weight, bands = None, {}
    for method in order:
        info = json.loads((root / method / "curves" / "info.json").read_text())
        if info.get("status") == "not fitted":
            reason = info.get("reason")
            notes.append(f"{method.upper()}: no contact forces, the method was not fitted ({reason}).")
            continue
        body_weight = body_weight or float(info["body_weight"])
        bands = bands or dict(info.get("published_peak_bw") or {})
        for trial in trials:
            path = root / method / "curves" / f"{trial}.sto"
            if path.is_file():
                curves.setdefault(method, {})[trial] = read_sto(path)
            else:
                missing.append(str(path))
    if not curves or body_weight is None:
        notes.append(f"No contact forces under {root}.")
        return []
    events = {t: _events(results / t / "events.json") for t in trials}
    fig, more = contact_figure(curves=curves, events=events, body_weight=body_weight, bands=bands,
                               title=f"{subject}: joint contact forces", points=points)
    notes += more
    caption = (f"Joint contact forces of {subject} per method, mean +/- SD over trials "
               f"({', '.join(m.upper() for m in curves)}), in body weights.")
    return [("contact_forces", "Joint contact forces", caption, fig)]


def summary_columns(evaluation: pd.DataFrame) -> pd.Series:
    """Summary column of each ``evaluation.tsv`` row: ``"<quantity> <metric>"``, except contact forces.

    Contact-force rows in body weights become ``"contact_force <joint> <metric>"`` (e.g.
    ``contact_force knee_total peak_BW``: one column per joint and compartment, both sides pooled);
    those in N get no column (None), they are in the subjects' evaluation tables.
    """
    column = evaluation["quantity"].astype(str) + " " + evaluation["metric"].astype(str)
    contact = evaluation["quantity"] == "contact_force"
    if contact.any():
        stems = evaluation.loc[contact, "channel"].astype(str).map(lambda c: channel_stem(c)[0])
        metric = evaluation.loc[contact, "metric"].astype(str)
        column.loc[contact] = ("contact_force " + stems + " " + metric).where(metric.str.endswith("_BW"))
    return column
