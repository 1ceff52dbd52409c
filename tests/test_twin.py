"""Tests of the digital-twin model, movements, ground reactions and C3D writer."""

from __future__ import annotations

import ezc3d
import numpy as np
import pytest

from musculo.io.c3d_writer import ForcePlate, write_c3d
from musculo.twin import dynamics, movement
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


# --- generator, EMG and truth evaluation -------------------------------------------------------

_TWIN_YAML = """
id: twin-test
mass: 70.0
height: 1.75
model: model.osim
marker_set: markerset.xml
lab_frame: {up: +Z, forward: +X}
trials:
  - {name: static, role: static, file: static.c3d}
  - {name: mvc, role: mvc, file: mvc.c3d}
  - {name: squat1, role: dynamic, file: squat1.c3d}
emg:
  channels:
    R_RF: [rect_fem_r]
    R_VL: [vasti_r]
    R_GMAX: [glut_max_r]
    R_SOL: [soleus_r]
  mvc_channels: {mvc: [R_RF, R_VL, R_GMAX, R_SOL]}
unmeasured: [iliopsoas_r, bifemsh_r]
force_plates: {'1': right, '2': left}
twin:
  seed: 5
  trials:
    static: {movement: static, duration: 0.3}
    mvc: {movement: static, duration: 4.0}
    squat1: {movement: squat, duration: 1.2, depth: 0.5}
"""


def _generate(folder, text=_TWIN_YAML, **kwargs):
    """Generate a small twin; the truth by static optimisation unless ``truth`` says otherwise (fast)."""
    from musculo.twin.generate import generate_twin

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "subject.yaml").write_text(text)
    kwargs.setdefault("truth", {"solver": "so"})
    return generate_twin(subject=folder, marker_rate=50.0, analog_rate=1000.0, **kwargs)


@pytest.fixture(scope="module")
def twin_dir(tmp_path_factory, model):
    folder = tmp_path_factory.mktemp("gen") / "twin-test"
    summary = _generate(folder)
    return folder, summary


def test_generator_residual_check_and_files(twin_dir):
    """The generator's own check: ID of the true motion with its GRF leaves tiny pelvis residuals."""
    folder, summary = twin_dir
    res = summary["trials"]["squat1"]["residuals"]
    print("generated twin pelvis residuals:", {k: round(v, 4) for k, v in res.items()})
    weight = 70.0 * 9.80665
    assert res["pelvis_tx_force_rms"] < 0.005 * weight
    assert res["pelvis_ty_force_rms"] < 0.005 * weight
    assert res["pelvis_tilt_moment_rms"] < 1.0
    for name in ("model.osim", "markerset.xml", "static.c3d", "mvc.c3d", "squat1.c3d", "truth.npz"):
        assert (folder / name).is_file(), name
    from musculo.twin.generate import load_truth

    truth = load_truth(folder / "truth.npz")
    assert list(truth["trials"]) == ["squat1"]
    n, m = truth["squat1/excitation"].shape
    assert m == 18 and truth["squat1/force"].shape == (n, m) and truth["squat1/q"].shape == (n, 9)
    assert truth["squat1/excitation"].min() >= 0.0 and truth["squat1/excitation"].max() <= 1.0
    muscles = list(truth["muscles"])
    vasti = truth["squat1/activation"][:, muscles.index("vasti_r")]
    assert vasti.max() > 0.1  # the knee extensors carry the squat
    # true parameters differ from the generic ones (perturbed), within a plausible range
    ratio = truth["max_isometric_force"] / truth["generic_max_isometric_force"]
    assert np.all(np.abs(ratio - 1) > 1e-6) and np.all((ratio > 0.4) & (ratio < 2.5))
    # ezc3d reads the plates back: vertical forces add up to the body weight on average
    c3d = ezc3d.c3d(str(folder / "squat1.c3d"), extract_forceplat_data=True)
    fz = sum(p["force"][2] for p in c3d["data"]["platform"])
    assert np.mean(fz) == pytest.approx(weight, rel=0.03)  # the reaction on the body, up


def test_generation_is_deterministic(twin_dir, tmp_path):
    folder, _ = twin_dir
    _generate(tmp_path / "twin-test")
    for name in ("squat1.c3d", "static.c3d", "model.osim"):
        assert (tmp_path / "twin-test" / name).read_bytes() == (folder / name).read_bytes(), name
    a = np.load(folder / "truth.npz")
    b = np.load(tmp_path / "twin-test" / "truth.npz")
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])
    _generate(tmp_path / "other" / "twin-test", seed=6)
    other = (tmp_path / "other" / "twin-test" / "squat1.c3d").read_bytes()
    assert other != (folder / "squat1.c3d").read_bytes()


def test_moco_truth_is_made_by_moco_inverse_not_static_optimisation(tmp_path):
    """The Moco truth (twin.truth.solver: moco): MocoInverse with compliant tendons, reserves idle."""
    text = (_TWIN_YAML.replace("  - {name: mvc, role: mvc, file: mvc.c3d}\n", "")
            .replace("  mvc_channels: {mvc: [R_RF, R_VL, R_GMAX, R_SOL]}\n", "")
            .replace("    mvc: {movement: static, duration: 4.0}\n", "")
            .replace("squat1: {movement: squat, duration: 1.2, depth: 0.5}",
                     "squat1: {movement: squat, duration: 0.8, depth: 0.3}"))
    moco = _generate(tmp_path / "moco" / "twin-test", text=text, truth={"solver": "moco"})
    so = _generate(tmp_path / "so" / "twin-test", text=text)
    info = moco["trials"]["squat1"]["truth"]
    print("MocoInverse truth:", info)
    assert info["solver"] == "moco" and so["trials"]["squat1"]["truth"]["solver"] == "so"
    from musculo.twin.generate import load_truth

    a = load_truth(tmp_path / "moco" / "twin-test" / "truth.npz")
    b = load_truth(tmp_path / "so" / "twin-test" / "truth.npz")
    muscles = list(a["muscles"])
    from musculo.twin.model import COORDINATES

    peak_knee = np.abs(a["squat1/moments"][:, COORDINATES.index("knee_angle_r")]).max()
    assert info["max_joint_reserve"] < 0.1 * peak_knee  # the muscles carry the load
    vasti = muscles.index("vasti_r")
    assert a["squat1/excitation"][:, vasti].max() > 0.1
    assert np.corrcoef(a["squat1/activation"][:, vasti], b["squat1/activation"][:, vasti])[0, 1] > 0.5
    assert not np.allclose(a["squat1/excitation"], b["squat1/excitation"], atol=0.02)  # another method


def _emg_rms(path, label, window=50):
    c3d = ezc3d.c3d(str(path))
    labels = c3d["parameters"]["ANALOG"]["LABELS"]["value"]
    x = c3d["data"]["analogs"][0, labels.index(label)]
    x = x[: len(x) // window * window].reshape(-1, window)
    return np.sqrt(np.mean(x**2, axis=1))


def test_mvc_trial_normalises_emg_to_the_true_excitation(twin_dir):
    """One gain per electrode for the session: squat EMG over MVC EMG gives the true excitation."""
    folder, _ = twin_dir
    from musculo.twin.generate import load_truth

    truth = load_truth(folder / "truth.npz")
    muscles = list(truth["muscles"])
    assert list(truth["trials"]) == ["squat1"]  # the MVC trial is not a movement with a truth
    for label, muscle in (("R_VL", "vasti_r"), ("R_SOL", "soleus_r")):
        mvc = _emg_rms(folder / "mvc.c3d", label)
        squat = _emg_rms(folder / "squat1.c3d", label)
        true_peak = truth["squat1/excitation"][:, muscles.index(muscle)].max()
        print(label, "squat/MVC EMG peak", squat.max() / mvc.max(), "true excitation peak", true_peak)
        assert squat.max() / mvc.max() == pytest.approx(true_peak, rel=0.35, abs=0.02)


def test_emg_only_for_surface_muscles(twin_dir):
    folder, _ = twin_dir
    from musculo.twin.generate import SURFACE_MUSCLES, load_truth, synthesize_emg

    c3d = ezc3d.c3d(str(folder / "squat1.c3d"))
    labels = c3d["parameters"]["ANALOG"]["LABELS"]["value"]
    emg_labels = [x for x in labels if x.startswith("R_")]
    assert emg_labels == ["R_RF", "R_VL", "R_GMAX", "R_SOL"]
    assert c3d["parameters"]["ANALOG"]["RATE"]["value"][0] == 1000.0
    emg = c3d["data"]["analogs"][0, [labels.index(x) for x in emg_labels]].T
    truth = load_truth(folder / "truth.npz")
    muscles = list(truth["muscles"])
    u = truth["squat1/excitation"]
    # the EMG amplitude follows the excitation: RMS per frame correlates with it
    per_frame = np.sqrt(np.mean(emg[:, 1].reshape(-1, 20) ** 2, axis=1))
    assert np.corrcoef(per_frame, u[:, muscles.index("vasti_r")])[0, 1] > 0.8
    assert "iliopsoas" not in SURFACE_MUSCLES
    rng = np.random.default_rng(0)
    with pytest.raises(Exception, match="surface muscles"):
        synthesize_emg(rng=rng, channels={"R_IL": ["iliopsoas_r"]},
                       excitation={"vasti_r": np.ones(100)}, rate=1000.0)


def test_truth_evaluation_on_synthetic_predictions(twin_dir, tmp_path):
    from musculo.io.tables import write_sto
    from musculo.twin.generate import load_truth
    from musculo.twin.truth import evaluate_truth

    folder, _ = twin_dir
    truth = load_truth(folder / "truth.npz")
    muscles = list(truth["muscles"])
    time = truth["squat1/time"]
    u = truth["squat1/excitation"]
    results = tmp_path / "results"
    # mse: exact iliopsoas, rect_fem scaled by 2 (r = 1, RMSE = mean |u|); nmm: reversed iliopsoas
    import pandas as pd

    exact = pd.DataFrame({"iliopsoas_r": u[:, muscles.index("iliopsoas_r")],
                          "vasti_r": u[:, muscles.index("vasti_r")],
                          "rect_fem_r": 2 * u[:, muscles.index("rect_fem_r")]},
                         index=pd.Index(time, name="time"))
    write_sto(results / "mse" / "predictions" / "squat1.excitations.sto", exact)
    write_sto(results / "nmm" / "predictions" / "squat1.excitations.sto",
              pd.DataFrame({"iliopsoas_r": exact["iliopsoas_r"].to_numpy()[::-1]}, index=exact.index))
    q = pd.DataFrame(np.degrees(truth["squat1/q"][:, 3:6]) + 1.0,
                     columns=["hip_flexion_r", "knee_angle_r", "ankle_angle_r"], index=exact.index)
    write_sto(results / "squat1" / "ik.mot", q, in_degrees=True)
    out = results / "truth" / "evaluation.tsv"
    table = evaluate_truth(subject="twin-test", truth=folder / "truth.npz", results_dir=results,
                           output=out, methods=["mse", "nmm", "so", "opensim"])
    assert list(table.columns) == [
        "subject", "trial", "method", "quantity", "channel", "metric", "value"]
    assert out.is_file()

    def value(method, quantity, channel, metric):
        row = table[(table.method == method) & (table.quantity == quantity) & (table.channel == channel)
                    & (table.metric == metric)]
        assert len(row) == 1
        return float(row.value.iloc[0])

    assert value("mse", "excitation", "iliopsoas_r", "r_truth") == pytest.approx(1.0)
    assert value("mse", "excitation", "iliopsoas_r", "rmse_truth") == pytest.approx(0.0, abs=1e-6)
    rf = u[:, muscles.index("rect_fem_r")]
    assert value("mse", "excitation", "rect_fem_r", "rmse_truth") == pytest.approx(
        np.sqrt(np.mean(rf**2)), rel=1e-3)
    assert value("nmm", "excitation", "iliopsoas_r", "r_truth") < 0.9
    assert value("opensim", "coordinate", "knee_angle_r", "rmse_truth") == pytest.approx(1.0, rel=1e-3)
    assert set(table[table.quantity != "excitation"].metric) == {"r_truth", "rmse_truth"}
    # excitations are also scored over the muscle's true active frames
    active = u[:, muscles.index("vasti_r")] >= 0.05
    assert 0.0 < value("mse", "excitation", "vasti_r", "active_share_truth") == pytest.approx(active.mean())
    assert value("mse", "excitation", "vasti_r", "rmse_active_truth") == pytest.approx(0.0, abs=1e-6)
    assert value("mse", "excitation", "vasti_r", "r_active_truth") == pytest.approx(1.0)
    assert set(table.method) == {"mse", "nmm", "opensim"}  # no SO file: skipped


# --- walking twins: a recorded walk replayed on the twin's body -------------------------------


@pytest.fixture(scope="module")
def walk_template():
    """The registered gait10dof18musc treadmill walk (dataset mirror or download; fails without)."""
    from musculo.datasets import dataset_path, mirror_dirs
    from musculo.io.tables import read_sto

    name = "gait10dof18musc-subject01"
    src = movement.WALK_TEMPLATES[name]
    get = lambda f: dataset_path(name, f, download=not mirror_dirs())  # noqa: E731
    return movement.walk_template(coordinates=read_sto(get(src.coordinates)), grf=read_sto(get(src.grf)),
                                  vertical_columns=src.vertical_columns, source=name)


def test_walk_is_dynamically_consistent_with_the_feet_planted(model, tmp_path, walk_template):
    """A replayed stride: feet do not slide, ground reactions leave no pelvis residuals, the centre
    of pressure stays near its sole, and the forward force brakes then propels, as in real gait."""
    from musculo.twin.generate import cop_off_sole

    mov = movement.walk(model=model, rate=100.0, template=walk_template, start=0.55, duration=1.0)
    grf = dynamics.ground_reactions(model=model, movement=mov)
    weight = generic_mass() * 9.80665
    total = grf.force["r"] + grf.force["l"]
    speed = (mov.q[-1, 1] - mov.q[0, 1]) / mov.time[-1]
    assert 0.8 < speed < 1.3  # m/s, the recording's treadmill speed
    assert np.mean(total[:, 1]) == pytest.approx(weight, rel=0.1)
    # the right foot's single stance: its contact point does not slide
    kin = movement._Kinematics(model)
    single = np.flatnonzero(mov.load_share_right > 0.999)
    assert len(single) > 20
    points = []
    for i in single:
        kin.set(mov.q[i])
        w = mov.cop_fraction[i, 0]
        point = "heel" if w < 0.3 else "toe" if w > 0.7 else None
        points.append(kin.foot("r", point) if point else np.full(2, np.nan))
    points = np.array(points)
    heel = points[mov.cop_fraction[single, 0] < 0.3]
    toe = points[mov.cop_fraction[single, 0] > 0.7]
    assert np.ptp(heel[:, 0]) < 0.01 and np.ptp(toe[:, 0]) < 0.01
    # braking early in the right stance, propulsion late in it
    stance = np.flatnonzero(grf.force["r"][:, 1] > 50.0)
    early, late = stance[: len(stance) // 4], stance[-len(stance) // 4:]
    assert grf.force["r"][early, 0].mean() < -20.0 and grf.force["r"][late, 0].mean() > 20.0
    off = cop_off_sole(model=model, mov=mov, grf=grf)
    assert off["cop_behind_heel_max"] < 0.02 and off["cop_beyond_toe_max"] < 0.1
    # the parametric gait (constant pelvis speed) puts the centre of pressure far off the foot
    gait = movement.crop(movement.gait(model=model, rate=100.0, cycle_time=1.1), start=1.2, stop=2.1)
    gait_grf = dynamics.ground_reactions(model=model, movement=gait)
    assert max(cop_off_sole(model=model, mov=gait, grf=gait_grf).values()) > 0.1
    # and the generator's check: ID of the motion with these reactions leaves tiny pelvis residuals
    model_file = write_model(model=model, path=tmp_path / "model.osim")
    loads = dynamics.write_external_loads(grf=grf, folder=tmp_path)
    coords = dynamics.write_coordinates(time=mov.time, q=mov.q, path=tmp_path / "q.sto")
    table = dynamics.inverse_dynamics(model_file=model_file, coordinates=coords, external_loads=loads,
                                      folder=tmp_path)
    res = dynamics.pelvis_residuals(table)
    assert res["pelvis_tx_force_rms"] < 0.01 * weight and res["pelvis_ty_force_rms"] < 0.01 * weight
    assert res["pelvis_tilt_moment_rms"] < 0.01 * weight * 1.8


def test_walk_settings_mirror_scale_and_refuse_a_span_beyond_the_recording(model, walk_template):
    base = movement.walk(model=model, rate=100.0, template=walk_template, start=0.55, duration=0.8)
    mirrored = movement.walk(model=model, rate=100.0, template=walk_template, start=0.55, duration=0.8,
                             mirror=True)
    np.testing.assert_allclose(mirrored.load_share_right, 1.0 - base.load_share_right, atol=1e-9)
    faster = movement.walk(model=model, rate=100.0, template=walk_template, start=0.55, duration=0.8,
                           cadence=1.2)
    assert (faster.q[-1, 1] - faster.q[0, 1]) > 1.1 * (base.q[-1, 1] - base.q[0, 1])
    wider = movement.walk(model=model, rate=100.0, template=walk_template, start=0.55, duration=0.8,
                          amplitude=1.2)
    assert np.ptp(wider.q[:, 4]) > 1.1 * np.ptp(base.q[:, 4])
    with pytest.raises(movement.MovementError, match="spans 0.000-2.500 s"):
        movement.walk(model=model, rate=100.0, template=walk_template, start=2.0, duration=1.0)


_WALK_YAML = """
id: twin-walktest
mass: 70.0
height: 1.75
model: model.osim
marker_set: markerset.xml
lab_frame: {up: +Z, forward: +X}
trials:
  - {name: static, role: static, file: static.c3d}
  - {name: walk1, role: dynamic, file: walk1.c3d}
force_plates: auto
foot_markers:
  right: [RHEE, RTOE, RANK]
  left: [LHEE, LTOE, LANK]
twin:
  seed: 9
  trials:
    static: {movement: static, duration: 0.3}
    walk1: {movement: walk, start: 0.55, duration: 1.0}
"""


def test_walking_twin_has_a_plate_per_footfall(tmp_path, walk_template):
    """A walking twin's trial: one force plate per footfall, each loaded only during its footfall,
    which the import assigns to the right foot by the foot markers."""
    folder = tmp_path / "twin-walktest"
    summary = _generate(folder, text=_WALK_YAML)
    assert summary["trials"]["walk1"]["residuals"]["cop_beyond_toe_max"] < 0.1
    c3d = ezc3d.c3d(str(folder / "walk1.c3d"), extract_forceplat_data=True)
    plates = c3d["data"]["platform"]
    assert len(plates) >= 3  # left off, right stance, left strike
    loaded = [np.flatnonzero(p["force"][2] > 20.0) for p in plates]
    assert all(len(idx) > 0 for idx in loaded)
    for a, b in zip(loaded, loaded[1:], strict=False):
        assert a[0] <= b[0]  # in the order the feet land
    from musculo.subject import fetch_inputs
    from musculo.trial_import import import_trial

    inputs = tmp_path / "inputs.json"
    fetch_inputs(subject_file=folder / "subject.yaml", output_json=inputs)
    summary = import_trial(subject_file=folder / "subject.yaml", inputs_json=inputs, trial="walk1",
                           out_dir=tmp_path / "imported")
    events = summary["events"]
    assert len(events["right"]["strike"]) == 1 and len(events["right"]["off"]) == 1
    assert events["left"]["strike"] and events["left"]["off"]


def test_a_trial_may_choose_its_own_truth_solver(tmp_path):
    """twin.trials.<name>.truth overrides the twin's truth settings for that trial; a bad solver is
    refused before anything is generated, naming where it was set."""
    from musculo.twin.generate import TwinGenerationError

    text = _TWIN_YAML.replace("squat1: {movement: squat, duration: 1.2, depth: 0.5}",
                              "squat1: {movement: squat, duration: 1.2, depth: 0.5, truth: {solver: so}}")
    summary = _generate(tmp_path / "a" / "twin-test", text=text, truth={"solver": "moco"})
    assert summary["trials"]["squat1"]["truth"]["solver"] == "so"
    import json

    from musculo.twin.generate import load_truth

    truth = load_truth(tmp_path / "a" / "twin-test" / "truth.npz")
    assert json.loads(str(truth["squat1/truth"]))["solver"] == "so"
    bad = _TWIN_YAML.replace("squat1: {movement: squat, duration: 1.2, depth: 0.5}",
                             "squat1: {movement: squat, duration: 1.2, depth: 0.5, truth: {solver: cmc}}")
    with pytest.raises(TwinGenerationError, match=r"twin.trials.squat1.truth.solver 'cmc'"):
        _generate(tmp_path / "b" / "twin-test", text=bad)
    assert not (tmp_path / "b" / "twin-test" / "squat1.c3d").exists()
