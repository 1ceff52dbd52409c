"""Small builders shared by tests (synthetic subjects and settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from musculo.settings import Settings
from musculo.subject import Subject


def synthetic_subject(tmp_path: Path, **raw: Any) -> Subject:
    """A Subject for synthetic trials (``raw``: subject.yaml keys such as hide, unmeasured, emg)."""
    return Subject(path=tmp_path / "syn" / "subject.yaml", raw={"id": "syn", **raw})


def settings(**sections: Any) -> Settings:
    """Settings from partial config sections (the schema fills the rest).

    Synthetic trials have no gait events, so ``physics.window`` is ``all`` unless given.
    """
    sections["physics"] = {"window": "all", **sections.get("physics", {})}
    return Settings.from_config(sections)
