"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from musculo.datasets import dataset_path, mirror_dirs

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def dataset_file() -> Callable[[str, str], Path]:
    """Return a function giving the verified local path of a registered dataset file.

    With a mirror set (MUSCULO_DATA_MIRROR) the file must be there or in the cache; with no mirror
    it is downloaded from its pinned upstream commit and verified by sha256, like
    ``musculo datasets fetch``. Either way the test fails (never skips) when the data cannot be had.
    """
    download = not mirror_dirs()

    def get(dataset: str, file: str) -> Path:
        return dataset_path(dataset, file, download=download)

    return get


def workflow_subjects() -> list[str]:
    """The subjects the `workflow_run` fixture processes: config/ci.yaml's list, or every demo subject."""
    from musculo.config import load_config
    from musculo.subject import discover_subjects

    config = load_config(REPO / "config" / "config.yaml", [REPO / "config" / "ci.yaml"])
    return list(config.get("subjects") or discover_subjects(REPO / "subjects"))


@pytest.fixture
def repo_root() -> Path:
    """The repository root."""
    return REPO


WORKFLOW_DIR_ENV = "MUSCULO_TEST_WORKFLOW_DIR"
"""Where the `workflow_run` fixture runs Snakemake (default: ``<repo>/.test-workflow``)."""


def workflow_dir() -> Path:
    """The `workflow_run` fixture's working folder: the workflow, the configs and the subjects
    linked from the repository, its own ``results/`` and ``.snakemake/``, so that the tests'
    CI-settings run never overwrites the repository's ``results/`` of a default run."""
    import os

    return link_workflow(Path(os.environ.get(WORKFLOW_DIR_ENV) or REPO / ".test-workflow"))


def link_workflow(root: Path) -> Path:
    """``root`` (made if missing) with links to the repository's Snakefile, workflow, configs and
    subjects: a folder Snakemake runs in with its own ``results/``."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "config", "subjects"):
        link = root / name
        if not link.is_symlink():
            link.symlink_to(REPO / name)
    return root


@pytest.fixture(scope="session")
def workflow_run() -> Path:
    """Run the whole workflow once with the small CI settings; return its results folder.

    The run happens in :func:`workflow_dir`, outside the repository's ``results/``. Snakemake only
    redoes what is missing or out of date, so a second session is quick. The run uses --keep-going
    so that one failing job does not hide the others; the tests that use this fixture check the
    outputs they need.
    """
    import os
    import subprocess
    import sys

    cwd = workflow_dir()
    log = cwd / "results" / "logs" / "workflow_run.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/ci.yaml",
        "--keep-going", "--rerun-incomplete",
    ]
    with open(log, "w") as handle:
        proc = subprocess.run(
            cmd, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    if proc.returncode != 0:
        tail = log.read_text()[-6000:]
        pytest.fail(f"snakemake failed (exit {proc.returncode}); end of {log}:\n{tail}")
    return cwd / "results"

