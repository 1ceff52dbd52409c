"""The cohort summary: ``results/summary.tsv`` and ``results/summary.html`` with a cohort figure.

One row per subject and method; one column per ``"<quantity> <metric>"`` of the subjects'
``evaluation.tsv`` files, holding the mean over trials and channels.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from musculo import logger
from musculo.io.atomic import atomic_output
from musculo.report.collect import (
    ReportInputError,
    method_order,
    metric_direction,
    null_floor_table,
    package_versions,
    read_evaluation,
    settings_with_defaults,
)
from musculo.report.contact import summary_columns
from musculo.report.figures import cohort_figure, figure_png
from musculo.report.html import EmbeddedFigure, environment


def summary_table(evaluation: pd.DataFrame, *, methods: Sequence[str] = ()) -> pd.DataFrame:
    """Headline metrics: one row per (subject, method), mean over trials and channels.

    Columns: ``subject``, ``method``, ``n_trials`` and one ``"<quantity> <metric>"`` per pair.
    """
    if evaluation.empty:
        return pd.DataFrame(columns=["subject", "method", "n_trials"])
    keyed = evaluation.assign(column=summary_columns(evaluation)).dropna(subset=["column"])
    wide = keyed.pivot_table(index=["subject", "method"], columns="column", values="value",
                             aggfunc="mean", sort=False, dropna=False)
    wide = wide[list(dict.fromkeys(keyed["column"]))]
    trials = keyed.groupby(["subject", "method"], sort=False)["trial"].nunique()
    wide = wide[wide.index.isin(trials.index)]  # only (subject, method) pairs with rows
    wide.insert(0, "n_trials", trials.reindex(wide.index).to_numpy())
    table = wide.reset_index()
    table.columns.name = None
    order = method_order(list(table["method"]), methods)
    subjects = list(dict.fromkeys(evaluation["subject"]))
    table["_s"] = table["subject"].map(subjects.index)
    table["_m"] = table["method"].map(order.index)
    return table.sort_values(["_s", "_m"]).drop(columns=["_s", "_m"]).reset_index(drop=True)


def build_summary(
    *,
    evaluations: Sequence[str | os.PathLike[str]],
    output_tsv: str | os.PathLike[str],
    output_html: str | os.PathLike[str],
    figure: str | os.PathLike[str] | None = None,
    settings: Mapping[str, Any] | None = None,
    failed: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Write the cohort table (TSV), its HTML page (self-contained) and, optionally, its figure.

    Args:
        evaluations: every subject's ``evaluation.tsv``.
        output_tsv: ``results/summary.tsv``.
        output_html: ``results/summary.html``; links to ``<subject>/report.html`` beside it.
        figure: when given, the cohort figure is also written there as PNG.
        settings: the ``report`` config section (defaults from the config schema).
        failed: subjects that could not be processed (id -> error), listed as failed on the page
            and in the log (their subject file is invalid, so they have no evaluation).
    """
    settings = settings_with_defaults(settings)
    failed = dict(failed or {})
    for sid, error in failed.items():
        logger.warning("summary: subject %s failed: %s", sid, error)
    if not evaluations and not failed:
        raise ReportInputError("summary: no evaluation.tsv given; are there any subjects?")
    parts = []
    for path in evaluations:
        part = read_evaluation(path)
        if part.empty:
            logger.warning("%s: no rows; the subject is left out of the summary", path)
        parts.append(part)
    evaluation = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["subject", "trial", "method", "quantity", "channel", "metric", "value"])
    table = summary_table(evaluation, methods=settings["methods"])
    metrics = [c for c in table.columns if c not in ("subject", "method", "n_trials")]
    plotted = [m for m in settings["summary_metrics"] if m in metrics] or metrics

    best: set[tuple[str, str, str]] = set()  # (subject, method, column) holding the best value
    for column in metrics:
        direction = metric_direction(column.split(" ", 1)[1], settings)
        if not direction:
            continue
        for subject, group in table.groupby("subject", sort=False):
            values = group[column].dropna()
            if len(values) > 1:
                top = values.max() if direction > 0 else values.min()
                best |= {(subject, m, column) for m in group.loc[values.index[values == top],
                                                                 "method"]}

    embedded = None
    if plotted and not table.empty:
        fig = cohort_figure(summary=table, metrics=plotted)
        embedded = EmbeddedFigure("summary", "Cohort", "Headline metrics per subject and method.",
                                  figure_png(fig, dpi=settings["dpi"]))
    html_path = Path(output_html)
    html = environment().get_template("summary.html.j2").render(
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        versions=package_versions(),
        metrics=metrics,
        rows=[
            {"subject": r["subject"], "method": r["method"], "n_trials": r["n_trials"],
             "cells": [(m, r[m], (r["subject"], r["method"], m) in best) for m in metrics]}
            for _, r in table.iterrows()
        ],
        subjects=list(dict.fromkeys(table["subject"])),
        floor=null_floor_table(evaluation).to_dict("records"),
        figure=embedded,
        failed=failed,
        isfinite=lambda v: v is not None and np.isfinite(v),
    )
    if figure is not None:
        with atomic_output(figure) as tmp:
            tmp.write_bytes(embedded.png if embedded else _empty_png(settings["dpi"]))
    with atomic_output(output_tsv) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.10g")
    with atomic_output(html_path) as tmp:
        tmp.write_text(html)
    logger.info("summary of %d subjects and %d methods written to %s",
                table["subject"].nunique(), table["method"].nunique(), html_path)
    return table


def build_partial_summary(
    *,
    results_dir: str | os.PathLike[str],
    subjects: Sequence[str],
    failed: Mapping[str, str] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> list[str] | None:
    """After a run in which some subjects' jobs failed: the summary of those that finished.

    A subject has finished when ``<results_dir>/<id>/evaluation.tsv`` and ``report.html`` exist;
    every other subject of ``subjects`` is listed as failed (pointing at its logs), beside
    ``failed`` (subjects whose subject file is invalid). Writes ``summary.tsv``, ``summary.html``
    and ``summary.png`` in ``results_dir`` and returns the finished subjects, or returns None and
    writes nothing when no subject finished. A later run that completes them rebuilds the summary.
    """
    root = Path(results_dir)
    done = [s for s in subjects if all((root / s / f).is_file() for f in ("evaluation.tsv", "report.html"))]
    if not done:
        return None
    missing = dict(failed or {})
    for sid in subjects:
        if sid not in done:
            missing[sid] = f"a job failed or did not run; see {root / 'logs' / sid}"
    build_summary(
        evaluations=[root / s / "evaluation.tsv" for s in done],
        output_tsv=root / "summary.tsv",
        output_html=root / "summary.html",
        figure=root / "summary.png",
        settings=settings,
        failed=missing,
    )
    return done


def _empty_png(dpi: int) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 1))
    fig.text(0.5, 0.5, "no evaluation rows yet", ha="center", va="center")
    return figure_png(fig, dpi=dpi)
