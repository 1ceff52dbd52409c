"""Resume after a kill: a run stopped by SIGINT or SIGKILL at several points, rerun with
``--rerun-incomplete``, ends with the same ``evaluation.tsv`` and ``quality.tsv`` as an
uninterrupted run (the session's CI workflow run)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import link_workflow

SUBJECT = "gait2354-subject01"  # one walk, no EMG: the cheapest full subject
TARGETS = [f"results/{SUBJECT}/evaluation.tsv", f"results/{SUBJECT}/quality.tsv"]




def _snakemake(cwd: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "snakemake", *TARGETS, *extra, "--cores", "1",
           "--configfile", "config/ci.yaml", "--config", f"subjects=[{SUBJECT}]"]
    return subprocess.Popen(cmd, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _unlock(cwd: Path) -> None:
    """What a user does after a killed run: release Snakemake's lock."""
    subprocess.run([sys.executable, "-m", "snakemake", *TARGETS, "--unlock", "--configfile", "config/ci.yaml",
                    "--config", f"subjects=[{SUBJECT}]"], cwd=cwd, check=True, capture_output=True)


def _kill_when(cwd: Path, marker: str, sig: signal.Signals, timeout: float = 600) -> None:
    """Resume a run and send ``sig`` to its whole process group once ``marker`` exists."""
    _unlock(cwd)
    proc = _snakemake(cwd, "--rerun-incomplete")
    deadline = time.monotonic() + timeout
    while not (cwd / marker).exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            out = proc.communicate()[0]
            pytest.fail(f"the run ended before {marker} appeared:\n{out[-3000:]}")
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):  # the run may just have finished
        os.killpg(proc.pid, sig)
    proc.communicate(timeout=120)


@pytest.mark.workflow
def test_killed_runs_resume_to_the_uninterrupted_result(workflow_run, tmp_path):
    cwd = link_workflow(tmp_path)
    # SIGINT once the import is done, SIGKILL while the OpenSim stages run, SIGKILL during estimation
    _kill_when(cwd, f"results/{SUBJECT}/walk1/markers.trc", signal.SIGINT)
    _kill_when(cwd, f"results/{SUBJECT}/walk1/ik.mot", signal.SIGKILL)
    _kill_when(cwd, f"results/{SUBJECT}/walk1/muscle_analysis.npz", signal.SIGKILL)
    _unlock(cwd)
    proc = _snakemake(cwd, "--rerun-incomplete")
    out = proc.communicate(timeout=900)[0]
    assert proc.returncode == 0, out[-4000:]
    for target in TARGETS:
        assert (cwd / target).read_bytes() == (workflow_run.parent / target).read_bytes(), target
