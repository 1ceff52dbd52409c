"""Joint contact forces: the joint reaction stage against OpenSim's JointReaction run by hand,
forces of a method modelling only some muscles, the knee compartment split, the evaluation rows."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from musculo.contact import (
    COLUMNS,
    ContactForceError,
    G,
    contact_channels,
    contact_forces,
    intercondylar_distances,
    not_fitted_reason,
)
from musculo.errors import InputDataError
from musculo.io.tables import read_sto, write_sto
from musculo.opensim_tools import run_isolated

G10 = "gait10dof18musc-subject01"

HAND_SETUP = """<?xml version="1.0" encoding="UTF-8" ?>
<OpenSimDocument Version="40000">
  <AnalyzeTool name="byhand">
    <model_file>{model}</model_file>
    <replace_force_set>false</replace_force_set>
    <force_set_files>{reserves}</force_set_files>
    <results_directory>{results}</results_directory>
    <initial_time>{start}</initial_time>
    <final_time>{end}</final_time>
    <solve_for_equilibrium_for_auxiliary_states>true</solve_for_equilibrium_for_auxiliary_states>
    <AnalysisSet name="Analyses">
      <objects>
        <JointReaction name="JointReaction">
          <on>true</on>
          <start_time>{start}</start_time>
          <end_time>{end}</end_time>
          <step_interval>1</step_interval>
          <forces_file>{forces}</forces_file>
          <joint_names>knee_r</joint_names>
          <apply_on_bodies>child</apply_on_bodies>
          <express_in_frame>ground</express_in_frame>
        </JointReaction>
      </objects>
      <groups />
    </AnalysisSet>
    <external_loads_file>{loads}</external_loads_file>
    <coordinates_file>{coordinates}</coordinates_file>
    <lowpass_cutoff_frequency_for_coordinates>6</lowpass_cutoff_frequency_for_coordinates>
  </AnalyzeTool>
</OpenSimDocument>
"""


@pytest.fixture(scope="module")
def g10_so(tmp_path_factory, request):
    """Static optimization on 25 frames of gait10dof18musc walking (inputs and the SO outputs)."""
    from musculo.datasets import dataset_path

    def data(file):
        return str(dataset_path(G10, file, download=False))

    out = tmp_path_factory.mktemp("so")
    inputs = {
        "model": data("OutputReference/subject01.osim"),
        "coordinates_mot": data("OutputReference/IK/subject01_walk_IK.mot"),
        "external_loads_xml": data("ExperimentalData/subject01_walk_grf.xml"),
    }
    run_isolated(
        "so",
        **inputs,
        activation_out=str(out / "so_activation.sto"),
        force_out=str(out / "so_force.sto"),
        setup_out=str(out / "so_setup.xml"),
        reserves_out=str(out / "so_reserves.json"),
        time_range=[0.6, 1.6],
        max_frames=25,
    )
    return out, inputs


def run_jr(inputs, out, forces, so_forces=None, name="walk"):
    return run_isolated(
        "joint_reaction",
        **inputs,
        forces_sto=str(forces),
        so_forces_sto=None if so_forces is None else str(so_forces),
        output_sto=str(out / f"{name}.reactions.sto"),
        setup_out=str(out / f"{name}_setup.xml"),
        summary_out=str(out / f"{name}.reactions.json"),
    )


def test_knee_reaction_matches_opensim_joint_reaction_by_hand(dataset_file, g10_so, tmp_path):
    dataset_file(G10, "OutputReference/subject01.osim")  # fails (not skips) without the data
    so_dir, inputs = g10_so
    summary = run_jr(inputs, tmp_path, so_dir / "so_force.sto")
    assert summary["frames"] == 25 and summary["from_so"] == []
    knee = {"joint": "knee_r", "child": "tibia_r", "coordinate": "knee_angle_r"}
    assert summary["joints"]["knee_r"] == knee
    ours = contact_channels(read_sto(tmp_path / "walk.reactions.sto"), joints=summary["joints"])

    # OpenSim's JointReaction set up by hand: SO's own forces file and reserve actuators, in ground
    hand = tmp_path / "hand"
    hand.mkdir()
    setup = hand / "setup.xml"
    setup.write_text(HAND_SETUP.format(
        model=inputs["model"], reserves=so_dir / "so_reserve_actuators.xml", results=hand,
        start=summary["start"], end=summary["end"], forces=so_dir / "so_force.sto",
        loads=inputs["external_loads_xml"], coordinates=inputs["coordinates_mot"]))
    code = f"import opensim, sys; sys.exit(0 if opensim.AnalyzeTool(r'{setup}').run() else 1)"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=hand, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "constructed from the states" not in proc.stdout + proc.stderr
    ref = read_sto(hand / "byhand_JointReaction_ReactionLoads.sto")
    ref_mag = np.linalg.norm(
        ref[[f"knee_r_on_tibia_r_in_ground_f{c}" for c in "xyz"]].to_numpy(dtype=float), axis=1)
    assert len(ref) == len(ours)
    np.testing.assert_allclose(ref.index.to_numpy(), ours.index.to_numpy(), atol=1e-6)
    mine = ours["knee_r_total"].to_numpy()
    err = np.abs(mine - ref_mag).max() / ref_mag.max()
    print(f"knee_r peak: musculo {mine.max():.1f} N, OpenSim by hand {ref_mag.max():.1f} N, "
          f"largest difference {100 * err:.3f} % of the peak")
    assert err <= 0.01
    assert abs(mine.max() / ref_mag.max() - 1) <= 0.01
    # the reaction is a real load: well above body weight in stance (subject01: 72.6 kg scaled)
    assert ref_mag.max() > 1.5 * 9.81 * 60
    # compartments share the compressive force along the tibia axis, which is at most the total
    axial = -read_sto(tmp_path / "walk.reactions.sto")["knee_r_on_tibia_r_in_tibia_r_fy"].to_numpy()
    np.testing.assert_allclose(ours["knee_r_medial"] + ours["knee_r_lateral"], axial, rtol=1e-9)
    assert np.all(axial <= mine + 1e-6)
    assert (tmp_path / "walk_forces.sto").is_file() and (tmp_path / "walk_setup.xml").is_file()
    assert not list(tmp_path.glob(".opensim-*"))


def test_method_with_some_muscles_takes_the_rest_from_so(g10_so, tmp_path):
    so_dir, inputs = g10_so
    so = read_sto(so_dir / "so_force.sto")
    base = run_jr(inputs, tmp_path, so_dir / "so_force.sto", name="so")
    base_knee = read_sto(tmp_path / "so.reactions.sto")["knee_r_on_tibia_r_in_tibia_r_fy"]
    # an "estimator" modelling three muscles with SO's own forces on part of the window
    part = so.loc[so.index[3:20], ["vasti_r", "hamstrings_r", "gastroc_r"]]
    write_sto(tmp_path / "same.forces.sto", part)
    same = run_jr(inputs, tmp_path, tmp_path / "same.forces.sto", so_dir / "so_force.sto", name="same")
    assert same["frames"] == 17 and len(same["muscles_from_so"]) == 15
    assert "vasti_r" not in same["from_so"] and "reserve_knee_angle_r" in same["from_so"]
    knee = read_sto(tmp_path / "same.reactions.sto")["knee_r_on_tibia_r_in_tibia_r_fy"]
    aligned = base_knee.reindex(knee.index, method="nearest", tolerance=1e-5)
    np.testing.assert_allclose(knee.to_numpy(), aligned.to_numpy(), rtol=1e-3, atol=1.0)
    # more vasti force -> more knee compression, by about the added force along the tibia
    write_sto(tmp_path / "more.forces.sto", part.assign(vasti_r=part["vasti_r"] + 500.0))
    more_summary = run_jr(
        inputs, tmp_path, tmp_path / "more.forces.sto", so_dir / "so_force.sto", name="more"
    )
    more = read_sto(tmp_path / "more.reactions.sto")["knee_r_on_tibia_r_in_tibia_r_fy"]
    extra = (knee - more).to_numpy()  # fy is negative in compression
    print("knee compression added by 500 N more vasti force (N):", extra.min().round(1), extra.max().round(1))
    # the knee reserve cancels the extra extension moment (vasti moment arm about 4-5 cm) ...
    assert same["closure_max_abs"] == {}
    assert set(more_summary["closure_max_abs"]) == {"knee_angle_r"}
    assert 10 < more_summary["closure_max_abs"]["knee_angle_r"] < 40
    # ... so the motion is unchanged and the tibia takes the added force along its axis
    assert extra.min() > 300 and extra.max() <= 500 + 1
    assert base["frames"] == 25
    # a method lacking muscles and no SO forces to fill them: a specific error naming the file
    with pytest.raises(InputDataError, match="same.forces.sto"):
        run_jr(inputs, tmp_path / "x", tmp_path / "same.forces.sto", name="bad")
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").glob("*.sto"))


def reactions_table(fy, mx, *, side="r", fx=0.0, fz=0.0):
    root = f"knee_{side}_on_tibia_{side}_in_tibia_{side}_"
    t = np.arange(len(fy)) * 0.01
    return pd.DataFrame({root + "fx": fx, root + "fy": fy, root + "fz": fz, root + "mx": mx},
                        index=pd.Index(t, name="time"))


def test_knee_compartment_split_follows_the_frontal_moment_balance():
    joints_r = {"knee_r": {"joint": "knee_r", "child": "tibia_r"}}
    joints_l = {"knee_l": {"joint": "knee_l", "child": "tibia_l"}}
    fy = np.array([-2000.0, -1000.0, -1500.0])
    mx = np.array([-20.0, 0.0, 10.0])
    right = contact_channels(reactions_table(fy, mx, fx=300.0), joints=joints_r, intercondylar_distance=0.04)
    # right tibia: z lateral; a negative mx (medial condyle pushed down more) loads the medial side
    np.testing.assert_allclose(right["knee_r_medial"], [1000 + 500, 500, 750 - 250])
    np.testing.assert_allclose(right["knee_r_lateral"], [1000 - 500, 500, 750 + 250])
    np.testing.assert_allclose(right["knee_r_total"], np.hypot(fy, 300.0))
    # left tibia: z is medial, the same moment loads the other compartment
    left = contact_channels(reactions_table(fy, mx, side="l"), joints=joints_l, intercondylar_distance=0.04)
    np.testing.assert_allclose(left["knee_l_medial"], right["knee_r_lateral"])
    # moment balance about the knee centre: (d/2)(F_med - F_lat) = -mx on the right
    np.testing.assert_allclose(0.02 * (right["knee_r_medial"] - right["knee_r_lateral"]), -mx)
    with pytest.raises(ContactForceError, match="missing"):
        contact_channels(reactions_table(fy, mx), joints=joints_l)


def test_intercondylar_distance_scales_with_the_tibia(tmp_path):
    q = tmp_path / "scale_quality.json"
    q.write_text(json.dumps({"scale_factors": {"tibia_r": [1.1, 1.05, 1.2], "tibia_l": [1, 1, 0.9]}}))
    assert intercondylar_distances(q) == pytest.approx({"r": 0.048, "l": 0.036})
    assert intercondylar_distances(None, nominal=0.05) == {"r": 0.05, "l": 0.05}
    with pytest.raises(InputDataError, match="scale stage"):
        intercondylar_distances(tmp_path / "nope.json")


def test_contact_forces_writes_peaks_in_newtons_and_body_weights(tmp_path):
    fy = np.array([-500.0, -2000.0, -1200.0])
    table = reactions_table(fy, np.array([0.0, -10.0, 5.0]))
    write_sto(tmp_path / "t1.reactions.sto", table)
    joints = {"knee_r": {"joint": "knee_r", "child": "tibia_r"}}
    (tmp_path / "t1.json").write_text(json.dumps({"joints": joints}))
    truth = tmp_path / "truth"
    truth.mkdir()
    write_sto(truth / "t1.sto", pd.DataFrame({"knee_r_total": -fy + 100.0}, index=table.index))
    out = contact_forces(
        subject="s1", method="so", trials=["t1"], reactions=[tmp_path / "t1.reactions.sto"],
        summaries=[tmp_path / "t1.json"], mass=80.0, evaluation_out=tmp_path / "ev" / "evaluation.tsv",
        curves_dir=tmp_path / "ev" / "curves", truth_dir=truth)
    on_disk = pd.read_csv(tmp_path / "ev" / "evaluation.tsv", sep="\t")
    assert list(on_disk.columns) == COLUMNS
    assert set(on_disk["quantity"]) == {"contact_force"}
    value = on_disk.set_index(["channel", "metric"])["value"]
    assert value["knee_r_total", "peak_N"] == pytest.approx(2000.0, rel=1e-5)
    assert value["knee_r_total", "peak_BW"] == pytest.approx(2000.0 / (80.0 * G), rel=1e-5)
    assert value["knee_r_medial", "peak_N"] == pytest.approx(1000.0 + 10.0 / 0.04, rel=1e-5)
    assert value["knee_r_total", "rmse_N"] == pytest.approx(100.0, rel=1e-5)
    assert value["knee_r_total", "rmse_BW"] == pytest.approx(100.0 / (80.0 * G), rel=1e-5)
    assert ("knee_r_medial", "rmse_N") not in value.index  # no truth for that channel
    assert len(out) == len(on_disk)
    curves = read_sto(tmp_path / "ev" / "curves" / "t1.sto")
    np.testing.assert_allclose(curves["knee_r_total"], -fy, rtol=1e-6)
    with pytest.raises(ContactForceError, match="positive mass"):
        contact_forces(subject="s1", method="so", trials=["t1"], reactions=[tmp_path / "t1.reactions.sto"],
                       summaries=[tmp_path / "t1.json"], mass=0.0, evaluation_out=tmp_path / "e2.tsv",
                       curves_dir=tmp_path / "c2")
    assert not (tmp_path / "e2.tsv").exists()


def test_a_method_not_fitted_gets_an_empty_contact_table_that_says_why(tmp_path):
    from musculo.evaluation import write_not_applicable

    reason = "no EMG channel of the subject passed quality in every trial"
    write_not_applicable(method="mse", subject="s1", out_dir=tmp_path / "mse", reason=reason)
    assert not_fitted_reason(tmp_path / "mse" / "model") == reason
    (tmp_path / "fitted").mkdir()
    assert not_fitted_reason(tmp_path / "fitted") is None
    ev = tmp_path / "ev"
    out = contact_forces(subject="s1", method="mse", trials=[], reactions=[], summaries=[], mass=70.0,
                         evaluation_out=ev / "evaluation.tsv", curves_dir=ev / "curves", not_fitted=reason)
    assert out.empty
    assert list(pd.read_csv(tmp_path / "ev" / "evaluation.tsv", sep="\t").columns) == COLUMNS
    info = json.loads((tmp_path / "ev" / "curves" / "info.json").read_text())
    assert info["status"] == "not fitted" and info["reason"] == reason and info["trials"] == []
    with pytest.raises(ContactForceError, match="not fitted"):
        contact_forces(subject="s1", method="mse", trials=["t1"], reactions=["a.sto"], summaries=["a.json"],
                       mass=70.0, evaluation_out=tmp_path / "e3.tsv", curves_dir=tmp_path / "c3",
                       not_fitted=reason)


def test_report_draws_contact_forces_and_summary_pools_sides(tmp_path):
    from musculo.report.contact import contact_figures, summary_columns
    from musculo.report.summary import summary_table

    t = pd.Index(np.linspace(0.0, 1.2, 121), name="time")
    bw = 70.0 * G
    curves = tmp_path / "contact" / "so" / "curves"
    curves.mkdir(parents=True)
    knee = bw * (1.0 + 1.5 * np.sin(np.pi * t.to_numpy() / 1.2) ** 2)
    write_sto(curves / "walk.sto", pd.DataFrame({"knee_r_total": knee, "hip_r": 0.8 * knee}, index=t))
    (curves / "info.json").write_text(json.dumps(
        {"body_weight": bw, "published_peak_bw": {"knee_total": [2.0, 3.5]}}))
    (tmp_path / "walk").mkdir()
    (tmp_path / "walk" / "events.json").write_text(json.dumps(
        {"right": {"strike": [0.1, 1.1], "off": [0.7]}, "left": {"strike": [0.6], "off": [0.2]}}))
    notes, missing = [], []
    figs = contact_figures(results=tmp_path, subject="s1", trials=["walk", "run"], methods=["so"],
                           notes=notes, missing=missing)
    assert [f[0] for f in figs] == ["contact_forces"]
    fig = figs[0][3]
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["knee_r_total", "hip_r"]
    assert axes[0].get_xlabel() == "gait cycle (%)"  # one whole right cycle, 0.1-1.1 s
    line = axes[0].get_lines()[0].get_ydata()
    grid = np.linspace(0.1, 1.1, 101)
    np.testing.assert_allclose(line, np.interp(grid, t, knee) / bw, rtol=1e-6)
    assert len(axes[0].patches) == 1 and not axes[1].patches  # the published band, knee only
    assert missing == [str(curves / "run.sto")]

    ev = pd.DataFrame([
        ["s1", "walk", "so", "contact_force", "knee_r_total", "peak_BW", 2.5],
        ["s1", "walk", "so", "contact_force", "knee_l_total", "peak_BW", 3.5],
        ["s1", "walk", "so", "contact_force", "knee_l_total", "peak_N", 2000.0],
        ["s1", "walk", "so", "moment", "knee_angle_r_moment", "rmse", 4.0],
    ], columns=COLUMNS)
    assert list(summary_columns(ev).fillna("-")) == [
        "contact_force knee_total peak_BW", "contact_force knee_total peak_BW", "-", "moment rmse"]
    table = summary_table(ev)
    assert table.loc[0, "contact_force knee_total peak_BW"] == pytest.approx(3.0)
    assert "contact_force knee_total peak_N" not in table.columns


def test_peaks_are_taken_within_each_sides_stance():
    from musculo.contact import peak_rows, stance_windows

    events = {"right": {"strike": [0.5], "off": [1.1]}, "left": {"strike": [1.0], "off": [0.2]}}
    windows = stance_windows(events, start=0.0, end=1.5)
    assert windows == {"r": [(0.5, 1.1)], "l": [(0.0, 0.2), (1.0, 1.5)]}
    assert stance_windows(None, start=0.0, end=1.0) == {"r": [(0.0, 1.0)], "l": [(0.0, 1.0)]}
    t = pd.Index(np.round(np.linspace(0.0, 1.5, 151), 6), name="time")
    off_plate = np.where((t > 0.25) & (t < 0.45), 9000.0, 0.0)  # a spike while no foot is on a plate
    channels = pd.DataFrame({"knee_r_total": off_plate + 1000.0 * (t > 0.6),
                             "hip_l": off_plate + 700.0 * (t > 1.2)}, index=t)
    rows = peak_rows(channels, subject="s", trial="w", method="so", body_weight=700.0, windows=windows)
    peaks = {(r["channel"], r["metric"]): r["value"] for r in rows}
    assert peaks[("knee_r_total", "peak_N")] == pytest.approx(1000.0)
    assert peaks[("hip_l", "peak_BW")] == pytest.approx(1.0)
    whole = peak_rows(channels, subject="s", trial="w", method="so", body_weight=700.0)
    assert max(r["value"] for r in whole if r["metric"] == "peak_N") == pytest.approx(9000.0)
