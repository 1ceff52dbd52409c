"""Reports: per-subject HTML, cohort summary, browser rendering, and the Snakemake rules.

The tests write small, seeded results trees in the layout of docs/DEVELOPING.md (with
musculo.io.tables.write_sto and pandas), build the reports from them and compare what the HTML
shows with the files they wrote.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from musculo.io.tables import write_sto
from musculo.opensim_tools.quality import write_quality_table
from musculo.report.collect import (
    EVALUATION_COLUMNS,
    ReportInputError,
    config_sha256,
    metric_direction,
    settings_with_defaults,
)
from musculo.report.html import build_subject_report
from musculo.report.summary import build_summary

REPO = Path(__file__).resolve().parents[1]
MEASURED = {"VL": "vasti_r", "GAS": "gastroc_r", "TA": "tib_ant_r", "SOL": "soleus_r"}
DEEP = ["iliopsoas_r", "bifemsh_r"]
HIDE = ["soleus_r", "vasti_r"]
COORDS = ["hip_flexion_r", "knee_angle_r", "ankle_angle_r"]
TRIALS = ["walk1", "walk2"]
METHODS = ["nmm", "mse", "so"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_subject_file(root: Path, subject: str) -> Path:
    """A valid subject.yaml naming registered dataset files (never read by the report)."""
    folder = root / "subjects" / subject
    folder.mkdir(parents=True, exist_ok=True)
    channels = "\n".join(f"    {label}: [{muscle}]" for label, muscle in MEASURED.items())
    text = textwrap.dedent(f"""\
        id: {subject}
        description: generated test subject
        mass: 72.5
        height: 1.78
        model: {{dataset: opensim-models, file: models/gait10dof18musc.osim}}
        marker_set: {{dataset: gait2354-subject01, file: gait2354_Scale_MarkerSet.xml}}
        lab_frame: {{up: +Y, forward: +X}}
        trials:
          - {{name: static, role: static, file: {{dataset: gait2354-subject01, file: subject01_static.trc}}}}
          - {{name: walk1, role: dynamic, file: {{dataset: gait2354-subject01, file: subject01_walk1.trc}}}}
          - {{name: walk2, role: dynamic, file: {{dataset: gait2354-subject01, file: subject01_walk1.trc}}}}
        emg:
          channels:
        """) + channels + textwrap.dedent(f"""
        coordinates: [{", ".join(COORDS)}]
        unmeasured: [{", ".join(DEEP)}]
        hide: [{", ".join(HIDE)}]
        """)
    path = folder / "subject.yaml"
    path.write_text(text)
    return path


def _frame(time: np.ndarray, columns: list[str], rng: np.random.Generator, scale: float,
           offset: float = 0.0) -> pd.DataFrame:
    phase = rng.uniform(0, 2 * np.pi, len(columns))
    data = offset + scale * np.sin(2 * np.pi * time[:, None] / 0.55 + phase) \
        + 0.05 * scale * rng.standard_normal((len(time), len(columns)))
    return pd.DataFrame(data, index=pd.Index(time, name="time"), columns=columns)


def _activation(time: np.ndarray, columns: list[str], rng: np.random.Generator) -> pd.DataFrame:
    return _frame(time, columns, rng, 0.3, 0.4).clip(0.0, 1.0)


def make_results(root: Path, subject: str, seed: int, *, with_estimators: bool = True) -> Path:
    """Write a small results/<subject>/ tree; return results/<subject>."""
    rng = np.random.default_rng(seed)
    res = root / "results" / subject
    time = np.round(np.arange(0.0, 1.2001, 0.01), 4)
    muscles = list(MEASURED.values()) + DEEP
    (res / "model").mkdir(parents=True, exist_ok=True)
    (res / "inputs.json").write_text(json.dumps({
        "subject": subject,
        "sha256": {f"/data/{subject}/{t}.c3d": f"{rng.integers(1 << 62):064x}" for t in TRIALS},
    }))
    (res / "model" / "scale_quality.json").write_text(json.dumps({
        "marker_rms": float(rng.uniform(0.005, 0.015)), "marker_max": float(rng.uniform(0.05, 0.07)),
        "scale_factors": {"pelvis": [1.0, 1.02, 0.98]},
    }))
    for trial in TRIALS:
        t = res / trial
        t.mkdir(parents=True, exist_ok=True)
        if trial == "walk1":  # walk2 has no events: its figures use time
            (t / "events.json").write_text(json.dumps({
                "right": {"strike": [0.1, 0.65, 1.2], "off": [0.5, 1.05]},
                "left": {"strike": [0.37, 0.92], "off": [0.22, 0.77]}}))
        write_sto(t / "ik.mot", _frame(time, ["pelvis_tilt", "pelvis_tx", *COORDS], rng, 30.0),
                  in_degrees=True)
        write_sto(t / "ik_marker_errors.sto", pd.DataFrame(
            {"total_squared_error": rng.uniform(0, 0.01, len(time)),
             "marker_error_RMS": rng.uniform(0.005, 0.015, len(time)),
             "marker_error_max": rng.uniform(0.01, 0.03, len(time))},
            index=pd.Index(time, name="time")))
        write_sto(t / "id.sto", _frame(
            time, ["pelvis_tx_force", *(f"{c}_moment" for c in COORDS)], rng, 60.0))
        if trial == "walk1":  # the layout written by musculo.opensim_tools
            (t / "residuals.json").write_text(json.dumps({"start": 0.0, "frames": 121, "coordinates": {
                "pelvis_tx": {"unit": "N", "rms": 9.0, "max_abs": 30.0,
                              "max_pct_bw": float(rng.uniform(2, 12))},
                "pelvis_tilt": {"unit": "N m", "rms": 2.0, "max_abs": 9.0,
                                "max_pct_bw_height": float(rng.uniform(0.2, 3))}}}))
            (t / "so_reserves.json").write_text(json.dumps({"frames": 121, "actuators": {
                f"reserve_{c}": {"kind": "reserve", "coordinate": c, "rms": 1.0,
                                 "max_abs": float(rng.uniform(0, 30))} for c in COORDS}}))
        else:  # any other nested layout: numbers listed, limits guessed from the names
            (t / "residuals.json").write_text(json.dumps({
                "pelvis_tx_force": {"rms": float(rng.uniform(5, 20)),
                                    "max": float(rng.uniform(20, 60))},
                "pelvis_tilt_moment": {"rms": float(rng.uniform(1, 5))}}))
            (t / "so_reserves.json").write_text(json.dumps(
                {f"reserve_{c}": {"max": float(rng.uniform(0, 20))} for c in COORDS}))
        write_sto(t / "emg.sto", _activation(time, list(MEASURED.values()), rng))
        write_sto(t / "so_activation.sto", _activation(time, muscles, rng))
        (t / "emg_quality.json").write_text(json.dumps({
            "VL": {"flags": [], "metrics": {"snr_db": 21.0}, "use": True},
            "GAS": {"flags": ["saturated"], "metrics": {}, "use": True},
            "TA": {"flags": ["noise"], "metrics": {}, "use": False},
            "SOL": {"flags": [], "metrics": {}, "use": True}}))
        if not with_estimators:
            continue
        for method in ("nmm", "mse"):
            folder = res / method
            (folder / "lomo").mkdir(parents=True, exist_ok=True)
            write_sto(folder / "predictions" / f"{trial}.excitations.sto", _activation(time, DEEP, rng))
            # nmm names moments by coordinate, mse like inverse dynamics: both must be matched
            names = COORDS if method == "nmm" else [f"{c}_moment" for c in COORDS]
            write_sto(folder / "predictions" / f"{trial}.moments.sto", _frame(time, names, rng, 55.0))
            for muscle in HIDE:
                write_sto(folder / "lomo" / muscle / f"{trial}.excitations.sto",
                          _activation(time, [muscle], rng))
    if (res / "model" / "scale_quality.json").is_file():
        write_quality_table(
            subject=subject, scale_quality=res / "model" / "scale_quality.json",
            ik_errors=[res / t / "ik_marker_errors.sto" for t in TRIALS],
            id_residuals=[res / "walk1" / "residuals.json"], so_reserves=[res / "walk1" / "so_reserves.json"],
            emg_quality=[res / t / "emg_quality.json" for t in TRIALS], output_tsv=res / "quality.tsv",
            max_marker_rms=0.02, max_marker_error=0.04, ik_flag_limit=0.025, residual_force_pct_limit=5.0,
            residual_moment_pct_limit=1.0, reserve_limit=10.0)
    rows = []
    if with_estimators:
        for method in METHODS:
            for coord in COORDS:
                for metric in ("rmse", "r2"):
                    rows.append((subject, "walk2", method, "torque", coord, metric,
                                 rng.uniform(0, 1) * (30 if metric == "rmse" else 1)))
            for muscle in HIDE:
                for metric in ("r", "rmse", "vaf"):
                    rows.append((subject, "walk2", method, "excitation", muscle, metric,
                                 rng.uniform(0, 1)))
        rows.append((subject, "walk2", "nmm", "excitation", "tib_ant_r", "r", np.nan))
    pd.DataFrame(rows, columns=list(EVALUATION_COLUMNS)).to_csv(
        res / "evaluation.tsv", sep="\t", index=False)
    return res


class _Cells(HTMLParser):
    """Collect metrics-table cells, images and sections of a report."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[dict[str, str]] = []
        self.images: list[str] = []
        self.sections: list[str] = []
        self.summary_cells: list[dict[str, str]] = []
        self._table: dict[str, str] | None = None
        self._cell: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "table" and "metrics" in a.get("class", ""):
            self._table = a
        elif tag == "td" and "data-metric" in a and self._table is not None:
            self._cell = {**a, "quantity": self._table.get("data-quantity", ""),
                          "kind": self._table.get("data-kind", ""), "text": ""}
        elif tag == "td" and "data-summary-metric" in a:
            self._cell = {**a, "kind": "summary", "text": ""}
        elif tag == "img":
            self.images.append(a.get("src", ""))
        elif tag == "section":
            self.sections.append(a.get("id", ""))

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell["text"] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            (self.summary_cells if self._cell["kind"] == "summary" else self.cells).append(
                self._cell)
            self._cell = None
        elif tag == "table":
            self._table = None


def parse(path: Path) -> _Cells:
    parser = _Cells()
    parser.feed(path.read_text())
    return parser


def assert_images_embedded(images: list[str], minimum: int) -> None:
    assert len(images) >= minimum
    for src in images:
        assert src.startswith("data:image/png;base64,"), src[:60]
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_MAGIC


def assert_cells_match(cells: list[dict[str, str]], evaluation: pd.DataFrame) -> None:
    """Every evaluation row is shown once in the detail tables, with its value; the best marked."""
    detail = [c for c in cells if c["kind"] == "detail"]
    shown = {(c["quantity"], c["data-trial"], c["data-channel"], c["data-metric"],
              c["data-method"]): c for c in detail}
    assert len(shown) == len(detail)
    keys = set(zip(evaluation["quantity"], evaluation["trial"], evaluation["channel"],
                   evaluation["metric"], evaluation["method"], strict=True))
    assert keys <= set(shown)
    assert all(shown[k]["text"].strip() == "" for k in set(shown) - keys)
    settings = settings_with_defaults()
    for row in evaluation.itertuples(index=False):
        cell = shown[(row.quantity, row.trial, row.channel, row.metric, row.method)]
        if np.isnan(row.value):
            assert cell["text"].strip() == ""
        else:
            assert float(cell["text"]) == pytest.approx(row.value, rel=1e-3, abs=1e-12)
    for (quantity, trial, channel, metric), group in evaluation.groupby(
            ["quantity", "trial", "channel", "metric"]):
        direction = metric_direction(metric, settings)
        values = group.dropna(subset=["value"])
        marked = {shown[(quantity, trial, channel, metric, m)]["data-method"]
                  for m in group["method"]
                  if "best" in shown[(quantity, trial, channel, metric, m)].get("class", "")}
        if direction == 0 or len(values) < 2:
            assert not marked
        else:
            best = values["value"].max() if direction > 0 else values["value"].min()
            assert marked == set(values.loc[values["value"] == best, "method"])
    # the mean tables hold the mean over trials and channels of each (quantity, metric, method)
    means = evaluation.groupby(["quantity", "metric", "method"])["value"].mean()
    all_mean_cells = [c for c in cells if c["kind"] == "mean"]
    mean_cells = [c for c in all_mean_cells if c["text"].strip()]
    assert len(mean_cells) == len(means.dropna())
    for c in all_mean_cells:  # an empty cell is a method without values for that metric
        if not c["text"].strip():
            key = (c["quantity"], c["data-metric"], c["data-method"])
            assert key not in means.index or np.isnan(means[key])
    for c in mean_cells:
        value = means[(c["quantity"], c["data-metric"], c["data-method"])]
        assert float(c["text"]) == pytest.approx(value, rel=1e-3)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    for i, subject in enumerate(["S01", "S02"]):
        write_subject_file(root, subject)
        make_results(root, subject, seed=100 + i)
    return root


@pytest.fixture(scope="module")
def report(cohort: Path) -> Path:
    res = cohort / "results" / "S01"
    return build_subject_report(
        subject="S01", results_dir=res, evaluation=res / "evaluation.tsv",
        quality=res / "quality.tsv", output=res / "report.html",
        figures_dir=res / "report_figures",
        subject_file=cohort / "subjects" / "S01" / "subject.yaml",
        config={"seed": 1, "report": {}}, settings={"dpi": 60})


def test_report_embeds_figures_and_tables_match_evaluation(report: Path, cohort: Path) -> None:
    res = cohort / "results" / "S01"
    page = parse(report)
    evaluation = pd.read_csv(res / "evaluation.tsv", sep="\t")
    assert_cells_match(page.cells, evaluation)
    figures = sorted((res / "report_figures").glob("*.png"))
    # per trial: angles, moments, SO vs EMG, deep excitations, hidden muscles; torque on walk2
    assert len(figures) == 5 * len(TRIALS) + 1
    assert_images_embedded(page.images, minimum=len(figures))
    embedded = {base64.b64decode(src.split(",", 1)[1]) for src in page.images}
    assert {f.read_bytes() for f in figures} <= embedded
    assert (res / "report_figures" / "walk2_torque_tracking.png").is_file()
    assert not (res / "report_figures" / "walk1_torque_tracking.png").exists()  # not held out
    for section in ("provenance", "quality", "kinematics", "so-emg", "excitations", "lomo",
                    "torque", "metrics"):
        assert section in page.sections
    html = report.read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html


def _spy_overlays(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict]:
    """Record each overlay figure's sources and columns by title, still drawing it."""
    import musculo.report.html as html_module

    drawn: dict[str, dict] = {}
    real = html_module.overlay_figure

    def spy(**kwargs):
        drawn[kwargs["title"]] = {"sources": dict(kwargs["sources"]), "columns": list(kwargs["columns"])}
        return real(**kwargs)

    monkeypatch.setattr(html_module, "overlay_figure", spy)
    return drawn


def test_twin_report_draws_the_truth_beside_every_method(cohort: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    res = cohort / "results" / "S01"
    rng = np.random.default_rng(5)
    muscles = list(MEASURED.values()) + DEEP
    time = np.round(np.arange(0.0, 1.2001, 0.005), 4)
    arrays: dict[str, np.ndarray] = {"trials": np.array(TRIALS), "muscles": np.array(muscles)}
    for trial in TRIALS:
        arrays[f"{trial}/time"] = time
        arrays[f"{trial}/excitation"] = rng.uniform(0.0, 1.0, (len(time), len(muscles)))
    truth = tmp_path / "truth.npz"
    np.savez(truth, **arrays)

    drawn = _spy_overlays(monkeypatch)
    out = build_subject_report(
        subject="S01", results_dir=res, evaluation=res / "evaluation.tsv",
        quality=res / "quality.tsv", output=tmp_path / "report.html",
        subject_file=cohort / "subjects" / "S01" / "subject.yaml", settings={"dpi": 40},
        truth=truth)
    for trial in TRIALS:
        for title in ("deep-muscle excitations", "hidden muscles"):
            sources = drawn[f"S01 {trial}: {title}"]["sources"]
            assert "TRUTH" in sources and {"NMM", "MSE"} <= set(sources)
            np.testing.assert_array_equal(sources["TRUTH"].to_numpy(), arrays[f"{trial}/excitation"])
            np.testing.assert_array_equal(sources["TRUTH"].index.to_numpy(), time)
        assert "TRUTH" not in drawn[f"S01 {trial}: joint angles"]["sources"]
    assert "true excitations (truth.npz)" in out.read_text()
    drawn.clear()
    build_subject_report(
        subject="S01", results_dir=res, evaluation=res / "evaluation.tsv",
        quality=res / "quality.tsv", output=tmp_path / "plain.html",
        subject_file=cohort / "subjects" / "S01" / "subject.yaml", settings={"dpi": 40})
    assert drawn and not any("TRUTH" in d["sources"] for d in drawn.values())


def test_deep_figure_of_an_auto_subject_draws_what_the_emg_driven_methods_estimated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``unmeasured: auto``: the deep-muscle panels are the EMG-driven predictions' muscles less the
    EMG-mapped ones (even a muscle whose channel failed quality in the trial), not SO's extra
    muscles; the most excited first, so that ``max_panels`` leaves out (and names) the quietest."""
    write_subject_file(tmp_path, "S03")
    path = tmp_path / "subjects" / "S03" / "subject.yaml"
    path.write_text(path.read_text().replace(f"unmeasured: [{', '.join(DEEP)}]", "unmeasured: auto"))
    res = make_results(tmp_path, "S03", seed=7)
    rng = np.random.default_rng(8)
    time = np.round(np.arange(0.0, 1.2001, 0.01), 4)
    emg_left = [m for m in MEASURED.values() if m != "tib_ant_r"]  # TA failed quality in walk1
    write_sto(res / "walk1" / "emg.sto", _activation(time, emg_left, rng))
    # model order iliopsoas, bifemsh, glut_min; mean excitation bifemsh > iliopsoas > glut_min
    level = {"iliopsoas_r": 0.5, "bifemsh_r": 1.0, "glut_min_r": 0.1}
    for method in ("nmm", "mse"):
        table = _activation(time, [*emg_left, *level], rng)
        for muscle, gain in level.items():
            table[muscle] = 0.05 + 0.5 * gain * (1.0 + np.sin(2.0 * np.pi * time))
        write_sto(res / method / "predictions" / "walk1.excitations.sto", table)
    so = _activation(time, [*MEASURED.values(), *level, "ercspn_r"], rng)
    so["ercspn_r"] = 1.0  # SO's most active muscle is no EMG-driven estimate: never drawn
    write_sto(res / "so" / "predictions" / "walk1.excitations.sto", so)
    drawn = _spy_overlays(monkeypatch)
    out = build_subject_report(
        subject="S03", results_dir=res, evaluation=res / "evaluation.tsv", quality=res / "quality.tsv",
        output=tmp_path / "report.html", subject_file=path, settings={"dpi": 40, "max_panels": 2})
    assert drawn["S03 walk1: deep-muscle excitations"]["columns"] == ["bifemsh_r", "iliopsoas_r"]
    html = out.read_text()
    assert "walk1 deep muscles: 1 more not drawn (glut_min_r)" in html
    assert "auto: every muscle without EMG that spans a tracked coordinate" in html


def test_report_provenance_and_quality_verdicts(report: Path, cohort: Path) -> None:
    res = cohort / "results" / "S01"
    html = report.read_text()
    inputs = json.loads((res / "inputs.json").read_text())
    for path, digest in inputs["sha256"].items():
        assert path in html and digest in html
    assert config_sha256({"seed": 1, "report": {}}) in html
    from importlib.metadata import version
    for package in ("opensim", "torch", "musculo"):
        assert version(package) in html
    # the report renders quality.tsv's verdicts as they are: every row, nothing judged again
    rows = re.findall(r"<tr[^>]*><td>([^<]*)</td><td>([^<]*)</td><td class=\"num\">([^<]*)</td>\s*"
                      r"<td class=\"num\">([^<]*)</td><td class=\"verdict verdict-(\w+)\">", html)
    found = {(g, item): v for g, item, _value, _limit, v in rows}
    quality = pd.read_csv(res / "quality.tsv", sep="\t", keep_default_na=False)
    assert len(found) == len(quality)
    for row in quality.itertuples(index=False):
        assert found[(f"{row.stage} {row.trial}".strip(), row.quantity)] == row.verdict.lower()
    # scale marker max was drawn at 0.05-0.07 m against the 0.04 m limit: warn; the RMS passes
    assert found[("scale", "marker_max")] == "warn" and found[("scale", "marker_rms")] == "pass"
    assert found[("emg walk1", "usable:TA")] == "fail" and found[("emg walk1", "usable:GAS")] == "warn"
    assert found[("emg walk1", "usable:VL")] == "pass"
    reserves = json.loads((res / "walk1" / "so_reserves.json").read_text())["actuators"]
    for c in COORDS:
        value = reserves[f"reserve_{c}"]["max_abs"]
        assert found[("so walk1", f"reserve_max:{c}")] == \
            ("pass" if value <= 10 else "warn" if value <= 20 else "fail")


def test_report_states_missing_inputs(tmp_path: Path) -> None:
    res = make_results(tmp_path, "S03", seed=7, with_estimators=False)
    (res / "walk1" / "so_activation.sto").unlink()
    (res / "quality.tsv").unlink()
    out = build_subject_report(subject="S03", results_dir=res, evaluation=res / "evaluation.tsv",
                               quality=res / "quality.tsv", output=res / "report.html",
                               trials=TRIALS, settings={"dpi": 50})
    html = out.read_text()
    assert str(res / "walk1" / "so_activation.sto") in html
    assert str(res / "quality.tsv") in html
    assert "No estimator output" in html
    page = parse(out)
    assert not page.cells
    assert_images_embedded(page.images, minimum=2 * len(TRIALS) + 1)  # kinematics + 1 SO figure


def test_report_rejects_malformed_evaluation_and_leaves_nothing(tmp_path: Path) -> None:
    res = make_results(tmp_path, "S04", seed=3, with_estimators=False)
    pd.DataFrame({"subject": ["S04"], "value": [1.0]}).to_csv(
        res / "evaluation.tsv", sep="\t", index=False)
    with pytest.raises(ReportInputError, match=r"evaluation\.tsv.*missing column"):
        build_subject_report(subject="S04", results_dir=res, evaluation=res / "evaluation.tsv",
                             quality=res / "quality.tsv", output=res / "report.html",
                             figures_dir=res / "figs", trials=TRIALS)
    assert not (res / "report.html").exists() and not (res / "figs").exists()
    with pytest.raises(ReportInputError, match="unknown key"):
        settings_with_defaults({"dpii": 3})


def test_summary_rows_and_marks(cohort: Path) -> None:
    results = cohort / "results"
    subjects = ["S01", "S02"]
    table = build_summary(
        evaluations=[results / s / "evaluation.tsv" for s in subjects],
        output_tsv=results / "summary.tsv", output_html=results / "summary.html",
        figure=results / "summary.png", settings={"dpi": 60})
    written = pd.read_csv(results / "summary.tsv", sep="\t")
    evaluation = pd.concat(pd.read_csv(results / s / "evaluation.tsv", sep="\t") for s in subjects)
    means = evaluation.groupby(["subject", "method", "quantity", "metric"])["value"].mean()
    assert len(written) == len(table) == len(subjects) * len(METHODS)
    assert set(zip(written["subject"], written["method"], strict=True)) == {
        (s, m) for s in subjects for m in METHODS}
    for (subject, method, quantity, metric), value in means.items():
        got = written.loc[(written["subject"] == subject) & (written["method"] == method),
                          f"{quantity} {metric}"].item()
        assert got == pytest.approx(value)
    page = parse(results / "summary.html")
    assert_images_embedded(page.images, minimum=1)
    assert (results / "summary.png").read_bytes()[:8] == PNG_MAGIC
    assert len(page.summary_cells) == len(means)
    settings = settings_with_defaults()
    for c in page.summary_cells:
        quantity, metric = c["data-summary-metric"].split(" ", 1)
        value = means[(c["data-subject"], c["data-method"], quantity, metric)]
        assert float(c["text"]) == pytest.approx(value, rel=1e-3)
        direction = metric_direction(metric, settings)
        others = means.xs((c["data-subject"], quantity, metric), level=[0, 2, 3])
        is_best = direction != 0 and value == (others.max() if direction > 0 else others.min())
        assert ("best" in c.get("class", "")) == is_best
    assert 'href="S01/report.html"' in (results / "summary.html").read_text()


# ---------------------------------------------------------------- browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
# Injected into a copy of the page: records script errors and images that failed to decode.
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || e.type)), true);
window.addEventListener("load", () => {
  const bad = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0));
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({images: document.images.length, broken: bad.length,
                                    errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""


def run_chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    assert Path(CHROMIUM).is_file(), "chromium is needed: apt-get install -y chromium"
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
        capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("page_name", ["S01/report.html", "summary.html"])
def test_report_renders_in_headless_chromium(report: Path, cohort: Path, tmp_path: Path,
                                             page_name: str) -> None:
    results = cohort / "results"
    if page_name == "summary.html":
        build_summary(evaluations=[results / s / "evaluation.tsv" for s in ("S01", "S02")],
                      output_tsv=tmp_path / "summary.tsv", output_html=results / "summary.html",
                      settings={"dpi": 60})
    page = results / page_name
    shot = tmp_path / "screenshot.png"
    proc = run_chromium(page, tmp_path / "profile-shot", "--enable-logging=stderr", "--v=0",
                        "--window-size=1280,2400", f"--screenshot={shot}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert shot.read_bytes()[:8] == PNG_MAGIC and shot.stat().st_size > 20_000
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    probe_page = page.with_name(page.stem + ".probe.html")
    probe_page.write_text(page.read_text().replace("<head>", "<head>" + PROBE, 1))
    dom = run_chromium(probe_page, tmp_path / "profile-dom", "--virtual-time-budget=5000",
                       "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-3000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, "the page's load event did not run"
    state = json.loads(found.group(1).replace("&quot;", '"'))
    assert state["errors"] == [] and state["broken"] == 0
    assert state["images"] == len(parse(page).images) >= 1
    if os.environ.get("MUSCULO_SCREENSHOTS"):
        target = Path(os.environ["MUSCULO_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target / page_name.replace("/", "_").replace(".html", ".png"))


# ---------------------------------------------------------------- Snakemake rules


@pytest.mark.workflow
def test_snakemake_rules_build_reports_and_snakemake_report(cohort: Path, tmp_path: Path) -> None:
    from musculo.config import load_config

    work = tmp_path / "wf"
    for subject in ("S01", "S02"):
        shutil.copytree(cohort / "subjects" / subject, work / "subjects" / subject)
        src = cohort / "results" / subject
        for path in src.rglob("*"):
            if path.is_file() and "report" not in path.name and "report_figures" not in path.parts:
                dest = work / "results" / subject / path.relative_to(src)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, dest)
    config = load_config(REPO / "config" / "config.yaml")
    config["report"]["dpi"] = 50
    (work / "config.yaml").write_text(json.dumps(config))
    rules = REPO / "workflow" / "rules"
    (work / "Snakefile").write_text(textwrap.dedent(f"""\
        configfile: "config.yaml"
        report: "{REPO / 'workflow' / 'report' / 'workflow.rst'}"
        SUBJECTS = VALID_SUBJECTS = ["S01", "S02"]
        SUBJECT_ERRORS = {{}}
        def res(s, *parts):
            return "/".join(["results", s, *parts])
        def report_inputs(w):
            return {{}}
        include: "{rules / 'report.smk'}"
        rule all:
            input: "results/summary.html"
        """))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    snakemake = [sys.executable, "-m", "snakemake", "--cores", "2", "-d", str(work),
                 "-s", str(work / "Snakefile")]
    proc = subprocess.run([*snakemake, "-n"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^report\s+2$", proc.stdout, re.M), proc.stdout
    assert re.search(r"^summary\s+1$", proc.stdout, re.M), proc.stdout
    proc = subprocess.run(snakemake, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for subject in ("S01", "S02"):
        page = parse(work / "results" / subject / "report.html")
        evaluation = pd.read_csv(work / "results" / subject / "evaluation.tsv", sep="\t")
        assert_cells_match(page.cells, evaluation)
        figures = list((work / "results" / subject / "report_figures").glob("*.png"))
        assert len(figures) == 5 * len(TRIALS) + 1
        assert_images_embedded(page.images, minimum=len(figures))
        assert (work / "results" / "logs" / subject / "report" / "report.log").is_file()
    assert len(pd.read_csv(work / "results" / "summary.tsv", sep="\t")) == 2 * len(METHODS)
    proc = subprocess.run([*snakemake, "--report", str(work / "report.html")],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    html = (work / "report.html").read_text()
    assert "walk2_torque_tracking.png" in html and "summary.png" in html
    assert "held-out" in html  # a caption was rendered


def test_gait_cycle_normalisation_follows_events() -> None:
    from musculo.report.figures import cycle_normalise, gait_cycles, overlay_figure

    time = np.round(np.arange(0.0, 1.5001, 0.01), 4)
    table = pd.DataFrame({"t": time, "sq": time**2}, index=pd.Index(time, name="time"))
    events = {"right": {"strike": [1.4, 0.1, 0.75, 2.0]}, "left": {"strike": [0.4]}}
    cycles = gait_cycles(events, side="right", start=0.0, end=1.5)
    assert cycles == [(0.1, 0.75), (0.75, 1.4)]  # sorted, the strike after the data dropped
    assert gait_cycles(events, side="left", start=0.0, end=1.5) == []
    data = cycle_normalise(table, cycles, points=11)
    assert data.shape == (2, 11, 2)
    for i, (a, b) in enumerate(cycles):
        grid = np.linspace(a, b, 11)
        np.testing.assert_allclose(data[i, :, 0], grid, atol=1e-12)
        np.testing.assert_allclose(data[i, :, 1], grid**2, atol=1e-3)
    with_cycles = overlay_figure(sources={"x": table}, columns=["t"], ylabel="s", title="t",
                                 events=events)
    without = overlay_figure(sources={"x": table}, columns=["t"], ylabel="s", title="t")
    assert with_cycles.axes[0].get_xlabel() == "gait cycle (%)"
    assert with_cycles.axes[0].lines[0].get_xdata()[-1] == 100.0
    assert without.axes[0].get_xlabel() == "time (s)"


def test_sources_share_one_axis_unit() -> None:
    """A source covering no full cycle (SO on a short window) never puts seconds on a cycle axis."""
    from musculo.report.figures import overlay_figure

    time = np.round(np.arange(0.0, 1.5001, 0.01), 4)
    long = pd.DataFrame({"a": np.sin(time)}, index=pd.Index(time, name="time"))
    short = long.loc[0.2:0.6]  # inside one cycle only
    events = {"right": {"strike": [0.1, 0.75, 1.4]}}
    fig = overlay_figure(sources={"EMG": long, "SO": short}, columns=["a"], ylabel="x", title="t",
                         events=events)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "time (s)"  # the common span holds no full cycle: time for both
    assert all(line.get_xdata().max() <= 1.5 for line in ax.lines) and len(ax.lines) == 2
    both = overlay_figure(sources={"EMG": long, "SO": long.loc[0.05:1.45]}, columns=["a"], ylabel="x",
                          title="t", events=events)
    assert both.axes[0].get_xlabel() == "gait cycle (%)"
    assert all(line.get_xdata().max() == 100.0 for line in both.axes[0].lines)


def test_partial_summary_after_a_failed_subject(cohort: Path, tmp_path: Path) -> None:
    from musculo.report.summary import build_partial_summary

    results = tmp_path / "results"
    for sid in ("S01", "S02"):  # the evaluation tables alone (the shared cohort may hold reports)
        (results / sid).mkdir(parents=True)
        shutil.copy2(cohort / "results" / sid / "evaluation.tsv", results / sid / "evaluation.tsv")
    assert build_partial_summary(results_dir=results, subjects=["S01", "S02"]) is None  # no report yet
    assert not (results / "summary.html").exists()
    (results / "S01" / "report.html").write_text("<html></html>")  # S01 finished; S02's jobs failed
    done = build_partial_summary(results_dir=results, subjects=["S01", "S02"],
                                 failed={"S03": "subject.yaml: mass must be positive"},
                                 settings={"dpi": 60})
    assert done == ["S01"]
    written = pd.read_csv(results / "summary.tsv", sep="\t")
    assert set(written["subject"]) == {"S01"}
    page = (results / "summary.html").read_text()
    assert 'data-failed-subject="S02"' in page and 'data-failed-subject="S03"' in page
    assert str(results / "logs" / "S02") in page
