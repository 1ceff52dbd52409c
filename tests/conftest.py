"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from musculo.datasets import dataset_path

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def dataset_file() -> Callable[[str, str], Path]:
    """Return a function giving the verified local path of a registered dataset file.

    It fails (never skips) when the data is missing: set MUSCULO_DATA_MIRROR to the datasets folder.
    """

    def get(dataset: str, file: str) -> Path:
        return dataset_path(dataset, file, download=False)

    return get


@pytest.fixture
def repo_root() -> Path:
    """The repository root."""
    return REPO
