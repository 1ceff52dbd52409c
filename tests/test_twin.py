"""Tests of the digital-twin model, movements, ground reactions and C3D writer."""

from __future__ import annotations

import ezc3d
import numpy as np
import pytest

from musculo.twin import dynamics, movement
from musculo.twin.c3d_writer import ForcePlate, write_c3d
from musculo.twin.model import (
    COORDINATES,
    MUSCLE_BASES,
    ModelParameters,
    build_model,
    generic_mass,
    marker_names,
    write_model,
)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from musculo.log import opensim_log_to

    opensim_log_to(tmp_path_factory.mktemp("log") / "opensim.log", level="warn")
    return build_model()


def test_model_structure(model, tmp_path):
    coords = [model.getCoordinateSet().get(i).getName() for i in range(9)]
    assert coords == list(COORDINATES)
    muscles = {model.getMuscles().get(i).getName() for i in range(model.getMuscles().getSize())}
    assert muscles == {f"{b}_{s}" for b in MUSCLE_BASES for s in ("r", "l")}
    assert model.getMarkerSet().getSize() == len(marker_names())
    state = model.initSystem()
    assert model.getTotalMass(state) == pytest.approx(generic_mass())
    out = write_model(model=model, path=tmp_path / "m.osim", marker_set_path=tmp_path / "mk.xml")
    import opensim as osim

    again = osim.Model(str(out))
    again.initSystem()
    assert again.getMuscles().getSize() == 18
    assert osim.MarkerSet(str(tmp_path / "mk.xml")).getSize() == len(marker_names())


def test_moment_arm_signs(model):
    state = model.initSystem()
    cs = model.getCoordinateSet()
    model.realizePosition(state)

    def arm(muscle: str, coord: str) -> float:
        return model.getMuscles().get(muscle).computeMomentArm(state, cs.get(coord))

    assert arm("iliopsoas_r", "hip_flexion_r") > 0.02  # hip flexor
    assert arm("glut_max_r", "hip_flexion_r") < -0.02  # hip extensor
    assert arm("vasti_r", "knee_angle_r") > 0.02  # knee extensor (extension is +)
    assert arm("hamstrings_r", "knee_angle_r") < -0.02
    assert arm("soleus_r", "ankle_angle_r") < -0.02  # plantar flexor
    assert arm("tib_ant_r", "ankle_angle_r") > 0.02
    assert arm("iliopsoas_l", "hip_flexion_l") > 0.02


def test_parameters_change_model():
    big = build_model(parameters=ModelParameters(
        segment_scale={"femur": 1.1}, mass=90.0, max_isometric_force={"iliopsoas_r": 1.2}
    ))
    state = big.initSystem()
    assert big.getTotalMass(state) == pytest.approx(90.0)
    ilio = big.getMuscles().get("iliopsoas_r")
    assert ilio.getMaxIsometricForce() == pytest.approx(2342 * 1.2)
    assert big.getMuscles().get("iliopsoas_l").getMaxIsometricForce() == pytest.approx(2342)


@pytest.mark.parametrize("name,settings", [
    ("squat", {"duration": 1.5}),
    ("sit2stand", {"duration": 1.2}),
    ("gait", {"cycle_time": 1.1}),
])
def test_generator_check_pelvis_residuals(model, tmp_path, name, settings):
    """ID of the true motion with the generated GRF on the model: near-zero pelvis residuals."""
    mov = movement.make_movement(movement=name, model=model, rate=300.0, settings=settings)
    if name == "gait":
        mov = movement.crop(mov, start=1.1 * 1.11, stop=1.1 * 1.99)
    grf = dynamics.ground_reactions(model=model, movement=mov)
    total = grf.force["r"] + grf.force["l"]
    weight = generic_mass() * 9.80665
    assert np.mean(total[:, 1]) == pytest.approx(weight, rel=0.05)
    model_file = write_model(model=model, path=tmp_path / "model.osim")
    loads = dynamics.write_external_loads(grf=grf, folder=tmp_path)
    coords = dynamics.write_coordinates(time=mov.time, q=mov.q, path=tmp_path / "q.sto")
    table = dynamics.inverse_dynamics(
        model_file=model_file, coordinates=coords, external_loads=loads, folder=tmp_path
    )
    res = dynamics.pelvis_residuals(table)
    print(f"{name} pelvis residuals:", {k: round(v, 3) for k, v in res.items()})
    assert res["pelvis_tx_force_rms"] < 0.01 * weight
    assert res["pelvis_ty_force_rms"] < 0.01 * weight
    assert res["pelvis_tilt_moment_rms"] < 2.0
    # without the ground reactions the pelvis would carry the body weight
    assert np.abs(table["knee_angle_r_moment"]).max() > 5.0


def test_feet_stay_put_in_squat(model):
    mov = movement.squat(model=model, rate=100.0, duration=1.5, depth=1.0)
    kin = movement._Kinematics(model)
    heel = []
    for q in mov.q:
        kin.set(q)
        heel.append(kin.foot("r", "heel"))
    heel = np.array(heel)
    assert np.ptp(heel, axis=0).max() < 1e-6
    assert np.degrees(-mov.q[:, 4].min()) > 60  # a real squat


def test_c3d_force_plate_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    n, ratio = 20, 12
    plates = [ForcePlate(center=(300.0, 150.0)), ForcePlate(center=(900.0, -150.0))]
    samples = n * ratio
    forces = [rng.normal([30, -10, -650], 5, size=(samples, 3)) for _ in plates]
    cops = [np.column_stack([p.center[0] + rng.uniform(-100, 100, samples),
                             p.center[1] + rng.uniform(-50, 50, samples), np.zeros(samples)])
            for p in plates]
    free = [rng.normal(0, 500, samples) for _ in plates]
    analog = [p.analog(force=f, cop=c, free_moment=t)
              for p, f, c, t in zip(plates, forces, cops, free, strict=True)]
    markers = rng.normal(0, 500, size=(n, 3, 3))
    emg = rng.normal(0, 1e-4, size=(samples, 2))
    path = write_c3d(
        path=tmp_path / "t.c3d", point_rate=150.0, marker_labels=["A", "B", "C"], markers_mm=markers,
        analog_rate=1800.0, plates=plates, plate_analog=analog, emg_labels=["EMG R TA", "EMG R SOL"],
        emg_volts=emg,
    )
    c3d = ezc3d.c3d(str(path), extract_forceplat_data=True)
    assert c3d["parameters"]["POINT"]["RATE"]["value"][0] == 150.0
    assert c3d["parameters"]["ANALOG"]["RATE"]["value"][0] == 1800.0
    assert list(c3d["parameters"]["FORCE_PLATFORM"]["TYPE"]["value"]) == [2, 2]
    assert c3d["parameters"]["POINT"]["UNITS"]["value"] == ["mm"]
    np.testing.assert_allclose(c3d["data"]["points"][:3], np.transpose(markers, (2, 1, 0)),
                               atol=1e-3)
    labels = c3d["parameters"]["ANALOG"]["LABELS"]["value"]
    assert labels[-2:] == ["EMG R TA", "EMG R SOL"]
    np.testing.assert_allclose(c3d["data"]["analogs"][0, -2:].T, emg, atol=1e-9)
    for i, plate in enumerate(c3d["data"]["platform"]):
        np.testing.assert_allclose(plate["force"].T, forces[i], atol=1e-3)
        np.testing.assert_allclose(plate["center_of_pressure"].T[:, :2], cops[i][:, :2], atol=1e-2)
        np.testing.assert_allclose(plate["Tz"][2], free[i], atol=1e-1)
