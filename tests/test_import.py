import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from musculo.errors import InputDataError, SubjectFileError
from musculo.io.c3d import read_c3d
from musculo.io.tables import read_sto, write_sto
from musculo.subject import fetch_inputs, load_subject
from musculo.trial_import import MissingChannelError, MissingMarkerError, UnloadedPlateError, import_trial

REPO = Path(__file__).resolve().parents[1]


def prepared(sid, tmp_path, edit=None):
    """(subject.yaml, inputs.json) of a copy of subjects/<sid> under tmp_path; edit changes the YAML text."""
    folder = tmp_path / "subjects" / sid
    shutil.copytree(REPO / "subjects" / sid, folder)
    if not (folder / "scale_setup.xml").exists():  # written by the scaling stage
        (folder / "scale_setup.xml").write_text("<OpenSimDocument/>\n")
    if edit:
        (folder / "subject.yaml").write_text(edit((folder / "subject.yaml").read_text()))
    inputs = tmp_path / "inputs.json"
    fetch_inputs(subject_file=folder / "subject.yaml", output_json=inputs)
    return folder / "subject.yaml", inputs


def check_grf(subject_yaml, out, summary, *, bw_range=None):
    subject = load_subject(subject_yaml)
    grf = read_sto(out / "grf.mot")
    c3d = read_c3d(json.loads((out.parent / "inputs.json").read_text())["trials"][summary["trial"]]["file"])
    rot = subject.lab_to_opensim()
    bw = subject.mass * 9.81
    peaks = []
    for contact in summary["plates"]:
        s = "r" if contact["foot"] == "right" else "l"
        span = grf.loc[contact["start"] : contact["end"]]
        f = span[[f"ground_force_{s}_v{a}" for a in "xyz"]].to_numpy()
        # vertical (Y) is the dominant, upward component in stance
        assert np.median(f[:, 1]) > 0
        assert np.all(np.abs(f[:, 1]) >= np.abs(f[:, [0, 2]]).max(axis=1))
        peaks.append(f[:, 1].max() / bw)
        # the centre of pressure stays on the plate (1 cm margin) while loaded
        corners = c3d.plates[contact["plate"] - 1].corners @ rot.T
        cop = span[[f"ground_force_{s}_p{a}" for a in "xyz"]].to_numpy()[f[:, 1] > 50]
        for k in (0, 2):
            assert corners[:, k].min() - 0.01 <= cop[:, k].min()
            assert cop[:, k].max() <= corners[:, k].max() + 0.01
    if bw_range:
        assert all(bw_range[0] <= p <= bw_range[1] for p in peaks), peaks
    return peaks


@pytest.mark.parametrize("kid,trial", [("HC002D", "HC002D06"), ("HC038A", "HC038A11")])
def test_biomechzoo_grf_body_weight_and_cop(kid, trial, tmp_path):
    subject_yaml, inputs = prepared(f"biomechzoo-{kid}", tmp_path)
    out = tmp_path / trial
    summary = import_trial(subject_file=subject_yaml, inputs_json=inputs, trial=trial, out_dir=out)
    assert {c["foot"] for c in summary["plates"]} == {"right", "left"}
    peaks = check_grf(subject_yaml, out, summary, bw_range=(0.9, 1.5))
    print(kid, trial, "peak vertical GRF / BW:", [round(p, 2) for p in peaks])
    ev = json.loads((out / "events.json").read_text())
    assert ev["right"]["strike"] and ev["right"]["off"]
    raw = np.load(out / "emg_raw.npz")
    assert list(raw["labels"])[:2] == ["R_Rect", "R_Hams"] and raw["data"].shape[1] == 10
    markers = (out / "markers.trc").read_text().splitlines()
    assert markers[2].split("\t")[4] == "mm"


def test_motonms_y_up_lab_grf_and_cop(tmp_path):
    subject_yaml, inputs = prepared("motonms-unipd", tmp_path)
    out = tmp_path / "Walking2"
    summary = import_trial(subject_file=subject_yaml, inputs_json=inputs, trial="Walking2", out_dir=out)
    peaks = check_grf(subject_yaml, out, summary, bw_range=(0.9, 1.5))
    print("motonms Walking2 peak vertical GRF / BW:", [round(p, 2) for p in peaks])
    assert (out / "external_loads.xml").read_text().count("<ExternalForce") == 2


def test_trc_mot_anc_trial(tmp_path):
    subject_yaml, inputs = prepared("rajagopal-walk", tmp_path)
    out = tmp_path / "walk"
    summary = import_trial(subject_file=subject_yaml, inputs_json=inputs, trial="walk", out_dir=out)
    assert summary["written"] == [
        "markers.trc",
        "grf.mot",
        "external_loads.xml",
        "events.json",
        "emg_raw.npz",
    ]
    grf = read_sto(out / "grf.mot")
    stance = grf[grf["ground_force_r_vy"] > 50]
    assert (
        stance["ground_force_r_vy"].abs()
        > stance[["ground_force_r_vx", "ground_force_r_vz"]].abs().max(axis=1)
    ).all()
    assert grf["ground_force_r_vy"].max() / (85.27 * 9.81) == pytest.approx(1.1, abs=0.25)


def no_outputs(out: Path) -> bool:
    return not out.exists() or not any(out.iterdir())


def test_missing_emg_label_lists_present_labels(tmp_path):
    subject_yaml, inputs = prepared(
        "biomechzoo-HC002D", tmp_path, lambda t: t.replace("R_Rect:", "R_Rectus:")
    )
    out = tmp_path / "out"
    with pytest.raises(MissingChannelError, match="R_Rectus.*L_Rect, R_Rect"):
        import_trial(subject_file=subject_yaml, inputs_json=inputs, trial="HC002D06", out_dir=out)
    assert no_outputs(out)


def test_missing_marker(tmp_path):
    subject_yaml, inputs = prepared("motonms-unipd", tmp_path, lambda t: t.replace("[RCA,", "[RHEEL,"))
    out = tmp_path / "out"
    with pytest.raises(MissingMarkerError, match="RHEEL"):
        import_trial(subject_file=subject_yaml, inputs_json=inputs, trial="Walking1", out_dir=out)
    assert no_outputs(out)


def test_never_loaded_plate(tmp_path):
    # a GRF file whose second plate (assigned to the left foot) carries no load
    subject_yaml, inputs = prepared("rajagopal-walk", tmp_path)
    data = json.loads(inputs.read_text())
    grf = read_sto(data["trials"]["walk"]["grf"])
    grf[[c for c in grf.columns if "_l_" in c]] = 0.0
    dead = tmp_path / "grf_dead_plate.mot"
    write_sto(dead, grf)
    data["trials"]["walk"]["grf"] = str(dead)
    inputs.write_text(json.dumps(data))
    out = tmp_path / "out"
    with pytest.raises(UnloadedPlateError, match="plate 2 is assigned to the left foot"):
        import_trial(subject_file=subject_yaml, inputs_json=inputs, trial="walk", out_dir=out)
    assert no_outputs(out)


def test_lab_frame_not_a_rotation(tmp_path):
    with pytest.raises(SubjectFileError, match="rotation"):
        prepared("gait2354-subject01", tmp_path, lambda t: t.replace("forward: +X", "forward: -Y"))
    assert not (tmp_path / "inputs.json").exists()


def test_truncated_c3d_leaves_nothing(tmp_path, dataset_file):
    subject_yaml, inputs = prepared("biomechzoo-HC002D", tmp_path)
    data = json.loads(inputs.read_text())
    src = dataset_file("biomechzoo", "HC002D/Straight/HC002D06.c3d").read_bytes()
    cut = tmp_path / "cut.c3d"
    cut.write_bytes(src[: len(src) * 2 // 3])
    data["trials"]["HC002D06"]["file"] = str(cut)
    inputs.write_text(json.dumps(data))
    out = tmp_path / "out"
    with pytest.raises(InputDataError, match="truncated"):
        import_trial(subject_file=subject_yaml, inputs_json=inputs, trial="HC002D06", out_dir=out)
    assert no_outputs(out)
