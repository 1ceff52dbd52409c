"""Bad-input campaign: each class of broken subject or recording gives a specific error, as early as
possible (the subject file, then ``musculo subject validate``, then the import), with no traceback
and nothing half-written.

The subjects are copies of the demo subject biomechzoo-HC002D (C3D files copied into tmp_path, then
corrupted with ezc3d or by hand).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from musculo.cli import main
from musculo.emg import channel_quality, normalise_emg
from musculo.errors import InputDataError, SubjectFileError
from musculo.io.c3d import read_c3d
from musculo.io.tables import write_sto
from musculo.io.trc import read_trc
from musculo.subject import check_subject_ids, fetch_inputs, load_subject, load_subjects
from musculo.trial_import import check_analog_duration, import_trial
from musculo.validate import check_subject

DEMO = "biomechzoo-HC002D"
FILES = {"HC002D02": "HC002D/Static/HC002D02.c3d", "HC002D06": "HC002D/Straight/HC002D06.c3d"}


@pytest.fixture
def base(tmp_path, dataset_file, repo_root):
    """A valid copy of the demo subject with its C3D files in the folder; returns (folder, raw dict)."""
    folder = tmp_path / "lab-s01"
    folder.mkdir()
    raw = yaml.safe_load((repo_root / "subjects" / DEMO / "subject.yaml").read_text())
    for name in ("markerset_gait2392.xml", "scale_setup.xml"):
        shutil.copy(repo_root / "subjects" / DEMO / name, folder / name)
    for name, file in FILES.items():
        shutil.copy(dataset_file("biomechzoo", file), folder / f"{name}.c3d")
    raw["id"] = "lab-s01"
    raw["trials"] = [
        {"name": "HC002D02", "role": "static", "file": "HC002D02.c3d"},
        {"name": "HC002D06", "role": "dynamic", "file": "HC002D06.c3d"},
    ]
    dataset_file("opensim-models", raw["model"]["file"])  # the model must be at hand
    return folder, raw


def save(folder: Path, raw: dict) -> Path:
    (folder / "subject.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return folder


def errors_of(folder: Path) -> str:
    subject, problems, _ = check_subject(folder)
    return "\n".join(str(p) for p in problems if p.level == "error")


def rewrite_c3d(path: Path, edit) -> None:
    """Read a C3D with ezc3d, let ``edit`` change it, write it back."""
    import ezc3d

    c = ezc3d.c3d(str(path))
    edit(c)
    c.write(str(path))


def test_base_copy_is_valid(base):
    folder, raw = base
    subject, problems, _ = check_subject(save(folder, raw))
    assert subject is not None and not [p for p in problems if p.level == "error"], problems


# ------------------------------------------------------------------ the subject file itself


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda r: r.update(mass=-3), r"mass: -3"),
        (lambda r: r.update(mas=70), r"unknown key 'mas'"),
        (lambda r: r.update(id="other"), r"differs from the folder name"),
        (lambda r: r.update(trials=[]), r"trials"),
        (lambda r: r.update(trials=r["trials"][:1]), r"no trial has role 'dynamic'"),
        (lambda r: r.update(trials=r["trials"][1:]), r"time_range .*where the subject stands still"),
        (lambda r: r["trials"].append(dict(r["trials"][1])), r"used twice"),
        (lambda r: r["trials"][1].update(name="walk 1"), r"trials\[1\]\.name"),
        (lambda r: r["trials"][1].update(name=".."), r"trials\[1\]\.name"),
        (lambda r: r["trials"][1].update(file="../../etc/passwd"), r"outside the subject folder"),
        (lambda r: r["trials"][1].update(file="/etc/passwd"), r"outside the subject folder"),
        (lambda r: r.update(model="missing.osim"), r"model: file 'missing.osim' does not exist"),
        (lambda r: r.update(hide=["iliacus_r"]), r"hide lists \['iliacus_r'\]"),
        (lambda r: r.update(config={"opensim": {"max_marker_rms": -1}}), r"per-subject config"),
        (lambda r: r.update(config={"nmm": {"epochs": 1}}), r"unknown key .nmm. at config"),
        (lambda r: r["trials"][1].update(time_range=[3.0, 2.0]), r"start < end"),
    ],
    ids=["negative-mass", "unknown-key", "id-not-folder", "no-trials", "static-only", "no-static",
         "duplicate-trial", "space-in-name", "dotdot-name", "path-traversal", "absolute-path",
         "missing-model", "hide-unmeasured", "bad-override", "override-section", "reversed-range"],
)
def test_subject_file_errors(base, change, expected):
    folder, raw = base
    change(raw)
    save(folder, raw)
    with pytest.raises(SubjectFileError, match=expected):
        load_subject(folder)
    assert main(["subject", "validate", str(folder)]) == 1  # reported, no traceback


def test_yaml_syntax_error(base):
    folder, raw = base
    save(folder, raw)
    (folder / "subject.yaml").write_text((folder / "subject.yaml").read_text() + "\nmass: [72\n")
    with pytest.raises(SubjectFileError, match="not valid YAML"):
        load_subject(folder)


def test_subject_ids_from_the_command_line(tmp_path):
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "subject.yaml").write_text("id: good\n")
    assert check_subject_ids(["good"], tmp_path) == ["good"]
    for bad in ("../subjects/twin-squat", "..", "a b", "läb", "/abs"):
        with pytest.raises(SubjectFileError, match="is not a subject id"):
            check_subject_ids([bad], tmp_path)
    with pytest.raises(SubjectFileError, match="has no"):
        check_subject_ids(["absent"], tmp_path)
    good, errors = load_subjects(["good"], tmp_path)  # invalid file: reported, not raised
    assert not good and "good" in errors


# ------------------------------------------------------------------ the files, opened by validate


def test_empty_non_c3d_and_truncated_files(base):
    folder, raw = base
    save(folder, raw)
    target = folder / "HC002D06.c3d"
    content = target.read_bytes()
    target.write_bytes(b"")
    assert "is empty (0 bytes)" in errors_of(folder)
    target.write_text("name,value\nnot a c3d,1\n")
    assert "ezc3d cannot read this C3D file" in errors_of(folder)
    target.write_bytes(content[: len(content) // 2])
    msg = errors_of(folder)
    assert "truncated" in msg or "cannot read" in msg, msg


def test_checksum_mismatch(base, tmp_path):
    folder, raw = base
    mirror = tmp_path / "mirror" / "opensim-models" / Path(raw["model"]["file"]).parent
    mirror.mkdir(parents=True)
    (mirror / Path(raw["model"]["file"]).name).write_text("<OpenSimDocument/>")
    save(folder, raw)
    _, problems, _ = check_subject(folder, mirrors=[tmp_path / "mirror"])
    assert any("checksum mismatch" in p.message for p in problems)


def test_unknown_muscles_coordinates_and_emg_labels(base):
    folder, raw = base
    raw["unmeasured"] = ["iliacus_r", "iliacus_typo_r"]
    raw["emg"]["channels"]["R_Tib_Ant"] = ["tib_anterior_r"]
    raw["emg"]["channels"]["R_Gastroc"] = raw["emg"]["channels"].pop("R_Gast")
    raw["coordinates"] = [*raw["coordinates"], "knee_flexion_r"]
    raw["hide"] = [m for m in raw["hide"] if m != "tib_ant_r"]
    msg = errors_of(save(folder, raw))
    assert "'iliacus_typo_r' is not in the model" in msg and "did you mean 'iliacus_r'" in msg
    assert "'tib_anterior_r' is not in the model" in msg
    assert "'knee_flexion_r' is not in the model" in msg
    assert "channel 'R_Gastroc' is not among the analog channels" in msg and "R_Gast" in msg


def test_emg_channel_sides_are_checked(base):
    folder, raw = base
    raw["emg"]["channels"]["R_Hams"] = ["semiten_r", "bifemlh_l"]  # one electrode, both legs
    raw["emg"]["channels"]["L_Tib_Post"] = ["tib_post"]  # no side suffix
    save(folder, raw)
    _, problems, _ = check_subject(folder)
    warnings = {p.where.rsplit(": ", 1)[-1]: str(p) for p in problems if p.level == "warning"}
    assert "muscles of both sides" in warnings["emg.channels.R_Hams"]
    assert "no side suffix" in warnings["emg.channels.L_Tib_Post"]
    assert "emg.channels.R_Gast" not in warnings  # a channel of one side is not warned about


def test_unlabelled_trajectories_are_not_markers(base):
    folder, _ = base
    target = folder / "HC002D06.c3d"
    before = read_c3d(target, plates=False)

    def unlabel(c):
        labels = list(c["parameters"]["POINT"]["LABELS"]["value"])
        labels[labels.index("RKNE")] = "*8"
        c["parameters"]["POINT"]["LABELS"]["value"] = labels

    rewrite_c3d(target, unlabel)
    after = read_c3d(target, plates=False)
    assert "RKNE" in before.marker_labels
    assert "RKNE" not in after.marker_labels and "8" not in after.marker_labels
    assert after.markers.shape[1] == before.markers.shape[1] - 1


def test_swapped_left_right_markers_are_named_and_swapped_back(base, tmp_path):
    folder, raw = base

    def swap(c):
        labels = list(c["parameters"]["POINT"]["LABELS"]["value"])
        i, j = labels.index("RASI"), labels.index("LASI")
        labels[i], labels[j] = "LASI", "RASI"
        c["parameters"]["POINT"]["LABELS"]["value"] = labels

    rewrite_c3d(folder / "HC002D06.c3d", swap)
    labels = read_c3d(folder / "HC002D06.c3d", plates=False).marker_labels
    assert "RKneeMoment" not in labels  # a model output (POINT:MOMENTS), not a marker
    _, problems, suggested = check_subject(save(folder, raw))
    warned = [str(p) for p in problems if "look swapped" in str(p)]
    assert len(warned) == 1 and "HC002D06" in warned[0] and "markers RASI and LASI" in warned[0]
    assert suggested["trials"][1]["swap_markers"] == [["RASI", "LASI"]]
    raw["trials"][1]["swap_markers"] = [["RASI", "LASI"]]
    _, problems, _ = check_subject(save(folder, raw))
    assert not [p for p in problems if "look swapped" in str(p)]
    trc = read_trc(_import(folder, tmp_path) / "markers.trc")
    right, left = trc.data[:, trc.labels.index("RASI")], trc.data[:, trc.labels.index("LASI")]
    assert np.nanmean(right[:, 2] - left[:, 2]) > 0.1  # OpenSim frame: +Z is the subject's right
    raw["trials"][1]["swap_markers"] = [["RASI", "RASIS"]]
    assert "swap_markers names ['RASIS']" in errors_of(save(folder, raw))


def test_time_range_outside_the_time_axis(base):
    folder, raw = base
    raw["trials"][1]["time_range"] = [0.0, 1.0]  # the C3D's clock starts at 1.24 s
    save(folder, raw)
    subject, problems, suggested = check_subject(folder)
    msg = "\n".join(map(str, problems))
    assert "not within the trial's time axis [1.24" in msg and "first_frame / rate" in msg
    assert suggested["trials"][1]["time_range"][0] == pytest.approx(1.24)


def test_trial_starting_without_markers(base):
    folder, raw = base

    def blank(c):
        c["data"]["points"][:3, :, :10] = np.nan
        c["data"]["meta_points"]["residuals"][:, :, :10] = -1

    rewrite_c3d(folder / "HC002D06.c3d", blank)
    save(folder, raw)
    subject, problems, suggested = check_subject(folder)
    msg = "\n".join(map(str, problems))
    assert "10 frame(s) at the start" in msg and "set time_range: [1.34" in msg
    assert suggested["trials"][1]["time_range"][0] == pytest.approx(1.34)


def test_marker_units_wrong(base):
    folder, raw = base
    rewrite_c3d(folder / "HC002D06.c3d",
                lambda c: c["parameters"]["POINT"]["UNITS"].update(value=["m"]))
    assert "marker units are wrong" in errors_of(save(folder, raw))


def test_missing_foot_marker(base):
    folder, raw = base
    raw["foot_markers"]["right"] = ["RHEEL", "RTOE"]
    assert "foot_markers.right ['RHEEL'] are not in the trial" in errors_of(save(folder, raw))


def test_wrong_walking_direction(base):
    folder, raw = base
    raw["lab_frame"]["forward"] = "+X"
    msg = errors_of(save(folder, raw))
    assert "lab_frame.forward is +X" in msg and "forward: +Y" in msg


def test_plate_map_names_a_missing_plate(base):
    folder, raw = base
    raw["force_plates"] = {1: "right", 3: "left"}
    assert "plate 3 does not exist" in errors_of(save(folder, raw))


def test_plates_never_loaded(base):
    folder, raw = base

    def unload(c):
        labels = list(c["parameters"]["ANALOG"]["LABELS"]["value"])
        for j, lab in enumerate(labels):
            if lab.strip()[:2] in ("Fx", "Fy", "Fz", "Mx", "My", "Mz"):
                c["data"]["analogs"][0, j, :] = 0.0

    rewrite_c3d(folder / "HC002D06.c3d", unload)
    assert "no force plate of HC002D06.c3d is loaded" in errors_of(save(folder, raw))


def test_wrong_plate_type_is_an_input_error(base):
    folder, raw = base
    rewrite_c3d(folder / "HC002D06.c3d",
                lambda c: c["parameters"]["FORCE_PLATFORM"]["TYPE"].update(value=[99, 99]))
    with pytest.raises(InputDataError, match="HC002D06.c3d"):
        read_c3d(folder / "HC002D06.c3d")
    assert "HC002D06.c3d" in errors_of(save(folder, raw))


def test_short_trial(base):
    folder, raw = base
    raw["trials"][1]["time_range"] = [1.30, 1.305]  # shorter than two frames: no motion to analyse
    assert "is not within the trial's time axis" in errors_of(save(folder, raw))


# ------------------------------------------------------------------ import: nothing half-written


def _import(folder: Path, tmp_path: Path, trial: str = "HC002D06") -> Path:
    inputs = tmp_path / "inputs.json"
    fetch_inputs(subject_file=folder / "subject.yaml", output_json=inputs)
    out = tmp_path / "out" / trial
    import_trial(subject_file=folder / "subject.yaml", inputs_json=inputs, trial=trial, out_dir=out)
    return out


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda r: r["trials"][1].update(time_range=[0.0, 1.0]), r"not within the trial's time axis"),
        (lambda r: r.update(force_plates={1: "right", 3: "left"}), r"names plate\(s\) \[3\]"),
        (lambda r: r.update(force_plates={1: "right"}), r"loaded but not listed"),
        (lambda r: r["emg"]["channels"].update(R_Gastroc=r["emg"]["channels"].pop("R_Gast")),
         r"EMG channel\(s\) \['R_Gastroc'\]"),
    ],
    ids=["time-range", "plate-map-missing-plate", "plate-map-drops-loaded-plate", "emg-label"],
)
def test_import_errors_leave_nothing(base, tmp_path, change, expected):
    folder, raw = base
    change(raw)
    save(folder, raw)
    with pytest.raises(InputDataError, match=expected):
        _import(folder, tmp_path)
    out = tmp_path / "out" / "HC002D06"
    assert not out.exists() or not any(out.iterdir())


def test_long_marker_gap_is_reported_not_filled(base, tmp_path):
    folder, raw = base

    def gap(c):
        labels = [s.strip() for s in c["parameters"]["POINT"]["LABELS"]["value"]]
        j = labels.index("RKNE")
        c["data"]["points"][:3, j, 60:120] = np.nan
        c["data"]["meta_points"]["residuals"][:, j, 60:120] = -1

    rewrite_c3d(folder / "HC002D06.c3d", gap)
    save(folder, raw)
    inputs = tmp_path / "inputs.json"
    fetch_inputs(subject_file=folder / "subject.yaml", output_json=inputs)
    summary = import_trial(subject_file=folder / "subject.yaml", inputs_json=inputs, trial="HC002D06",
                           out_dir=tmp_path / "out")
    assert "RKNE" in summary["long_gaps"]


# ------------------------------------------------------------------ EMG channels and analog rates


def test_emg_channel_classes():
    rng = np.random.default_rng(0)
    rate = 1000.0
    t = np.arange(4000) / rate
    live = 1e-4 * rng.standard_normal(t.size) * (1 + 20 * (np.sin(2 * np.pi * t) > 0.7))
    assert channel_quality(live, rate=rate)["flags"] == []
    assert "flat" in channel_quality(np.zeros_like(t), rate=rate)["flags"]
    assert "saturated" in channel_quality(np.clip(live * 50, -2e-3, 2e-3), rate=rate)["flags"]
    assert "out_of_range" in channel_quality(live * 4e6, rate=rate)["flags"]  # peaks of ~395 "V"


def test_dead_channel_does_not_fail_the_subject(base, tmp_path):
    folder, raw = base
    save(folder, raw)
    t = np.arange(200) / 100.0
    import pandas as pd

    env = pd.DataFrame({ch: (np.zeros_like(t) if ch == "R_Rect" else 1e-4 * (1 + np.sin(t)))
                        for ch in raw["emg"]["channels"]}, index=t)
    write_sto(tmp_path / "env.sto", env, name="emg_envelope")
    out = normalise_emg(subject_file=folder / "subject.yaml", trials=["HC002D06"],
                        envelopes=[tmp_path / "env.sto"], output_json=tmp_path / "norm.json")
    assert out["R_Rect"]["divisor"] is None and out["L_Rect"]["divisor"] > 0
    assert json.loads((tmp_path / "norm.json").read_text())["R_Rect"]["method"] == "none"


def test_analog_rate_that_does_not_match_the_samples():
    time = 1.0 + np.arange(300) / 100.0
    check_analog_duration(n_samples=3000, analog_rate=1000.0, marker_time=time, marker_rate=100.0,
                          source=Path("x.anc"))
    with pytest.raises(InputDataError, match="about 1037 Hz"):
        check_analog_duration(n_samples=3111, analog_rate=1000.0, marker_time=time, marker_rate=100.0,
                              source=Path("x.anc"))


def test_import_stops_on_an_analog_rate_the_samples_contradict(tmp_path, repo_root, dataset_file):
    """An ANC file whose header states 1930 Hz for samples recorded at 2000 Hz: import names the file
    and the rate the samples imply, and writes nothing."""
    rw = "rajagopal-walk"
    folder = tmp_path / rw
    folder.mkdir()
    shutil.copy(repo_root / "subjects" / rw / "scale_setup.xml", folder / "scale_setup.xml")
    text = dataset_file(rw, "ExpData/emg_walk_raw.anc").read_text()
    lines = text.splitlines(keepends=True)
    k = next(i for i, line in enumerate(lines) if line.startswith("Rate"))
    lines[k] = lines[k].replace("2000", "1930")
    (folder / "walk.anc").write_text("".join(lines))
    raw = yaml.safe_load((repo_root / "subjects" / rw / "subject.yaml").read_text())
    raw["trials"][1]["analog"] = "walk.anc"
    save(folder, raw)
    inputs = tmp_path / "inputs.json"
    fetch_inputs(subject_file=folder / "subject.yaml", output_json=inputs)
    out = tmp_path / "out" / "walk"
    expected = r"walk.anc.*stated 1930 Hz.*analog rate is wrong.*about 20[01][0-9] Hz"
    with pytest.raises(InputDataError, match=expected):
        import_trial(subject_file=folder / "subject.yaml", inputs_json=inputs, trial="walk", out_dir=out)
    assert not out.exists() or not any(out.iterdir())


# ------------------------------------------------------------------ the workflow: a bad subject fails alone


def test_bad_subject_fails_alone_under_keep_going(tmp_path, repo_root, dataset_file):
    """One invalid subject.yaml next to a good subject: the plan still holds the good subject's report
    and the summary; a --keep-going run (up to the fetch stage) fetches the good one, and the bad
    one's job fails with the subject file's error."""
    import os
    import subprocess
    import sys

    for name in ("Snakefile", "workflow", "config"):
        src = repo_root / name
        if src.is_dir():
            shutil.copytree(src, tmp_path / name)  # symlinks (workflow/schemas) copied as files
        else:
            shutil.copy(src, tmp_path / name)
    subjects = tmp_path / "subjects"
    shutil.copytree(repo_root / "subjects" / DEMO, subjects / DEMO)
    shutil.copytree(repo_root / "subjects" / DEMO, subjects / "bad-one")
    text = (subjects / "bad-one" / "subject.yaml").read_text()
    (subjects / "bad-one" / "subject.yaml").write_text(
        text.replace(f"id: {DEMO}", "id: bad-one").replace("mass: 32.1", "mass: -3"))
    for f in FILES.values():
        dataset_file("biomechzoo", f)
    env = {**os.environ, "PYTHONPATH": str(repo_root), "OMP_NUM_THREADS": "1"}
    base_cmd = [sys.executable, "-m", "snakemake", "--configfile", "config/ci.yaml",
                "--config", f"subjects=[{DEMO},bad-one]"]
    plan = subprocess.run([*base_cmd, "-n", "--quiet", "rules"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert "summary" in plan.stdout and "report" in plan.stdout and "fetch" in plan.stdout
    run = subprocess.run(
        [*base_cmd, "--cores", "1", "--keep-going", "--",
         f"results/{DEMO}/inputs.json", "results/bad-one/inputs.json"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert run.returncode != 0
    assert (tmp_path / "results" / DEMO / "inputs.json").is_file()
    assert not (tmp_path / "results" / "bad-one" / "inputs.json").exists()
    log = (tmp_path / "results" / "logs" / "bad-one" / "fetch.log").read_text()
    assert "mass: -3 is less than or equal to the minimum of 0" in log
    bad_id = subprocess.run([*base_cmd[:-1], "subjects=[../subjects/x]", "-n"], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert bad_id.returncode != 0 and "is not a subject id" in bad_id.stdout + bad_id.stderr
    assert not (tmp_path / "results" / ".." / "subjects" / "x").exists()
