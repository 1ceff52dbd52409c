"""`musculo subject validate` on the demo subjects and `musculo subject init` on a folder of C3D files."""

from __future__ import annotations

import shutil

import yaml

from musculo.cli import main
from musculo.subject import load_subject
from musculo.validate import check_subject


def test_demo_lab_subjects_pass_the_deep_checks(repo_root, dataset_file):
    for sid in ("biomechzoo-HC002D", "motonms-unipd", "gait2354-subject01"):
        subject = load_subject(repo_root / "subjects" / sid)
        for t in subject.trials:  # the data must be at hand (fails, never skips, when missing)
            if isinstance(t.file, dict):
                dataset_file(t.file["dataset"], t.file["file"])
        _, problems, _ = check_subject(repo_root / "subjects" / sid)
        assert not [p for p in problems if p.level == "error"], problems


def test_init_drafts_a_subject_from_c3d_files(tmp_path, dataset_file):
    folder = tmp_path / "lab-x"
    folder.mkdir()
    shutil.copy(dataset_file("biomechzoo", "HC002D/Static/HC002D02.c3d"), folder / "HC002D02.c3d")
    shutil.copy(dataset_file("biomechzoo", "HC002D/Straight/HC002D06.c3d"), folder / "HC002D06.c3d")
    assert main(["subject", "init", str(folder)]) == 0
    raw = yaml.safe_load((folder / "subject.yaml").read_text())
    assert raw["id"] == "lab-x"
    assert raw["lab_frame"] == {"up": "+Z", "forward": "+Y"}  # the demo subject's axes
    assert [t["role"] for t in raw["trials"]] == ["static", "dynamic"]
    assert abs(raw["mass"] - 32.1) < 0.1 * 32.1  # measured mass 32.1 kg
    assert "R_Tib_Ant: [MUSCLE_r]" in (folder / "subject.yaml").read_text()
    assert main(["subject", "init", str(folder)]) == 2  # exists: not overwritten without --force
