"""OpenSim stages against OpenSim's own reference outputs, and their handling of bad input.

Every tool runs in a child process (run_isolated), as in the workflow.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from musculo.io.tables import covers, read_sto
from musculo.opensim_tools import (
    MarkerNotInModelError,
    ModelFileError,
    TooFewMarkersError,
    run_isolated,
)
from musculo.opensim_tools.common import table_span
from musculo.opensim_tools.scale import read_scale_factors

G54 = "gait2354-subject01"
G10 = "gait10dof18musc-subject01"


def coordinate_rms(ours, ref, columns):
    ref = ref[~ref.index.duplicated()]
    aligned = ref[columns].reindex(ours.index, method="nearest", tolerance=2e-3)
    assert not aligned.isna().any().any()
    return np.sqrt(((ours[columns] - aligned) ** 2).mean())


def test_ik_reproduces_gait2354_reference(dataset_file, tmp_path):
    out = tmp_path / "walk1"
    summary = run_isolated(
        "ik",
        model=str(dataset_file(G54, "OutputReference/subject01_simbody.osim")),
        markers_trc=str(dataset_file(G54, "subject01_walk1.trc")),
        task_set=str(dataset_file(G54, "subject01_Setup_IK.xml")),
        output_mot=str(out / "ik.mot"),
        setup_out=str(out / "ik_setup.xml"),
        errors_out=str(out / "ik_marker_errors.sto"),
        time_range=[0.4, 1.0],
    )
    ours = read_sto(out / "ik.mot")
    ref = read_sto(dataset_file(G54, "OutputReference/subject01_walk1_ik.mot"))
    rms = coordinate_rms(ours, ref, list(ref.columns))
    print("gait2354 IK RMS (deg) max over coordinates:", rms.max())
    assert rms.max() <= 0.1
    assert summary["frames"] == len(ours) == 37
    assert (out / "ik_setup.xml").is_file()
    errors = read_sto(out / "ik_marker_errors.sto")
    assert (errors["marker_error_RMS"] < 0.05).all()
    assert not list(out.glob(".opensim-*"))


def test_id_reproduces_gait2354_reference(dataset_file, tmp_path):
    out = tmp_path / "walk1"
    res = run_isolated(
        "id",
        model=str(dataset_file(G54, "OutputReference/subject01_simbody.osim")),
        coordinates_mot=str(dataset_file(G54, "OutputReference/subject01_walk1_ik.mot")),
        external_loads_xml=str(dataset_file(G54, "subject01_walk1_grf.xml")),
        output_sto=str(out / "id.sto"),
        setup_out=str(out / "id_setup.xml"),
        residuals_out=str(out / "residuals.json"),
        lowpass_hz=6.0,
        height=1.8034,
    )
    ours = read_sto(out / "id.sto")
    ref = read_sto(dataset_file(G54, "OutputReference/ResultsInverseDynamics/inverse_dynamics.sto"))
    rms = coordinate_rms(ours, ref, list(ref.columns))
    print("gait2354 ID RMS (N m) max:", rms.max())
    assert rms.max() <= 0.5
    assert res["mass"] == pytest.approx(72.6, abs=0.01)
    on_disk = json.loads((out / "residuals.json").read_text())
    ty = on_disk["coordinates"]["pelvis_ty"]
    assert ty["rms_pct_bw"] == pytest.approx(100 * ty["rms"] / on_disk["body_weight"])


def g10_ik(dataset_file, out, **over):
    """IK of the gait10dof18musc walk over 0.6-1.0 s with the dataset's setup; returns the model path."""
    model = str(dataset_file(G10, "OutputReference/subject01.osim"))
    run_isolated(
        "ik",
        model=model,
        markers_trc=str(dataset_file(G10, "ExperimentalData/subject01_walk.trc")),
        task_set=str(dataset_file(G10, "IK/walk_Setup_IK.xml")),
        output_mot=str(out / "ik.mot"),
        setup_out=str(out / "ik_setup.xml"),
        errors_out=str(out / "ik_marker_errors.sto"),
        time_range=[0.6, 1.0],
        **over,
    )
    return model


def g10_id(dataset_file, out, model, coordinates, **over):
    """ID of the gait10dof18musc walk on ``coordinates`` with the dataset's loads (6 Hz low-pass)."""
    run_isolated(
        "id",
        model=model,
        coordinates_mot=str(coordinates),
        external_loads_xml=str(dataset_file(G10, "ExperimentalData/subject01_walk_grf.xml")),
        output_sto=str(out / "id.sto"),
        setup_out=str(out / "id_setup.xml"),
        residuals_out=str(out / "residuals.json"),
        lowpass_hz=6.0,
        **over,
    )


def test_ik_and_id_reproduce_gait10dof18musc_reference(dataset_file, tmp_path):
    model = g10_ik(dataset_file, tmp_path)
    ref_ik = read_sto(dataset_file(G10, "OutputReference/IK/subject01_walk_IK.mot"))
    ik_rms = coordinate_rms(read_sto(tmp_path / "ik.mot"), ref_ik, list(ref_ik.columns))
    print("gait10dof18musc IK RMS (deg) max:", ik_rms.max())
    assert ik_rms.max() <= 0.1
    g10_id(dataset_file, tmp_path, model, dataset_file(G10, "OutputReference/IK/subject01_walk_IK.mot"))
    ref_id = read_sto(dataset_file(G10, "OutputReference/ID/Results/subject01_walk_ID.sto"))
    id_rms = coordinate_rms(read_sto(tmp_path / "id.sto"), ref_id, list(ref_id.columns))
    print("gait10dof18musc ID RMS (N m) max:", id_rms.max())
    assert id_rms.max() <= 0.5


def test_padded_ik_removes_the_edge_spikes_of_a_cut_window(dataset_file, tmp_path):
    """IK solves past a cut window's end; ID over the window then matches the whole trial's ID there."""
    model = g10_ik(dataset_file, tmp_path, pad=0.2, padded_out=str(tmp_path / "ik_padded.mot"))
    window, padded = read_sto(tmp_path / "ik.mot"), read_sto(tmp_path / "ik_padded.mot")
    errors = read_sto(tmp_path / "ik_marker_errors.sto")
    assert window.index[0] == pytest.approx(0.6) and window.index[-1] == pytest.approx(1.0)
    assert padded.index[0] == pytest.approx(0.6) and padded.index[-1] == pytest.approx(1.2)
    np.testing.assert_allclose(errors.index, window.index)
    np.testing.assert_allclose(padded.loc[window.index].to_numpy(), window.to_numpy(), atol=1e-6)
    window_span = table_span(tmp_path / "ik.mot")
    g10_id(dataset_file, tmp_path, model, tmp_path / "ik_padded.mot", time_range=window_span)
    ours = read_sto(tmp_path / "id.sto")
    assert covers(ours.index.to_numpy(), window.index[0], window.index[-1])  # OpenSim's own time grid
    assert ours.index[-1] <= window.index[-1] + 1e-9
    # the published ID of the whole trial; ID over the bare window is 161 N off over its last frames
    ref = read_sto(dataset_file(G10, "OutputReference/ID/Results/subject01_walk_ID.sto"))
    ref = ref.reindex(ours.index, method="nearest")
    cols = [c for c in ref.columns if c in ours.columns]
    error = (ours[cols] - ref[cols]).abs().to_numpy()
    print("padded window ID, difference from the whole trial's ID over the last frames:", error[-3:].max())
    assert error[-3:].max() <= 20.0


def scale_kwargs(dataset_file, out, **over):
    kwargs = dict(
        generic_model=str(dataset_file("opensim-models", "models/gait2392_thelen2003muscle.osim")),
        marker_set=str(dataset_file(G54, "gait2354_Scale_MarkerSet.xml")),
        scale_setup=str(dataset_file(G54, "subject01_Setup_Scale.xml")),
        static_trc=str(dataset_file(G54, "subject01_static.trc")),
        mass=72.6,
        height=1.8034,
        output_model=str(out / "scaled.osim"),
        setup_out=str(out / "scale_setup.xml"),
        quality_out=str(out / "scale_quality.json"),
        time_range=[1.0, 2.0],
    )
    kwargs.update(over)
    return kwargs


def test_scale_factors_match_reference_scale_set(dataset_file, tmp_path):
    out = tmp_path / "model"
    quality = run_isolated("scale", **scale_kwargs(dataset_file, out))
    ref = read_scale_factors(dataset_file(G54, "OutputReference/subject01_scaleSet_applied.xml"))
    ours = quality["scale_factors"]
    bodies = [b for b in ref if b != "ground"]
    assert set(bodies) <= set(ours)
    rel = {b: abs(ours[b][0] / ref[b][0] - 1) for b in bodies}
    print("scale factor relative differences:", rel)
    assert max(rel.values()) <= 0.03
    # scaled-marker RMS in the static pose, as OpenSim reports it (about 3 cm for this subject)
    assert 0.005 < quality["marker_rms"] < 0.04
    assert quality["scaled_mass"] == pytest.approx(72.6, rel=1e-6)
    assert read_scale_factors(out / "scale_set.xml") == ours
    assert (out / "scaled.osim").is_file() and (out / "scale_setup.xml").is_file()


def test_missing_model_is_a_specific_error(dataset_file, tmp_path):
    out = tmp_path / "model"
    with pytest.raises(ModelFileError, match="does not exist"):
        run_isolated("scale", **scale_kwargs(dataset_file, out, generic_model=str(tmp_path / "nope.osim")))
    with pytest.raises(ModelFileError):
        run_isolated(
            "ik",
            model=str(tmp_path / "nope.osim"),
            markers_trc=str(dataset_file(G54, "subject01_walk1.trc")),
            output_mot=str(out / "ik.mot"),
            setup_out=str(out / "ik_setup.xml"),
            errors_out=str(out / "ik_marker_errors.sto"),
        )
    assert not out.exists() or not any(out.iterdir())


def test_marker_absent_from_model_is_a_specific_error(dataset_file, tmp_path):
    text = dataset_file(G54, "gait2354_Scale_MarkerSet.xml").read_text()
    bad = tmp_path / "markers.xml"
    bad.write_text(text.replace("<body> pelvis </body>", "<body> no_such_body </body>", 1))
    assert bad.read_text() != text
    out = tmp_path / "model"
    with pytest.raises(MarkerNotInModelError, match="no_such_body"):
        run_isolated("scale", **scale_kwargs(dataset_file, out, marker_set=str(bad)))
    assert not out.exists() or not any(out.iterdir())


def test_static_trial_with_too_few_markers(dataset_file, tmp_path):
    import opensim

    table = opensim.TimeSeriesTableVec3(str(dataset_file(G54, "subject01_static.trc")))
    labels = list(table.getColumnLabels())
    for name in labels[3:]:
        table.removeColumn(name)
    few = tmp_path / "static.trc"
    opensim.TRCFileAdapter().write(table, str(few))
    out = tmp_path / "model"
    with pytest.raises(TooFewMarkersError, match="only 3 markers"):
        run_isolated("scale", **scale_kwargs(dataset_file, out, static_trc=str(few)))
    assert not out.exists() or not any(out.iterdir())


def test_so_and_muscle_analysis_on_gait10dof18musc(dataset_file, tmp_path):
    model = str(dataset_file(G10, "OutputReference/subject01.osim"))
    ik = str(dataset_file(G10, "OutputReference/IK/subject01_walk_IK.mot"))
    so = run_isolated(
        "so",
        model=model,
        coordinates_mot=ik,
        external_loads_xml=str(dataset_file(G10, "ExperimentalData/subject01_walk_grf.xml")),
        activation_out=str(tmp_path / "so_activation.sto"),
        force_out=str(tmp_path / "so_force.sto"),
        setup_out=str(tmp_path / "so_setup.xml"),
        reserves_out=str(tmp_path / "so_reserves.json"),
        time_range=[0.6, 1.6],
        max_frames=25,
    )
    act = read_sto(tmp_path / "so_activation.sto")
    assert len(act) == so["frames"] == 25
    muscles = [c for c in act.columns if not c.startswith(("reserve_", "residual_"))]
    assert len(muscles) == 18
    assert act[muscles].to_numpy().min() >= 0 and act[muscles].to_numpy().max() <= 1
    kinds = {v["kind"] for v in so["actuators"].values()}
    assert kinds == {"reserve", "residual"}
    # muscles cross the knee: its reserve is small next to the muscles' share of the ID moment
    assert so["actuators"]["reserve_knee_angle_r"]["max_abs"] < 5.0

    ma = run_isolated(
        "muscle_analysis",
        model=model,
        coordinates_mot=ik,
        output_npz=str(tmp_path / "muscle_analysis.npz"),
        sto_dir=str(tmp_path / "muscle_analysis"),
        setup_out=str(tmp_path / "ma_setup.xml"),
        time_range=[0.6, 1.6],
        max_frames=30,
    )
    z = np.load(tmp_path / "muscle_analysis.npz")
    t, m, c = ma["frames"], ma["muscles"], ma["coordinates"]
    assert (t, m, c) == (30, 18, 10)
    assert z["moment_arm"].shape == (t, m, c) and z["q"].shape == (t, c)
    for key in ("mtu_length", "mtu_velocity", "fiber_length"):
        assert z[key].shape == (t, m)
    names = list(z["muscles"])
    knee = list(z["coordinates"]).index("knee_angle_r")
    hip = list(z["coordinates"]).index("hip_flexion_r")
    assert z["moment_arm"][:, names.index("vasti_r"), knee].min() > 0.01  # knee extensor
    assert np.abs(z["moment_arm"][:, names.index("vasti_r"), hip]).max() == 0  # one-joint
    # MTU velocity (from moment arms and qdot) agrees with the derivative of MTU length
    fd = np.gradient(z["mtu_length"], z["time"], axis=0)[2:-2]
    v = z["mtu_velocity"][2:-2]
    assert np.corrcoef(fd.ravel(), v.ravel())[0, 1] > 0.99
    assert z["max_isometric_force"].min() > 0 and z["optimal_fiber_length"].max() < 0.5
    assert list((tmp_path / "muscle_analysis").glob("ma_MuscleAnalysis*_Length.sto"))


def test_rajagopal_walk_moments_close_to_published_id(dataset_file, tmp_path):
    rw = "rajagopal-walk"
    # the authors' manual scale set, applied through the dataset's own scale setup
    setup = dataset_file(rw, "Scale/scale_setup_walk.xml").read_text()
    scale_set = dataset_file(rw, "Scale/scaleSet_applied_walk.xml").read_text()
    objects = scale_set[scale_set.index("<objects>") : scale_set.index("</objects>") + 10]
    setup = setup.replace("<scaling_order />", "<scaling_order> manualScale </scaling_order>")
    setup = setup.replace("<ScaleSet>\n\t\t\t\t<objects />", "<ScaleSet>\n" + objects, 1)
    assert "manualScale" in setup and "<segment>pelvis</segment>" in setup
    (tmp_path / "scale_setup_walk.xml").write_text(setup)
    quality = run_isolated(
        "scale",
        generic_model=str(dataset_file("opensim-models", "models/Rajagopal2016.osim")),
        marker_set=str(dataset_file(rw, "Scale/markerset_walk_preScale.xml")),
        scale_setup=str(tmp_path / "scale_setup_walk.xml"),
        static_trc=str(dataset_file(rw, "ExpData/static_walk_2.trc")),
        mass=85.27,
        height=1.89,
        output_model=str(tmp_path / "scaled.osim"),
        setup_out=str(tmp_path / "scale_setup.xml"),
        quality_out=str(tmp_path / "scale_quality.json"),
        time_range=[0.0, 0.1],
        max_marker_rms=0.05,
    )
    assert quality["marker_rms"] < 0.05
    run_isolated(
        "ik",
        model=str(tmp_path / "scaled.osim"),
        markers_trc=str(dataset_file(rw, "ExpData/motion_capture_walk.trc")),
        task_set=str(dataset_file(rw, "IK/ik_setup_walk.xml")),
        output_mot=str(tmp_path / "ik.mot"),
        setup_out=str(tmp_path / "ik_setup.xml"),
        errors_out=str(tmp_path / "ik_marker_errors.sto"),
        time_range=[0.45, 1.25],
    )
    # the dataset's ExternalLoads with its GRF file, without the kinematics file it names
    loads = dataset_file(rw, "ID/grf_walk.xml").read_text()
    grf = dataset_file(rw, "ExpData/grf_walk.mot")
    start = loads.index("<datafile>")
    end = loads.index("</lowpass_cutoff_frequency_for_load_kinematics>") + len(
        "</lowpass_cutoff_frequency_for_load_kinematics>"
    )
    loads = loads[:start] + f"<datafile>{grf}</datafile>" + loads[end:]
    (tmp_path / "grf_walk.xml").write_text(loads)
    run_isolated(
        "id",
        model=str(tmp_path / "scaled.osim"),
        coordinates_mot=str(tmp_path / "ik.mot"),
        external_loads_xml=str(tmp_path / "grf_walk.xml"),
        output_sto=str(tmp_path / "id.sto"),
        setup_out=str(tmp_path / "id_setup.xml"),
        residuals_out=str(tmp_path / "residuals.json"),
    )
    ours = read_sto(tmp_path / "id.sto")
    ref = read_sto(dataset_file("opensim-example3dwalking", "id_walk.sto"))
    ours = ours.loc[(ours.index >= 0.5) & (ours.index <= 1.2)]  # away from filter edges
    cols = [
        f"{j}_{s}_moment"
        for j in ("hip_flexion", "hip_adduction", "knee_angle", "ankle_angle")
        for s in ("r", "l")
    ]
    rms = coordinate_rms(ours, ref, cols)
    print("rajagopal-walk ID vs id_walk.sto RMS (N m):", rms.round(2).to_dict())
    assert rms.max() <= 10.0


def test_rajagopal_measurement_scale_setup_gives_plausible_factors(dataset_file, repo_root, tmp_path):
    rw = "rajagopal-walk"
    quality = run_isolated(
        "scale",
        generic_model=str(dataset_file("opensim-models", "models/Rajagopal2016.osim")),
        marker_set=str(dataset_file(rw, "Scale/markerset_walk_preScale.xml")),
        scale_setup=str(repo_root / "subjects" / rw / "scale_setup.xml"),
        static_trc=str(dataset_file(rw, "ExpData/static_walk_2.trc")),
        mass=85.27,
        height=1.89,
        output_model=str(tmp_path / "scaled.osim"),
        setup_out=str(tmp_path / "scale_setup.xml"),
        quality_out=str(tmp_path / "scale_quality.json"),
    )
    ours = quality["scale_factors"]
    ref = read_scale_factors(dataset_file(rw, "Scale/scaleSet_applied_walk.xml"))
    # the authors' manual factors for the segments the gait analysis depends on (first axis:
    # the reference scales the feet non-uniformly, only their length is comparable)
    legs = [f"{seg}_{s}" for seg in ("femur", "tibia", "calcn") for s in ("r", "l")] + ["pelvis"]
    rel = {b: ours[b][0] / ref[b][0] - 1 for b in legs}
    print(
        "rajagopal-walk scale factors, relative to scaleSet_applied_walk.xml:",
        {b: round(v, 3) for b, v in rel.items()},
    )
    assert max(abs(v) for v in rel.values()) <= 0.06
    assert all(0.5 <= f <= 2.0 for seg, fs in ours.items() for f in fs)
    assert quality["marker_rms"] < 0.04


def test_scale_leaves_out_markers_seen_in_few_static_frames(dataset_file, tmp_path):
    import opensim

    table = opensim.TimeSeriesTableVec3(str(dataset_file(G54, "subject01_static.trc")))
    column = table.updDependentColumn("R.Acromium")
    nan = opensim.Vec3(float("nan"), float("nan"), float("nan"))
    times = list(table.getIndependentColumn())
    inside = [i for i, t in enumerate(times) if 1.0 <= t <= 2.0]
    for i in inside[1:]:
        column[i] = nan  # seen in one frame of the window only, like a mislabelled blip
    sparse = tmp_path / "static.trc"
    opensim.TRCFileAdapter().write(table, str(sparse))
    full = run_isolated("scale", **scale_kwargs(dataset_file, tmp_path / "full"))
    quality = run_isolated("scale", **scale_kwargs(dataset_file, tmp_path / "sparse", static_trc=str(sparse)))
    assert "R.Acromium" in full["marker_errors"]
    assert "R.Acromium" not in quality["marker_errors"]
    assert quality["markers_used"] == full["markers_used"] - 1
    # a marker a measurement needs may not be dropped: a specific error
    with pytest.raises(TooFewMarkersError, match="Top.Head"):
        table2 = opensim.TimeSeriesTableVec3(str(dataset_file(G54, "subject01_static.trc")))
        col2 = table2.updDependentColumn("Top.Head")
        for i in inside[1:]:
            col2[i] = nan
        opensim.TRCFileAdapter().write(table2, str(tmp_path / "static2.trc"))
        run_isolated(
            "scale", **scale_kwargs(dataset_file, tmp_path / "m", static_trc=str(tmp_path / "static2.trc"))
        )
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


def test_ik_window_starts_before_first_foot_strike(dataset_file, tmp_path):
    events = tmp_path / "events.json"
    events.write_text(
        json.dumps({"right": {"strike": [1.3], "off": []}, "left": {"strike": [0.9], "off": [1.5]}})
    )
    summary = run_isolated(
        "ik",
        model=str(dataset_file(G10, "OutputReference/subject01.osim")),
        markers_trc=str(dataset_file(G10, "ExperimentalData/subject01_walk.trc")),
        task_set=str(dataset_file(G10, "IK/walk_Setup_IK.xml")),
        output_mot=str(tmp_path / "ik.mot"),
        setup_out=str(tmp_path / "ik_setup.xml"),
        errors_out=str(tmp_path / "ik_marker_errors.sto"),
        events=str(events),
        strike_lead=0.1,
        max_frames=12,
    )
    ik = read_sto(tmp_path / "ik.mot")
    assert len(ik) == summary["frames"] == 12
    assert ik.index[0] == pytest.approx(0.8, abs=1 / 60 + 1e-9)
    # tracking the right side: the window starts before the right foot's strike, not the left's
    from musculo.opensim_tools.ik import first_strike

    assert first_strike(events, sides=["right"]) == 1.3 and first_strike(events) == 0.9
    assert first_strike(events, sides=["nope"]) is None


def test_ik_window_ends_after_last_foot_off(dataset_file, tmp_path):
    """opensim.off_lag: IK (and every stage after it) ends that long after the last foot off."""
    events = tmp_path / "events.json"
    events.write_text(
        json.dumps({"right": {"strike": [0.9], "off": [1.0]}, "left": {"strike": [], "off": [1.05]}})
    )
    kwargs = {
        "model": str(dataset_file(G10, "OutputReference/subject01.osim")),
        "markers_trc": str(dataset_file(G10, "ExperimentalData/subject01_walk.trc")),
        "task_set": str(dataset_file(G10, "IK/walk_Setup_IK.xml")),
        "events": str(events),
        "strike_lead": 0.1,
    }
    summary = run_isolated(
        "ik",
        **kwargs,
        off_lag=0.1,
        output_mot=str(tmp_path / "ik.mot"),
        setup_out=str(tmp_path / "ik_setup.xml"),
        errors_out=str(tmp_path / "ik_marker_errors.sto"),
    )
    ik = read_sto(tmp_path / "ik.mot")
    assert len(ik) == summary["frames"]
    assert ik.index[0] == pytest.approx(0.8, abs=1 / 60 + 1e-9)
    assert ik.index[-1] == pytest.approx(1.15, abs=1 / 60 + 1e-9)
    # events without a foot off leave the end at the trial's end (here cut by max_frames)
    events.write_text(json.dumps({"right": {"strike": [0.9], "off": []}}))
    run_isolated(
        "ik",
        **kwargs,
        off_lag=0.1,
        max_frames=30,
        output_mot=str(tmp_path / "ik2.mot"),
        setup_out=str(tmp_path / "ik2_setup.xml"),
        errors_out=str(tmp_path / "ik2_marker_errors.sto"),
    )
    assert len(read_sto(tmp_path / "ik2.mot")) == 30


def test_ik_coordinate_weights_pull_a_coordinate_to_its_default(dataset_file, tmp_path):
    """opensim.ik_coordinate_weights adds IK coordinate tasks towards the model's default value."""
    from musculo.errors import InputDataError

    def solve(name, weights):
        run_isolated(
            "ik",
            model=str(dataset_file(G10, "OutputReference/subject01.osim")),
            markers_trc=str(dataset_file(G10, "ExperimentalData/subject01_walk.trc")),
            task_set=str(dataset_file(G10, "IK/walk_Setup_IK.xml")),
            output_mot=str(tmp_path / name / "ik.mot"),
            setup_out=str(tmp_path / name / "ik_setup.xml"),
            errors_out=str(tmp_path / name / "ik_marker_errors.sto"),
            time_range=[0.9, 1.2],
            coordinate_weights=weights,
        )
        return read_sto(tmp_path / name / "ik.mot")

    free = solve("free", None)
    held = solve("held", {"knee_angle_r": 1000.0})
    assert np.abs(free["knee_angle_r"]).max() > 10.0  # degrees: the knee bends in this window
    assert np.abs(held["knee_angle_r"]).max() < 0.1 * np.abs(free["knee_angle_r"]).max()
    assert np.abs(held["knee_angle_l"] - free["knee_angle_l"]).max() < 5.0
    setup = (tmp_path / "held" / "ik_setup.xml").read_text()
    assert '<IKCoordinateTask name="knee_angle_r">' in setup and "default_value" in setup
    with pytest.raises(InputDataError, match="ik_coordinate_weights.*knee_r"):
        solve("wrong", {"knee_r": 1.0})


def test_ik_unwinds_whole_turns_of_pure_rotations_only(dataset_file, tmp_path):
    """A coordinate IK wound a full turn away comes back when that is the same pose (pelvis tilt),
    and stays when the coordinate also drives translations (the knee's coupled splines)."""
    import opensim

    from musculo.opensim_tools.ik import unwind_turns

    ref = dataset_file(G10, "OutputReference/IK/subject01_walk_IK.mot")
    model = opensim.Model(str(dataset_file(G10, "OutputReference/subject01.osim")))
    original = read_sto(ref)
    wound = tmp_path / "ik.mot"
    table = opensim.Storage(str(ref))
    labels = [table.getColumnLabels().get(i) for i in range(table.getColumnLabels().getSize())][1:]
    for i in range(table.getSize()):
        row = table.getStateVector(i).getData()
        for name, turns in {"pelvis_tilt": -1, "knee_angle_r": 1}.items():
            row.set(labels.index(name), row.get(labels.index(name)) + 360.0 * turns)
    table.printToFile(str(wound), "w")
    padded = tmp_path / "ik_padded.mot"
    padded.write_bytes(wound.read_bytes())
    assert unwind_turns(model, wound, [padded]) == {"pelvis_tilt": -1}
    for path in (wound, padded):
        back = read_sto(path)
        np.testing.assert_allclose(back["pelvis_tilt"], original["pelvis_tilt"], atol=1e-6)
        np.testing.assert_allclose(back["knee_angle_r"], original["knee_angle_r"] + 360.0, atol=1e-6)
    assert unwind_turns(model, ref) == {}


def test_spanned_coordinates_follow_topology_and_couplers(dataset_file):
    from musculo.opensim_tools.common import free_coordinates, load_model
    from musculo.opensim_tools.muscle_analysis import analysis_groups, spanned_coordinates

    model = load_model(dataset_file("opensim-models", "models/Rajagopal2016.osim"))
    coords = free_coordinates(model)
    spanned = spanned_coordinates(
        model=model, muscles=["vaslat_r", "recfem_r", "soleus_r", "glmax1_l"], coordinates=coords
    )
    # the vasti insert on the patella, whose joint is coupled to the knee angle
    assert spanned["vaslat_r"] == ["knee_angle_r"]
    assert spanned["recfem_r"] == ["hip_flexion_r", "hip_adduction_r", "hip_rotation_r", "knee_angle_r"]
    assert spanned["soleus_r"] == ["ankle_angle_r"]  # subtalar and mtp are locked in this model
    assert set(spanned["glmax1_l"]) == {"hip_flexion_l", "hip_adduction_l", "hip_rotation_l"}
    groups = analysis_groups(spanned=spanned, coordinates=coords)
    as_sets = {frozenset(m): tuple(c) for m, c in groups}
    assert as_sets == {
        frozenset({"vaslat_r", "recfem_r"}): (
            "hip_flexion_r",
            "hip_adduction_r",
            "hip_rotation_r",
            "knee_angle_r",
        ),
        frozenset({"soleus_r"}): tuple(spanned["soleus_r"]),
        frozenset({"glmax1_l"}): tuple(spanned["glmax1_l"]),
    }


def test_muscle_analysis_on_spanned_coordinates_equals_the_full_analysis(dataset_file, tmp_path):
    model = str(dataset_file(G10, "OutputReference/subject01.osim"))
    ik = str(dataset_file(G10, "OutputReference/IK/subject01_walk_IK.mot"))
    out = {}
    tracked = ["hip_flexion_r", "knee_angle_r", "ankle_angle_r"]
    for name, options in {
        "spanned": {"spanned_only": True},
        "full": {"spanned_only": False},
        "tracked": {"coordinates": tracked},
    }.items():
        folder = tmp_path / name
        run_isolated(
            "muscle_analysis",
            model=model,
            coordinates_mot=ik,
            output_npz=str(folder / "muscle_analysis.npz"),
            sto_dir=str(folder / "muscle_analysis"),
            setup_out=str(folder / "ma_setup.xml"),
            time_range=[0.6, 1.6],
            max_frames=12,
            **options,
        )
        out[name] = np.load(folder / "muscle_analysis.npz")
    grouped, full, part = out["spanned"], out["full"], out["tracked"]
    # only the tracked coordinates: same moment arms about them, MTU velocity from the lengths
    assert list(part["coordinates"]) == tracked
    cols = [list(full["coordinates"]).index(c) for c in tracked]
    np.testing.assert_allclose(part["moment_arm"], full["moment_arm"][:, :, cols], rtol=0, atol=1e-9)
    np.testing.assert_allclose(part["mtu_length"], full["mtu_length"], rtol=0, atol=1e-9)
    err = np.abs(part["mtu_velocity"] - full["mtu_velocity"]).max()
    print("MTU velocity from spline vs from moment arms, max abs difference (m/s):", err)
    assert err < 0.05 * np.abs(full["mtu_velocity"]).max()
    for key in ("mtu_length", "fiber_length", "moment_arm", "mtu_velocity", "q", "qdot"):
        np.testing.assert_allclose(grouped[key], full[key], rtol=0, atol=1e-9, err_msg=key)
    assert list(grouped["coordinates"]) == list(full["coordinates"])
    assert np.abs(full["moment_arm"]).max() > 0.01
    # two legs that share no coordinate: one MuscleAnalysis each
    files = sorted(
        p.name for p in (tmp_path / "spanned" / "muscle_analysis").glob("ma_MuscleAnalysis*_Length.sto")
    )
    assert files == ["ma_MuscleAnalysis1_Length.sto", "ma_MuscleAnalysis2_Length.sto"]


def test_muscle_analysis_rejects_unknown_coordinates(dataset_file, tmp_path):
    from musculo.errors import InputDataError

    with pytest.raises(InputDataError, match="no_such_angle"):
        run_isolated(
            "muscle_analysis",
            model=str(dataset_file(G10, "OutputReference/subject01.osim")),
            coordinates_mot=str(dataset_file(G10, "OutputReference/IK/subject01_walk_IK.mot")),
            output_npz=str(tmp_path / "out" / "muscle_analysis.npz"),
            sto_dir=str(tmp_path / "out" / "muscle_analysis"),
            setup_out=str(tmp_path / "out" / "ma_setup.xml"),
            coordinates=["knee_angle_r", "no_such_angle"],
        )
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
