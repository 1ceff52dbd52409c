"""Workflow-level tests: lint and the dry-run job counts per rule."""

import os
import re
import subprocess
import sys
from pathlib import Path

from musculo.config import load_config
from musculo.estimators import registry
from musculo.subject import discover_subjects, load_subject, subject_config

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def run_snakemake(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*SNAKEMAKE, *args], cwd=REPO, capture_output=True, text=True, env=env)


def job_stats(output: str) -> dict[str, int]:
    """Parse the 'Job stats' table that a dry run prints."""
    block = output.split("Job stats:", 1)[1]
    counts = {}
    for line in block.splitlines()[3:]:
        m = re.match(r"^(\S+)\s+(\d+)\s*$", line)
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    return counts


def expected_counts(ids: list[str]) -> dict[str, int]:
    """Jobs each rule must have for a fresh run of these subjects, from their subject files."""
    subjects = [load_subject(REPO / "subjects" / s) for s in ids]
    n = len(subjects)
    dynamic = sum(len(s.trial_names("dynamic")) for s in subjects)
    emg = [s for s in subjects if s.emg_channels]
    emg_trials = sum(len(s.trial_names("dynamic")) + len(s.trial_names("mvc")) for s in emg)
    per_subject = ["fetch", "import_static", "scale", "quality", "evaluate", "report"]
    per_emg_subject = ["emg_normalise", "calibrate"]
    per_dynamic_trial = ["ik", "id", "so", "muscle_analysis"]
    counts = {"all": 1, "summary": 1}
    counts.update({rule: n for rule in per_subject})
    counts.update({rule: len(emg) for rule in per_emg_subject})
    counts.update({rule: dynamic for rule in per_dynamic_trial})
    mvc = sum(len(s.trial_names("mvc")) for s in subjects)
    counts["import_trial"] = dynamic + mvc  # MVC trials are imported for their EMG
    # envelopes of the dynamic and MVC trials; excitations of the dynamic ones
    counts["emg_envelope"] = emg_trials
    counts["emg_excitations"] = sum(len(s.trial_names("dynamic")) for s in emg)
    # one generic estimate job per (subject, registered method); EMG methods only for EMG subjects
    methods = load_config(REPO / "config" / "config.yaml")["evaluation"]["methods"]
    counts["estimate"] = sum(len(emg) if registry.get(m).needs_emg else n for m in methods)
    # joint contact forces: one table per (subject, contact method); one JointReaction per dynamic
    # trial for SO, while an estimator's are planned once its estimate checkpoint says it was fitted
    contact = load_config(REPO / "config" / "config.yaml")["contact"]["methods"]
    for_subject = [[m for m in contact if m == "so" or s.emg_channels] for s in subjects]
    counts["joint_reaction"] = sum(len(s.trial_names("dynamic")) for s in subjects if "so" in contact)
    counts["contact_forces"] = sum(len(ms) for ms in for_subject)
    # one polynomial path fit per subject whose muscle analysis or SO use the fitted paths (the
    # subject's own `config:` overrides the workflow's, e.g. biomechzoo-HC031A's batched SO)
    base = load_config(REPO / "config" / "config.yaml")
    methods_of = [subject_config(base, s)["opensim"] for s in subjects]
    fitted = [o for o in methods_of if o["ma_method"] != "opensim" or o["so_method"] != "opensim"]
    if fitted:
        counts["path_fit"] = len(fitted)
    twins = [s for s in subjects if s.is_twin]
    counts["twin_truth"] = len(twins)
    counts["contact_truth"] = len(twins)
    counts.update({"twin_generate_" + s.id.replace("-", "_").replace(".", "_"): 1 for s in twins})
    return counts


def test_lint():
    proc = run_snakemake("--lint")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dry_run_job_counts_per_rule(tmp_path):
    ids = discover_subjects(REPO / "subjects")
    assert ids, "no demo subjects"
    proc = run_snakemake("-n", "--cores", "1", "--forceall")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counts = job_stats(proc.stdout + proc.stderr)
    expected = expected_counts(ids)
    assert {k: counts.get(k) for k in expected} == expected
    assert counts["total"] == sum(counts[k] for k in counts if k != "total")


def test_dry_run_restricted_to_one_subject():
    ids = discover_subjects(REPO / "subjects")
    one = ids[0]
    proc = run_snakemake("-n", "--cores", "1", "--forceall", "--config", f"subjects=[{one}]")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counts = job_stats(proc.stdout + proc.stderr)
    expected = {k: v for k, v in expected_counts([one]).items() if v}
    assert {k: counts.get(k) for k in expected} == expected
    assert set(counts) - {"total"} == set(expected)
