"""IK poses outside the model's coordinate ranges are judged in quality.tsv."""

from __future__ import annotations

import numpy as np
import pandas as pd

from musculo.io.tables import write_sto
from musculo.opensim_tools.quality import coordinate_ranges, range_rows


def test_ik_frames_outside_the_model_ranges_are_flagged(dataset_file, tmp_path):
    model = dataset_file("gait10dof18musc-subject01", "OutputReference/subject01.osim")
    ranges = coordinate_ranges(model)
    lo, hi, rotational = ranges["knee_angle_r"]
    assert rotational and hi < np.deg2rad(15) and lo < -1.5
    assert "pelvis_tx" not in ranges and "pelvis_rotation" not in ranges  # the joint to ground
    t = np.arange(100) / 100.0
    knee_r = np.where(t < 0.3, 50.0, -30.0)  # 30 % of frames hyperextended 50 deg: outside the range
    knee_l = -30.0 + 20.0 * np.sin(2 * np.pi * t)  # inside
    hip_hi = np.rad2deg(ranges["hip_flexion_r"][1])
    hip_r = np.where(t < 0.03, hip_hi + 30, 10.0)  # hip_flexion_r outside its range in 3 % of frames
    df = pd.DataFrame({"knee_angle_r": knee_r, "knee_angle_l": knee_l, "hip_flexion_r": hip_r}, index=t)
    mot = write_sto(tmp_path / "walk" / "ik.mot", df, in_degrees=True)
    rows = {r["quantity"]: r for r in range_rows("s", model, [mot], limit=0.05)}
    assert set(rows) == {"frames_outside_range:knee_angle_r", "frames_outside_range:hip_flexion_r"}
    assert rows["frames_outside_range:hip_flexion_r"]["verdict"] == "PASS"  # 3 % <= 5 %
    knee = rows["frames_outside_range:knee_angle_r"]
    assert knee["trial"] == "walk" and knee["value"] == 0.3 and knee["verdict"] == "FAIL"
    assert "frames_outside_range:knee_angle_l" not in rows


def test_path_fit_check_is_listed_and_a_miss_is_flagged_not_failed(tmp_path):
    """quality.tsv lists the fitted paths' check against OpenSim with opensim.path_fit.accept."""
    import json

    from musculo.opensim_tools.quality import path_fit_rows

    paths = tmp_path / "paths.json"
    check = {
        "frames": 95,
        "worst_length": ["med_gas_r", 0.0004],
        "worst_moment_arm": ["vas_lat_l/knee_angle_l", 0.0016],
        "frames_outside_ranges": 5,
        "trial_frames": 100,
    }
    paths.write_text(json.dumps({"frame_rmse": check}))
    accept = {"length_mm": 1.0, "moment_arm_mm": 1.0, "outside_share": 0.05}
    rows = {r["quantity"]: r for r in path_fit_rows("s", paths, accept)}
    assert rows["length_rmse"]["verdict"] == "PASS" and rows["length_rmse"]["limit"] == 0.001
    outside = rows["frames_outside_ranges"]
    assert outside["value"] == 0.05 and outside["verdict"] == "PASS"
    arm = rows["moment_arm_rmse"]
    assert arm["verdict"] == "INFO" and "vas_lat_l/knee_angle_l" in arm["flag"] and "OpenSim" in arm["flag"]


def test_a_stance_off_the_plates_is_flagged_with_the_span_the_estimators_keep(tmp_path):
    import json

    from musculo.opensim_tools.quality import measured_rows

    d = tmp_path / "walk1"
    d.mkdir()
    t = np.round(np.arange(0.0, 1.0, 0.01), 4)

    def load(a, b):
        return np.where((t >= a - 1e-9) & (t <= b + 1e-9), 300.0, 0.0)

    grf = {"ground_force_r_vy": load(0.2, 0.6), "ground_force_l_vy": load(0.5, 0.8)}
    write_sto(d / "grf.mot", pd.DataFrame(grf, index=pd.Index(t, name="time")))
    events = {"right": {"strike": [0.2], "off": [0.6]}, "left": {"strike": [0.5], "off": [0.8]}}
    (d / "events.json").write_text(json.dumps(events))
    (row,) = measured_rows("s", "walk1", d / "events.json")
    assert row["quantity"] == "unmeasured_load_share" and row["value"] == 0.0 and row["verdict"] == "PASS"
    events["right"]["strike"].append(0.65)  # marked by the C3D file only: no plate under that foot
    (d / "events.json").write_text(json.dumps(events))
    (row,) = measured_rows("s", "walk1", d / "events.json")
    assert row["verdict"] == "WARN"
    assert abs(row["value"] - 0.1 / 0.6) < 1e-6
    assert "0.200-0.700 s of 0.200-0.800 s" in row["flag"]


def test_pelvis_residuals_are_judged_on_the_frames_the_estimators_keep(tmp_path):
    """The residual window is the estimators' (``contact_window`` within the frames ID holds)."""
    import json

    from musculo.opensim_tools.quality import stance_residuals

    d = tmp_path / "walk1"
    d.mkdir()
    t = np.round(np.arange(0.0, 1.0, 0.01), 4)
    grf = {"ground_force_r_vy": np.where((t >= 0.2 - 1e-9) & (t <= 0.9 + 1e-9), 300.0, 0.0),
           "ground_force_l_vy": np.zeros_like(t)}
    write_sto(d / "grf.mot", pd.DataFrame(grf, index=pd.Index(t, name="time")))
    # the left foot stands off the plates at 0.40-0.60 s: measured runs 0.20-0.45 and 0.55-0.90 s
    events = {"right": {"strike": [0.2], "off": [0.9]}, "left": {"strike": [0.4], "off": [0.6]}}
    (d / "events.json").write_text(json.dumps(events))
    info = {"body_weight": 100.0, "height": 1.0,
            "coordinates": {"pelvis_ty": {"column": "pelvis_ty_force", "unit": "N"}}}
    (d / "residuals.json").write_text(json.dumps(info))

    def rms_over(held: np.ndarray) -> float:
        moments = pd.DataFrame({"pelvis_ty_force": held}, index=pd.Index(held, name="time"))
        write_sto(d / "id.sto", moments)  # the residual equals the time: its RMS tells the frames
        return stance_residuals(d / "residuals.json", d / "id.sto", d / "events.json")["pelvis_ty"]["rms"]

    def rms(a: float, b: float) -> float:
        return float(np.sqrt(np.mean(t[(t >= a - 1e-9) & (t <= b + 1e-9)] ** 2)))

    assert abs(rms_over(t) - rms(0.55, 0.9)) < 1e-6  # the longest measured run
    # a trial cut short (max_frames) to 0-0.5 s: the measured run within its frames, as the estimators
    assert abs(rms_over(t[t <= 0.5 + 1e-9]) - rms(0.2, 0.45)) < 1e-6
