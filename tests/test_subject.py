import numpy as np
import pytest
import yaml

from musculo.cli import main
from musculo.errors import SubjectFileError
from musculo.subject import discover_subjects, fetch_inputs, lab_rotation, load_subject

BASE = {
    "id": "s01",
    "mass": 70.0,
    "height": 1.75,
    "model": {"dataset": "opensim-models", "file": "models/gait2392_thelen2003muscle.osim"},
    "marker_set": {"dataset": "gait2392-subject01", "file": "gait2392_Scale_MarkerSet.xml"},
    "lab_frame": {"up": "+Y", "forward": "+X"},
    "trials": [
        {"name": "static", "role": "static", "file": {"dataset": "motonms-unipd", "file": "Static1.c3d"}},
        {"name": "walk1", "role": "dynamic", "file": "walk1.c3d"},
    ],
    "emg": {"channels": {"SOL": ["soleus_r"], "VL": ["vas_lat_r"]}},
    "unmeasured": ["iliacus_r"],
    "hide": ["soleus_r"],
}


def write(tmp_path, data, name="s01"):
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    (folder / "walk1.c3d").write_bytes(b"")
    (folder / "subject.yaml").write_text(yaml.safe_dump(data))
    return folder


def test_valid_subject_loads_with_defaults(tmp_path):
    s = load_subject(write(tmp_path, BASE))
    assert s.id == "s01" and s.mass == 70.0
    assert s.trial_names("dynamic") == ["walk1"]
    assert s.measured_muscles == ["soleus_r", "vas_lat_r"]
    assert s.force_plates == "auto"  # schema default
    assert main(["subject", "validate", "--quick", str(s.dir)]) == 0
    assert main(["subject", "validate", str(s.dir)]) == 1  # walk1.c3d is an empty file


def test_misspelt_key_is_named(tmp_path):
    data = dict(BASE)
    data["mas"] = data.pop("mass")
    with pytest.raises(SubjectFileError) as info:
        load_subject(write(tmp_path, data))
    msg = str(info.value)
    assert "'mas'" in msg and "subject.yaml" in msg


def test_negative_mass_is_named(tmp_path):
    with pytest.raises(SubjectFileError, match=r"mass: -70"):
        load_subject(write(tmp_path, {**BASE, "mass": -70}))


def test_missing_trial_file_names_key_and_file(tmp_path):
    trials = [*BASE["trials"], {"name": "walk2", "role": "dynamic", "file": "walk2.c3d"}]
    with pytest.raises(SubjectFileError) as info:
        load_subject(write(tmp_path, {**BASE, "trials": trials}))
    msg = str(info.value)
    assert "trials[2].file" in msg and "walk2.c3d" in msg and "subject.yaml" in msg


def test_unknown_dataset_file_is_named(tmp_path):
    trials = [
        *BASE["trials"],
        {"name": "w9", "role": "dynamic", "file": {"dataset": "motonms-unipd", "file": "W9.c3d"}},
    ]
    with pytest.raises(SubjectFileError, match=r"trials\[2\]\.file.*W9.c3d"):
        load_subject(write(tmp_path, {**BASE, "trials": trials}))


def test_inconsistent_muscles_and_id(tmp_path):
    with pytest.raises(SubjectFileError, match="hide"):
        load_subject(write(tmp_path, {**BASE, "hide": ["iliacus_r"]}))
    with pytest.raises(SubjectFileError, match="folder name"):
        load_subject(write(tmp_path, {**BASE, "id": "other"}))
    with pytest.raises(SubjectFileError, match="static"):
        load_subject(write(tmp_path, {**BASE, "trials": BASE["trials"][1:]}))


def test_lab_frame_rotation():
    r = lab_rotation(up="+Z", forward="+Y")
    np.testing.assert_allclose(r @ [0, 0, 1], [0, 1, 0])  # lab up -> OpenSim Y
    np.testing.assert_allclose(r @ [0, 1, 0], [1, 0, 0])  # lab forward -> OpenSim X
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(r), 1.0)
    with pytest.raises(SubjectFileError, match="same axis"):
        lab_rotation(up="+Z", forward="-Z")


def test_fetch_inputs_writes_paths_and_checksums(tmp_path):
    folder = write(tmp_path, BASE)
    out = fetch_inputs(subject_file=folder / "subject.yaml", output_json=tmp_path / "inputs.json")
    static = out["trials"]["static"]["file"]
    assert static.endswith("Static1.c3d") and out["sha256"][static]
    assert (tmp_path / "inputs.json").is_file()


def test_every_demo_subject_validates(repo_root):
    ids = discover_subjects(repo_root / "subjects")
    assert {"motonms-unipd", "rajagopal-walk", "gait2354-subject01"} <= set(ids)
    assert sum(i.startswith("biomechzoo-") for i in ids) == 12
    for sid in ids:
        load_subject(repo_root / "subjects" / sid)
    assert load_subject(repo_root / "subjects" / "motonms-unipd").tracked_sides == ["right"]
    assert load_subject(repo_root / "subjects" / "biomechzoo-HC002D").tracked_sides == ["left", "right"]


def _schema_keys(node, prefix=""):
    """Every property name of the subject schema (nested ones as parent.child)."""
    out = []
    for key, sub in node.get("properties", {}).items():
        out.append(prefix + key)
        if isinstance(sub, dict):
            out += _schema_keys(sub, prefix + key + ".")
            if isinstance(sub.get("items"), dict):
                out += _schema_keys(sub["items"], prefix + key + ".")
    return out


def test_readme_documents_every_subject_schema_key(repo_root):
    from musculo.config import schema

    readme = (repo_root / "README.md").read_text()
    section = readme[readme.index("## Add a subject"):readme.index("## Reprocess one subject")]
    keys = _schema_keys(schema("subject"))
    assert {"id", "trials.time_range", "emg.mvc_channels", "config", "lab_frame.forward"} <= set(keys)
    missing = [k for k in keys if f"`{k.rsplit('.', 1)[-1]}`" not in section
               and f"{k.rsplit('.', 1)[-1]}:" not in section]
    assert not missing, f"README 'Add a subject' does not document: {missing}"


def test_per_subject_config_overrides(tmp_path):
    from musculo.subject import subject_config

    s = load_subject(write(tmp_path, {**BASE, "config": {"opensim": {"max_marker_rms": 0.06}}}))
    base = {"opensim": {"max_marker_rms": 0.04, "max_frames": 60}}
    merged = subject_config(base, s)
    assert merged["opensim"]["max_marker_rms"] == 0.06 and merged["opensim"]["max_frames"] == 60
    assert base["opensim"]["max_marker_rms"] == 0.04  # the workflow config is not changed
    with pytest.raises(SubjectFileError, match=r"opensim.max_marker_rms"):
        load_subject(write(tmp_path, {**BASE, "config": {"opensim": {"max_marker_rms": "big"}}}))
    with pytest.raises(SubjectFileError, match=r"max_marker_rmss"):
        load_subject(write(tmp_path, {**BASE, "config": {"opensim": {"max_marker_rmss": 0.1}}}))
