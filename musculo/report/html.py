"""The per-subject validation report: one self-contained HTML file (figures as base64 PNG).

The report reads what the pipeline wrote under ``results/<subject>/`` (see docs/DEVELOPING.md),
renders every section whose inputs exist and states plainly which files are missing.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from musculo import logger
from musculo.evaluation import source_trial
from musculo.io.atomic import atomic_output
from musculo.io.tables import in_degrees, read_sto
from musculo.report.collect import (
    QualityItem,
    ReportInputError,
    config_sha256,
    inputs_checksums,
    method_order,
    metric_direction,
    null_floor_table,
    package_versions,
    quality_items,
    read_evaluation,
    read_json,
    read_table,
    settings_with_defaults,
)
from musculo.report.contact import INTRO as CONTACT_INTRO
from musculo.report.contact import contact_figures
from musculo.report.figures import figure_png, overlay_figure
from musculo.subject import load_subject


@dataclass
class EmbeddedFigure:
    """A rendered figure: file-name slug, title, caption and PNG bytes."""

    slug: str
    title: str
    caption: str
    png: bytes

    @property
    def data_uri(self) -> str:
        """The PNG as a ``data:`` URI for an ``<img src>``."""
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass
class Section:
    """A report section: its figures, tables, notes and the input files it lacked."""

    slug: str
    title: str
    intro: str = ""
    figures: list[EmbeddedFigure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


@dataclass
class MetricCell:
    """One value of a metrics table, with its coordinates in ``evaluation.tsv``."""

    method: str
    value: float | None
    best: bool = False

    @property
    def text(self) -> str:
        """The value as shown (4 significant digits)."""
        return "" if self.value is None or not np.isfinite(self.value) else f"{self.value:.4g}"


@dataclass
class MetricsTable:
    """Methods side by side for one quantity: rows (trial, channel), column groups per metric."""

    quantity: str
    metrics: list[str]
    methods: list[str]
    rows: list[tuple[str, str, list[list[MetricCell]]]]  # trial, channel, [metric][method]


def environment() -> jinja2.Environment:
    """The Jinja environment holding the report templates (HTML autoescaped)."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("musculo.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def metrics_tables(
    evaluation: pd.DataFrame, *, settings: Mapping[str, Any], aggregate: bool = False
) -> list[MetricsTable]:
    """Pivot ``evaluation.tsv`` rows into one table per quantity, methods side by side.

    Rows are (trial, channel); with ``aggregate`` there is one row per quantity holding the mean
    over trials and channels. In each row and metric the best value among the methods is marked
    when the metric's direction is known (settings ``lower_is_better`` / ``higher_is_better``).
    """
    tables = []
    for quantity, part in evaluation.groupby("quantity", sort=False):
        methods = method_order(list(part["method"]), settings["methods"])
        metrics = list(dict.fromkeys(part["metric"]))
        if aggregate:
            part = part.assign(trial="all", channel="mean")
        values = part.groupby(["trial", "channel", "metric", "method"], sort=False)["value"].mean()
        rows = []
        for trial, channel in dict.fromkeys(zip(part["trial"], part["channel"], strict=True)):
            groups = []
            for metric in metrics:
                cells = [MetricCell(m, values.get((trial, channel, metric, m))) for m in methods]
                direction = metric_direction(metric, settings)
                finite = [c for c in cells if c.value is not None and np.isfinite(c.value)]
                if direction and len(finite) > 1:
                    best = max(finite, key=lambda c: direction * c.value)
                    for c in finite:
                        c.best = c.value == best.value
                groups.append(cells)
            rows.append((trial, channel, groups))
        tables.append(MetricsTable(str(quantity), metrics, methods, rows))
    return tables


def _figure(slug: str, title: str, caption: str, fig: Any, dpi: int) -> EmbeddedFigure:
    return EmbeddedFigure(slug=slug, title=title, caption=caption, png=figure_png(fig, dpi=dpi))


def _limit(columns: list[str], settings: Mapping[str, Any], section: Section, what: str) -> list[str]:
    n = settings["max_panels"]
    if len(columns) > n:
        section.notes.append(
            f"{what}: {len(columns) - n} more not drawn ({', '.join(columns[n:])}); "
            "raise report.max_panels to draw them"
        )
    return columns[:n]


def _read_events(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    events = read_json(path)
    if not isinstance(events, dict):
        raise ReportInputError(
            f"{path}: expected {{\"right\": {{\"strike\": [...], \"off\": [...]}}, \"left\": ...}}"
            "; rerun the import stage")
    return events


def _methods_found(results_dir: Path) -> list[str]:
    return sorted(
        p.name for p in results_dir.iterdir()
        if p.is_dir() and (p / "predictions").is_dir()
    )


def _align_moments(prediction: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Rename predicted columns to the inverse-dynamics names (``<coordinate>_moment``)."""
    renamed = {c: f"{c}_moment" for c in prediction.columns
               if c not in reference.columns and f"{c}_moment" in reference.columns}
    return prediction.rename(columns=renamed)


def build_subject_report(
    *,
    subject: str,
    results_dir: str | os.PathLike[str],
    evaluation: str | os.PathLike[str],
    quality: str | os.PathLike[str],
    output: str | os.PathLike[str],
    figures_dir: str | os.PathLike[str] | None = None,
    subject_file: str | os.PathLike[str] | None = None,
    trials: Sequence[str] | None = None,
    config_hash: str | None = None,
    config: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    truth: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``results/<subject>/report.html`` (self-contained) and, optionally, its figures.

    Args:
        subject: subject id.
        results_dir: the subject's results folder (``results/<subject>``).
        evaluation: the subject's ``evaluation.tsv``.
        quality: the subject's ``quality.tsv``.
        output: the HTML file to write.
        figures_dir: when given, every figure is also written there as ``<slug>.png``
            (for ``snakemake --report``).
        subject_file: ``subject.yaml``; gives mass and height (residual limits), the tracked
            coordinates, the unmeasured muscles and the trials.
        trials: dynamic trials to report; default: the subject file's dynamic trials, else every
            folder of ``results_dir`` holding ``ik.mot``.
        config_hash: sha256 of the run's configuration, shown as provenance;
            computed from ``config`` when not given.
        config: the run's configuration (only hashed).
        settings: the ``report`` config section (defaults from the config schema).
        truth: a digital twin's ``truth.npz``; its true excitations are drawn beside every
            estimator's in the deep-muscle and hidden-muscle figures.
    """
    settings = settings_with_defaults(settings)
    results = Path(results_dir)
    if not results.is_dir():
        raise ReportInputError(f"{results}: results folder not found; run the pipeline first")
    dpi, points = settings["dpi"], settings["cycle_points"]
    if config_hash is None and config is not None:
        config_hash = config_sha256(config)

    info: dict[str, Any] = {}
    coordinates: list[str] = []
    unmeasured: list[str] = []
    measured_muscles: list[str] = []
    mass = height = None
    if subject_file is not None:
        subj = load_subject(subject_file)
        mass, height = subj.mass, subj.height
        coordinates, unmeasured, measured_muscles = subj.coordinates, subj.unmeasured, subj.measured_muscles
        info = {"mass (kg)": mass, "height (m)": height,
                "description": subj.raw.get("description", ""),
                "EMG channels": len(subj.emg_channels),
                "measured muscles": ", ".join(subj.measured_muscles),
                "unmeasured muscles": ("auto: every muscle without EMG that spans a tracked coordinate"
                                       if subj.unmeasured_auto else ", ".join(unmeasured)),
                "hidden in turn (LOMO)": ", ".join(subj.hide)}
        if trials is None:
            trials = subj.trial_names("dynamic")
    if trials is None:
        trials = sorted(p.parent.name for p in results.glob("*/ik.mot"))
    trials = list(trials)

    eval_table = read_evaluation(evaluation)
    eval_table = eval_table[eval_table["subject"].isin([subject, ""])]
    found = _methods_found(results)
    methods = method_order(found, settings["methods"])
    sections: list[Section] = []

    # -- provenance
    inputs = results / "inputs.json"
    prov = Section("provenance", "Subject and provenance")
    checksums = inputs_checksums(inputs) if inputs.is_file() else []
    if not inputs.is_file():
        prov.missing.append(str(inputs))
    sections.append(prov)

    # -- data quality
    qual = Section("quality", "Data quality",
                   "Verdicts from quality.tsv: pass within the limit, warn up to twice the limit, fail "
                   "beyond; the limits are set in the opensim section of the configuration.")
    quality_path = Path(quality)
    quality_table = None
    items: list[QualityItem] = []
    if quality_path.is_file():
        quality_table = pd.read_csv(quality_path, sep="\t", keep_default_na=False)
        items = quality_items(quality_path)
    else:
        qual.missing.append(str(quality_path))
    sections.append(qual)

    # -- kinematics and moments
    kin = Section("kinematics", "Kinematics and joint moments",
                  "Joint angles from inverse kinematics and net joint moments from inverse "
                  "dynamics, per trial.")
    so_emg = Section("so-emg", "Static optimization activations vs EMG envelopes",
                     "Muscle activations from static optimization against the normalised EMG "
                     "envelope of the same muscle (both 0-1).")
    deep = Section("excitations", "Deep-muscle excitations per estimator",
                   "Excitations of the muscles without surface EMG predicted by each estimator, "
                   "with static optimization's activation where available.")
    lomo = Section("lomo", "Hidden muscles vs measured envelope (leave-one-muscle-out)",
                   "Each measured muscle hidden in turn from the estimator; its predicted "
                   "excitation against the envelope that was measured.")
    torque = Section("torque", "Torque tracking on held-out trials",
                     "Joint moments produced by each estimator's excitations through the "
                     "musculoskeletal model against inverse dynamics, on the trials held out from "
                     "fitting.")
    held_out = {m: {source_trial(str(t)) for t in eval_table.loc[eval_table["method"] == m, "trial"]}
                for m in methods}
    true_excitations = _truth_excitations(truth) if truth is not None else {}
    if truth is not None:
        for sec in (deep, lomo):
            sec.notes.append("TRUTH: the twin's true excitations (truth.npz), made by the twin "
                             "generator on the true model; no estimator sees them.")

    for trial in trials:
        tdir = results / trial
        ctx = _TrialContext(
            subject=subject, trial=trial, settings=settings, dpi=dpi,
            events=_read_events(tdir / "events.json"), truth=true_excitations.get(trial))
        ik = read_table(tdir / "ik.mot")
        idt = read_table(tdir / "id.sto")
        emg = read_table(tdir / "emg.sto")
        so = read_table(tdir / "so_activation.sto")
        _kinematics_figures(ctx, kin, tdir, ik, idt, coordinates)
        _so_emg_figure(ctx, so_emg, tdir, emg, so)
        _deep_figure(ctx, deep, results, methods, emg, so, unmeasured, measured_muscles)
        _lomo_figure(ctx, lomo, results, methods, tdir, emg)
        _torque_figure(ctx, torque, results, methods, idt, held_out)
    if not methods:
        for sec in (deep, lomo, torque):
            sec.notes.append(f"No estimator output under {results} (folders with predictions/"
                             "<trial>.excitations.sto, predictions/<trial>.moments.sto or lomo/).")
    for sec in (deep, torque):
        if methods and not sec.figures:
            sec.notes.append("No figure: the estimators wrote no matching output for the trials.")
    if methods and not lomo.figures and not any((results / m / "lomo").is_dir() for m in methods):
        lomo.missing.append(str(results / "<method>" / "lomo"))
    contact = Section("contact", "Joint contact forces", CONTACT_INTRO)
    for slug, title, caption, fig in contact_figures(
            results=results, subject=subject, trials=trials, methods=methods, points=points,
            notes=contact.notes, missing=contact.missing):
        contact.figures.append(_figure(slug, title, caption, fig, dpi))
    sections += [kin, so_emg, deep, lomo, torque, contact]

    metrics = Section("metrics", "Metrics",
                      "From evaluation.tsv: methods side by side; the better value in each row is "
                      "marked (bold, with a star).")
    if eval_table.empty:
        metrics.notes.append(f"{evaluation} holds no row for subject {subject}.")
    sections.append(metrics)

    for sec in sections:
        sec.missing = list(dict.fromkeys(sec.missing))
        sec.notes = list(dict.fromkeys(sec.notes))
    html = environment().get_template("report.html.j2").render(
        subject=subject,
        info=info,
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        versions=package_versions(),
        python=platform.python_version(),
        config_hash=config_hash or "not given",
        checksums=checksums,
        trials=trials,
        methods=methods,
        sections=sections,
        quality_items=items,
        quality_table=quality_table,
        summary_tables=metrics_tables(eval_table, settings=settings, aggregate=True),
        floor=null_floor_table(eval_table).to_dict("records"),
        isfinite=lambda v: v is not None and bool(np.isfinite(v)),
        tables=metrics_tables(eval_table, settings=settings),
        verdict_counts=_verdict_counts(items),
    )
    figures = [f for s in sections for f in s.figures]
    if figures_dir is not None:
        with atomic_output(figures_dir, is_dir=True) as tmp_dir:
            for fig in figures:
                (tmp_dir / f"{fig.slug}.png").write_bytes(fig.png)
    out = Path(output)
    with atomic_output(out) as tmp:
        tmp.write_text(html)
    logger.info("%s: report with %d figures and %d metric rows written to %s",
                subject, len(figures), len(eval_table), out)
    return out


@dataclass
class _TrialContext:
    """What every figure of one trial shares."""

    subject: str
    trial: str
    settings: Mapping[str, Any]
    dpi: int
    events: dict[str, Any] | None
    truth: pd.DataFrame | None  # a twin's true excitations of this trial (time index)

    def figure(self, section: Section, key: str, title: str, caption: str, *,
               sources: Mapping[str, pd.DataFrame], columns: list[str], ylabel: str) -> None:
        """Draw ``columns`` of ``sources`` over this trial and add the figure to ``section``."""
        section.figures.append(_figure(
            f"{self.trial}_{key}", f"{self.trial}: {title}", caption,
            overlay_figure(sources=sources, columns=columns, ylabel=ylabel,
                           title=f"{self.subject} {self.trial}: {title}", events=self.events,
                           side=self.settings["gait_side"], points=self.settings["cycle_points"]),
            self.dpi))


def _truth_excitations(path: str | os.PathLike[str]) -> dict[str, pd.DataFrame]:
    """A twin's true excitations per dynamic trial, as tables indexed by time."""
    from musculo.twin.generate import load_truth

    data = load_truth(path)
    muscles = [str(m) for m in data["muscles"]]
    return {
        str(trial): pd.DataFrame(data[f"{trial}/excitation"], columns=muscles,
                                 index=pd.Index(data[f"{trial}/time"], name="time"))
        for trial in data["trials"]
    }


def _kinematics_figures(ctx: _TrialContext, kin: Section, tdir: Path, ik: pd.DataFrame | None,
                        idt: pd.DataFrame | None, coordinates: Sequence[str]) -> None:
    """Joint angles (IK) and net joint moments (ID) of one trial."""
    for path, table in ((tdir / "ik.mot", ik), (tdir / "id.sto", idt)):
        if table is None:
            kin.missing.append(str(path))
    if ctx.events is None:
        kin.notes.append(f"{ctx.trial}: no events.json, figures use time instead of gait cycle.")
    if ik is not None:
        cols = [c for c in coordinates if c in ik.columns] or [
            c for c in ik.columns if not c.endswith(("_tx", "_ty", "_tz"))]
        cols = _limit(cols, ctx.settings, kin, f"{ctx.trial} angles")
        ctx.figure(kin, "kinematics", "joint angles",
                   f"Joint angles of trial {ctx.trial} from inverse kinematics.",
                   sources={"IK": ik}, columns=cols,
                   ylabel="angle (deg)" if in_degrees(ik) else "angle (rad)")
    if idt is not None:
        wanted = [f"{c}_moment" for c in coordinates]
        cols = [c for c in wanted if c in idt.columns] or [
            c for c in idt.columns if c.endswith("_moment") and not c.startswith("pelvis")]
        cols = _limit(cols, ctx.settings, kin, f"{ctx.trial} moments")
        if cols:
            ctx.figure(kin, "moments", "joint moments",
                       f"Net joint moments of trial {ctx.trial} from inverse dynamics.",
                       sources={"ID": idt}, columns=cols, ylabel="moment (N m)")


def _so_emg_figure(ctx: _TrialContext, so_emg: Section, tdir: Path, emg: pd.DataFrame | None,
                   so: pd.DataFrame | None) -> None:
    """Static-optimization activations against the EMG envelopes of the same muscles."""
    if emg is None or so is None:
        so_emg.missing += [str(tdir / f) for f, t in (("emg.sto", emg),
                                                      ("so_activation.sto", so)) if t is None]
        return
    cols = _limit([c for c in emg.columns if c in so.columns], ctx.settings, so_emg,
                  f"{ctx.trial} muscles")
    if not cols:
        so_emg.notes.append(f"{ctx.trial}: no muscle is in both emg.sto and so_activation.sto.")
        return
    ctx.figure(so_emg, "so_vs_emg", "SO activation vs EMG",
               f"Static-optimization activation and normalised EMG envelope, trial {ctx.trial}.",
               sources={"EMG envelope": emg, "SO activation": so}, columns=cols,
               ylabel="activation / excitation (0-1)")


def _deep_figure(ctx: _TrialContext, deep: Section, results: Path, methods: Sequence[str],
                 emg: pd.DataFrame | None, so: pd.DataFrame | None,
                 unmeasured: Sequence[str], measured_muscles: Sequence[str] = ()) -> None:
    """Each estimator's excitations of the unmeasured muscles (with SO's, and a twin's truth).

    The muscles are the subject's ``unmeasured`` list, in its order. For ``unmeasured: auto``
    they are those the EMG-driven methods estimated (their predictions' muscles less
    ``measured_muscles``, the subject's EMG-mapped ones, and the trial's EMG columns), the most
    excited first (the mean over those methods of each muscle's mean excitation in the trial), so
    that ``report.max_panels`` keeps the muscles that carry the estimate and names the others."""
    predictions = {}
    for m in methods:
        path = results / m / "predictions" / f"{ctx.trial}.excitations.sto"
        if path.is_file():
            predictions[m.upper()] = read_sto(path)
        else:
            deep.missing.append(str(path))
    if not predictions:
        return
    measured = (set(emg.columns) if emg is not None else set()) | set(measured_muscles)
    cols = [c for c in unmeasured if any(c in p.columns for p in predictions.values())]
    if not cols:  # unmeasured: auto (or none listed): what the EMG-driven methods estimated
        driven = [p for k, p in predictions.items() if k != "SO"] or list(predictions.values())
        cols = list(dict.fromkeys(c for p in driven for c in p.columns if c not in measured))
        level = {c: float(np.nanmean([p[c].mean() for p in driven if c in p.columns])) for c in cols}
        cols.sort(key=lambda c: -level[c] if np.isfinite(level[c]) else np.inf)
    cols = _limit(cols, ctx.settings, deep, f"{ctx.trial} deep muscles")
    sources = {**({"TRUTH": ctx.truth} if ctx.truth is not None else {}), **predictions}
    if so is not None:
        sources["SO activation"] = so
    if cols:
        ctx.figure(deep, "deep_excitations", "deep-muscle excitations",
                   f"Excitations of unmeasured muscles predicted per estimator, trial {ctx.trial}.",
                   sources=sources, columns=cols, ylabel="excitation (0-1)")


def _lomo_figure(ctx: _TrialContext, lomo: Section, results: Path, methods: Sequence[str],
                 tdir: Path, emg: pd.DataFrame | None) -> None:
    """Each measured muscle's excitation predicted while it was hidden, against its envelope."""
    hidden: dict[str, dict[str, pd.Series]] = {}
    for m in methods:
        for path in sorted((results / m / "lomo").glob(f"*/{ctx.trial}.excitations.sto")):
            muscle = path.parent.name
            table = read_sto(path)
            if muscle in table.columns:
                hidden.setdefault(m.upper(), {})[muscle] = table[muscle]
            else:
                lomo.notes.append(f"{path}: no column {muscle!r}; not drawn.")
    if not hidden:
        return
    if emg is None:
        lomo.missing.append(str(tdir / "emg.sto"))
        return
    sources = {"measured envelope": emg}
    if ctx.truth is not None:
        sources["TRUTH"] = ctx.truth
    sources.update({m: pd.DataFrame(s) for m, s in hidden.items()})
    cols = sorted({c for s in hidden.values() for c in s})
    cols = _limit([c for c in cols if c in emg.columns], ctx.settings, lomo,
                  f"{ctx.trial} hidden muscles")
    if cols:
        ctx.figure(lomo, "lomo", "hidden muscles",
                   f"Excitation predicted for each muscle while it was hidden, against its "
                   f"measured envelope, trial {ctx.trial}.",
                   sources=sources, columns=cols, ylabel="excitation (0-1)")


def _torque_figure(ctx: _TrialContext, torque: Section, results: Path, methods: Sequence[str],
                   idt: pd.DataFrame | None, held_out: Mapping[str, set[str]]) -> None:
    """Each estimator's joint moments on its held-out trials against inverse dynamics."""
    if idt is None:
        return
    moments = {}
    for m in methods:
        path = results / m / "predictions" / f"{ctx.trial}.moments.sto"
        if path.is_file() and (not held_out[m] or ctx.trial in held_out[m]):
            moments[m.upper()] = _align_moments(read_sto(path), idt)
    if not moments:
        return
    cols = list(dict.fromkeys(c for p in moments.values() for c in p.columns if c in idt.columns))
    cols = _limit(cols, ctx.settings, torque, f"{ctx.trial} moments")
    if cols:
        ctx.figure(torque, "torque_tracking", "torque tracking",
                   f"Joint moments from each estimator against inverse dynamics, trial {ctx.trial}.",
                   sources={"inverse dynamics": idt, **moments}, columns=cols,
                   ylabel="moment (N m)")


def _verdict_counts(items: Sequence[QualityItem]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item.verdict] = counts.get(item.verdict, 0) + 1
    return counts
