"""The SLURM profile (workflow/profiles/slurm) against a real one-node SLURM cluster on localhost.

The test starts the cluster itself (tests/slurm/local_cluster.sh: munged, slurmctld, slurmd), runs
one digital twin at CI settings through ``--executor slurm`` and, in another copy of the repository,
through Snakemake's local executor, and compares the two ``evaluation.tsv``. Both wall times are
written to results/logs/test_slurm.log. In CI (``CI=true``) a missing SLURM fails the test; elsewhere
it is skipped when SLURM is not installed or the test does not run as root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "tests" / "slurm" / "local_cluster.sh"
SUBJECT = "twin-squat"
TARGET = f"results/{SUBJECT}/so/evaluation.tsv"  # the SO estimator: every OpenSim stage, grouped
SLURM_TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol")
RUN_LIMIT_S = 900  # timeout -k for one workflow run; a hanging status loop must not hang CI
LOG = REPO / "results" / "logs" / "test_slurm.log"

pytestmark = pytest.mark.workflow


def _unavailable() -> str | None:
    """Why the local SLURM cluster cannot be started here, or None."""
    missing = [tool for tool in SLURM_TOOLS if shutil.which(tool) is None]
    if missing:
        return (
            f"SLURM is not installed (missing {', '.join(missing)}): as root, "
            "'apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge'"
        )
    if os.geteuid() != 0:
        return "the local SLURM cluster (tests/slurm/local_cluster.sh) needs root"
    return None


def _cluster(command: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(CLUSTER), command], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[dict[str, int]]:
    """A running one-node cluster; stopped afterwards when this fixture started it."""
    reason = _unavailable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the SLURM test (.ci/run installs the packages)")
        pytest.skip(reason)
    was_running = _cluster("status").returncode == 0
    started = _cluster("start")
    assert started.returncode == 0, f"local SLURM did not start:\n{started.stdout}\n{started.stderr}"
    try:
        node = subprocess.run(
            ["scontrol", "show", "node", "localhost"], capture_output=True, text=True, check=True
        ).stdout
        cpus = int(re.search(r"CPUTot=(\d+)", node).group(1))
        memory = int(re.search(r"RealMemory=(\d+)", node).group(1))
        yield {"cpus": cpus, "mem_mb": memory}
    finally:
        if not was_running:
            stopped = _cluster("stop")
            assert stopped.returncode == 0, f"local SLURM did not stop:\n{stopped.stderr}"


def _copy_repo(dest: Path) -> Path:
    """Copy the repository's source files (tracked and untracked, not ignored) into dest."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=False,
    )
    if listed.returncode == 0:
        for name in filter(None, listed.stdout.decode().split("\0")):
            src = REPO / name
            if src.is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)
    else:  # not a git checkout: everything but outputs and environments
        shutil.copytree(
            REPO, dest, dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(".git", ".venv", "results", ".snakemake", "__pycache__", "*.c3d"),
        )
    return dest


def _snakemake(workdir: Path, args: list[str], log: Path) -> tuple[int, float, str]:
    """Run snakemake in workdir under `timeout -k`; return exit status, wall seconds, log text."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(workdir)}
    cmd = [
        "timeout", "-k", "20", str(RUN_LIMIT_S), sys.executable, "-m", "snakemake",
        "--configfile", "config/ci.yaml", "--config", f"subjects=[{SUBJECT}]", *args,
    ]
    start = time.perf_counter()
    with open(log, "w") as handle:
        proc = subprocess.run(cmd, cwd=workdir, env=env, stdout=handle, stderr=subprocess.STDOUT, check=False)
    return proc.returncode, time.perf_counter() - start, log.read_text()


def _slurm_args(cluster: dict[str, int]) -> list[str]:
    # --cores: the node's CPUs, so that a group job never asks for more than the node has.
    # Status checks every 2 s at first (the profile's 40 s suits a real cluster, not a test).
    return [
        "--profile", "workflow/profiles/slurm", "--slurm-no-account",
        "--slurm-init-seconds-before-status-checks", "2", "--cores", str(cluster["cpus"]),
    ]


def test_job_larger_than_node_fails_clearly(slurm_cluster: dict[str, int], tmp_path: Path) -> None:
    """A job asking for more memory than the node has is rejected at submission, not left pending."""
    work = _copy_repo(tmp_path / "repo")
    rule = "twin_generate_" + SUBJECT.replace("-", "_")
    too_much = 2 * slurm_cluster["mem_mb"]
    status, seconds, text = _snakemake(
        work,
        [*_slurm_args(slurm_cluster), "--set-resources", f"{rule}:mem_mb={too_much}", "--", rule],
        tmp_path / "too_large.log",
    )
    assert status not in (124, 137), f"snakemake hung on a job larger than the node ({seconds:.0f} s)"
    assert status != 0, "a job larger than the node succeeded"
    assert "SLURM sbatch failed" in text, text[-4000:]
    assert "Memory specification can not be satisfied" in text, text[-4000:]


def test_twin_through_slurm_matches_local_run(slurm_cluster: dict[str, int], tmp_path: Path) -> None:
    """One twin at CI settings through SLURM gives the same SO evaluation table as the local executor."""
    local = _copy_repo(tmp_path / "local")
    on_slurm = _copy_repo(tmp_path / "slurm")

    status, local_s, text = _snakemake(local, ["--cores", "2", TARGET], tmp_path / "local.log")
    assert status == 0, f"local run failed (exit {status}):\n{text[-6000:]}"
    slurm_args = [*_slurm_args(slurm_cluster), TARGET]
    status, slurm_s, text = _snakemake(on_slurm, slurm_args, tmp_path / "slurm.log")
    LOG.parent.mkdir(parents=True, exist_ok=True)
    LOG.write_text(
        f"subject\t{SUBJECT}\ntarget\t{TARGET}\nlocal_wall_s\t{local_s:.1f}\nslurm_wall_s\t{slurm_s:.1f}\n"
        f"slurm_exit\t{status}\n"
    )
    assert status not in (124, 137), f"SLURM run did not finish within {RUN_LIMIT_S} s:\n{text[-6000:]}"
    assert status == 0, f"SLURM run failed (exit {status}):\n{text[-6000:]}"

    # The jobs really went through SLURM: one sbatch per job or group job, none run locally.
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", text)
    assert submitted, text[-4000:]
    assert "Group job prepare" in text and "Group job opensim" in text, "the per-trial steps were not grouped"

    expected = (local / TARGET).read_text()
    got = (on_slurm / TARGET).read_text()
    assert expected.count("\n") > 1, f"local {TARGET} has no rows"
    assert got == expected, f"{TARGET} differs between the SLURM and the local run"
