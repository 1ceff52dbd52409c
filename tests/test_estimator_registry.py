"""The estimator house: a toy estimator registered in a few lines runs through the ordinary workflow,
the estimate rule runs in a fresh folder holding only its declared inputs, and the package called
outside Snakemake gives the workflow's numbers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO, link_workflow

from musculo.estimators import registry
from musculo.evaluation import run_evaluation
from musculo.report.collect import read_evaluation
from musculo.settings import load_settings
from musculo.subject import load_subject

TOY = textwrap.dedent('''
    """A toy estimator: the null floor with every moment doubled."""
    from musculo.estimators.null import NullEstimator
    from musculo.estimators.registry import EstimatorSpec, register


    class Toy(NullEstimator):
        name = "toy"

        def predict(self, trial):
            pred = super().predict(trial)
            return type(pred)(excitations=pred.excitations, moments=2.0 * pred.moments)


    register(EstimatorSpec(name="toy", factory=lambda settings, **kw: Toy(), needs_emg=False))
''')


def test_registry_knows_the_builtin_methods_and_names_unknown_ones():
    assert {"null", "so", "mse", "nmm"} <= set(registry.names())
    assert registry.get("so").needs_so and not registry.get("null").needs_emg
    with pytest.raises(Exception, match="unknown estimator 'nope'.*registered"):
        registry.get("nope")


@pytest.mark.workflow
def test_toy_estimator_rows_through_the_workflow_with_only_declared_inputs(workflow_run, tmp_path):
    """A fresh folder holds the workflow, the subjects and only the estimate rule's declared inputs."""
    sid = "gait2354-subject01"
    subject = load_subject(REPO / "subjects" / sid)
    link_workflow(tmp_path)
    for trial in subject.trial_names("dynamic"):
        for name in ("muscle_analysis.npz", "id.sto", "events.json"):
            dest = tmp_path / "results" / sid / trial / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(workflow_run / sid / trial / name, dest)
    plugin = tmp_path / "plugins"
    plugin.mkdir()
    (plugin / "toy_estimator.py").write_text(TOY)
    overlay = "evaluation: {methods: [toy], plugins: [toy_estimator]}\ncontact: {methods: []}\n"
    (tmp_path / "toy.yaml").write_text(overlay)
    env = {**os.environ, "PYTHONPATH": str(plugin), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", f"results/{sid}/evaluation.tsv", "--cores", "1",
         "--configfile", "config/ci.yaml", "toy.yaml", "--config", f"subjects=[{sid}]"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = read_evaluation(tmp_path / "results" / sid / "evaluation.tsv")
    assert set(table["method"]) == {"toy"}
    # a single-trial subject is held out as time spans walk1@0, walk1@1, ...
    held_out = {t.split("@")[0] for t in table.loc[table["quantity"] == "moment", "trial"]}
    assert held_out == set(subject.trial_names("dynamic"))
    for trial in subject.trial_names("dynamic"):
        assert (tmp_path / "results" / sid / "toy" / "predictions" / f"{trial}.moments.sto").is_file()
    assert (tmp_path / "results" / sid / "toy" / "model" / "null.json").is_file()
    # only the estimate and evaluate jobs ran: nothing upstream was rebuilt
    assert not (tmp_path / "results" / sid / "model").exists()


@pytest.mark.workflow
def test_package_outside_snakemake_gives_the_workflow_numbers(workflow_run, tmp_path):
    """MSE on a twin through the package, with the settings files the workflow used: same table."""
    sid = "twin-squat"
    subject = load_subject(REPO / "subjects" / sid)
    settings = load_settings(REPO / "config" / "config.yaml", [REPO / "config" / "ci.yaml"],
                             overrides=subject.config_overrides)
    dirs = [workflow_run / sid / t for t in subject.trial_names("dynamic")]
    table = run_evaluation(method="mse", subject=subject, trial_dirs=dirs, out_dir=tmp_path / "mse",
                           settings=settings, calibration=workflow_run / sid / "physics" / "calibration.json")
    assert not table.empty
    assert (tmp_path / "mse" / "evaluation.tsv").read_bytes() == \
        (workflow_run / sid / "mse" / "evaluation.tsv").read_bytes()
