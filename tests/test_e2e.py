"""End-to-end: the whole workflow over the CI subjects (config/ci.yaml) with the small CI settings.

The `workflow_run` fixture runs Snakemake once per session (config/ci.yaml); these tests check
what a lab would look at: every subject imported and processed through OpenSim, evaluation rows of
every applicable method, and a report whose tables match evaluation.tsv.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from conftest import REPO, workflow_subjects
from test_report import assert_cells_match, assert_images_embedded, parse

from musculo.io.tables import read_sto
from musculo.opensim_tools.quality import coordinate_ranges
from musculo.report.collect import read_evaluation
from musculo.subject import load_subject

SUBJECTS = workflow_subjects()
CONFIG = yaml.safe_load((REPO / "config" / "ci.yaml").read_text())


def assert_static_pose_in_ranges(model_dir):
    """The static pose marker placement solved lies within the scaled model's joint ranges."""
    pose = read_sto(model_dir / "scale_static_pose.mot")
    for coord, (lo, hi, rotational) in coordinate_ranges(model_dir / "scaled.osim").items():
        column = next(c for c in pose.columns if c.endswith(f"/{coord}/value"))
        value = float(pose[column].iloc[0])
        slack = 1e-6 if rotational else 1e-9
        assert lo - slack <= value <= hi + slack, f"{model_dir}: static {coord} = {value} not in [{lo}, {hi}]"


@pytest.mark.workflow
@pytest.mark.parametrize("sid", SUBJECTS)
def test_subject_processed_end_to_end(workflow_run, sid):
    subject = load_subject(REPO / "subjects" / sid)
    res = workflow_run / sid
    assert (res / "model" / "scaled.osim").is_file()
    for trial in subject.trial_names("dynamic"):
        for name in ("markers.trc", "ik.mot", "id.sto", "so_activation.sto", "muscle_analysis.npz"):
            assert (res / trial / name).stat().st_size > 0, f"{sid}/{trial}/{name}"
    assert_static_pose_in_ranges(res / "model")
    quality = pd.read_csv(res / "quality.tsv", sep="\t")
    assert {"scale", "ik", "id", "so"} <= set(quality["stage"])
    evaluation = read_evaluation(res / "evaluation.tsv")
    assert list(evaluation.columns) == [
        "subject",
        "trial",
        "method",
        "quantity",
        "channel",
        "metric",
        "value",
    ]
    methods = set(evaluation["method"])
    assert {"so", "null"} <= methods  # every subject has the floor beside its methods
    fitted = subject.emg_channels and not (res / "mse" / "model" / "status.json").is_file()
    contact = evaluation[evaluation["quantity"] == "contact_force"]
    assert "so" in set(contact["method"])
    if fitted:
        assert {"mse", "nmm", "attention", "realtime"} <= methods
        # each method's muscle forces give joint loads
        assert set(CONFIG["contact"]["methods"]) <= set(contact["method"])
        moments = evaluation[evaluation["quantity"] == "moment"]
        assert {"mse", "nmm"} <= set(moments["method"])
        if subject.hide:
            lomo = evaluation[(evaluation["quantity"] == "excitation") & (evaluation["method"] == "mse")]
            assert set(subject.hide) & set(lomo["channel"])
    elif subject.emg_channels:  # an estimator that was not fitted: an empty contact table that says why
        info = json.loads((res / "contact" / "mse" / "curves" / "info.json").read_text())
        assert info["status"] == "not fitted" and set(contact["method"]) == {"so"}
    report = parse(res / "report.html")
    assert_images_embedded(report.images, 2)
    assert_cells_match(report.cells, evaluation)


@pytest.mark.workflow
def test_cohort_summary(workflow_run):
    summary = pd.read_csv(workflow_run / "summary.tsv", sep="\t")
    assert set(SUBJECTS) <= set(summary["subject"])
    assert (workflow_run / "summary.html").stat().st_size > 0


@pytest.mark.workflow
def test_the_tests_workflow_run_writes_outside_the_repository_results(workflow_run):
    """The CI-settings run works in its own folder with the repository's workflow and subjects."""
    assert workflow_run.resolve() != (REPO / "results").resolve()
    for name in ("Snakefile", "workflow", "config", "subjects"):
        assert (workflow_run.parent / name).resolve() == (REPO / name).resolve()
    assert (workflow_run / "summary.tsv").is_file()
