"""The fast OpenSim path against OpenSim's own tools on real data (gait10dof18musc-subject01).

Polynomial muscle paths (fitted to OpenSim's lengths and moment arms, evaluated in numpy) against OpenSim's
MuscleAnalysis, and the batched static optimisation against OpenSim's StaticOptimization, on the
reference scaled model and IK of the walk (60 frames). Each OpenSim tool runs in its own process.
Limits (issue 14): length and moment-arm RMS <= 1 mm per muscle and coordinate, activation RMS
difference <= 0.02 per muscle, and the same moment reproduction.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from musculo.io.tables import read_sto
from musculo.opensim_tools import run_isolated
from musculo.opensim_tools.path_fit import PathPolynomial, PolynomialPaths, exponents

G10 = "gait10dof18musc-subject01"
FRAMES = 60


@pytest.fixture(scope="module")
def g10(tmp_path_factory):
    """Paths fitted on the walk, and both tools' outputs on its first 60 frames."""
    from musculo.datasets import dataset_path

    def get(file):
        return str(dataset_path(G10, file, download=False))

    out = tmp_path_factory.mktemp("g10")
    files = {
        "model": get("OutputReference/subject01.osim"),
        "ik": get("OutputReference/IK/subject01_walk_IK.mot"),
        "loads": get("ExperimentalData/subject01_walk_grf.xml"),
    }
    get("ExperimentalData/subject01_walk_grf.mot")
    fit = run_isolated(
        "path_fit",
        model=files["model"],
        coordinates_mots=[files["ik"]],
        paths_out=str(out / "paths.json"),
        path_set_out=str(out / "function_based_paths.xml"),
        max_fit_frames=30,
        samples_per_frame=15,
        max_order=8,
        seed=7,
    )
    common = {"model": files["model"], "coordinates_mot": files["ik"], "max_frames": FRAMES}
    for tool, prefix in (("muscle_analysis", "os"), ("muscle_analysis_polynomial", "poly")):
        extra = {"paths": str(out / "paths.json")} if prefix == "poly" else {}
        run_isolated(
            tool,
            **common,
            **extra,
            output_npz=str(out / f"{prefix}_ma.npz"),
            sto_dir=str(out / f"{prefix}_ma"),
            setup_out=str(out / f"{prefix}_ma_setup.xml"),
        )
    run_isolated(
        "id",
        model=files["model"],
        coordinates_mot=files["ik"],
        external_loads_xml=files["loads"],
        output_sto=str(out / "id.sto"),
        setup_out=str(out / "id_setup.xml"),
        residuals_out=str(out / "residuals.json"),
        lowpass_hz=6.0,
        height=1.8,
        max_frames=FRAMES,
    )
    so_common = {**common, "external_loads_xml": files["loads"]}
    run_isolated(
        "so",
        **so_common,
        activation_out=str(out / "os_act.sto"),
        force_out=str(out / "os_force.sto"),
        setup_out=str(out / "os_so_setup.xml"),
        reserves_out=str(out / "os_reserves.json"),
    )
    run_isolated(
        "so_batched",
        **so_common,
        inverse_dynamics=str(out / "id.sto"),
        paths=str(out / "paths.json"),
        activation_out=str(out / "b_act.sto"),
        force_out=str(out / "b_force.sto"),
        setup_out=str(out / "b_so_setup.xml"),
        reserves_out=str(out / "b_reserves.json"),
    )
    return out, fit, files


def test_path_fit_is_reproducible_and_opensim_reads_it(g10, tmp_path):
    out, _, files = g10
    again = run_isolated(
        "path_fit",
        model=files["model"],
        coordinates_mots=[files["ik"]],
        paths_out=str(tmp_path / "paths.json"),
        max_fit_frames=30,
        samples_per_frame=15,
        max_order=8,
        seed=7,
    )
    first, second = (json.loads(p.read_text()) for p in (out / "paths.json", tmp_path / "paths.json"))
    assert first["paths"] == second["paths"]  # the same seed gives the same polynomials, bit for bit
    assert again["worst_length"] == list(first["sampled_rmse"]["worst_length"])
    # OpenSim itself replaces the model's paths with the written FunctionBasedPathSet; its lengths
    # are those of PolynomialPaths
    import opensim

    proc = opensim.ModelProcessor(files["model"])
    proc.append(opensim.ModOpReplacePathsWithFunctionBasedPaths(str(out / "function_based_paths.xml")))
    model = proc.process()
    state = model.initSystem()
    paths = PolynomialPaths.load(out / "paths.json")
    coords = paths.coordinates
    q = np.array([[0.3, -0.6, 0.1, 0.4, -0.8, 0.05][: len(coords)]])
    q = np.resize(q, (1, len(coords)))
    for name, value in zip(coords, q[0], strict=True):
        model.getCoordinateSet().get(name).setValue(state, float(value), False)
    model.realizePosition(state)
    ours, _ = paths.evaluate(q=q, coordinates=coords)
    theirs = [model.getMuscles().get(m).getLength(state) for m in paths.muscles]
    np.testing.assert_allclose(ours[0], theirs, atol=1e-9)


def test_polynomial_terms_follow_opensim_order():
    import opensim

    rng = np.random.default_rng(3)
    for dim, order in ((1, 5), (2, 6), (3, 4)):
        exps = exponents(dim, order)
        coefs = rng.normal(size=len(exps))
        x = rng.normal(size=(1, dim))
        names = [f"c{k}" for k in range(dim)]
        paths = PolynomialPaths({"m": PathPolynomial(tuple(names), exps, coefs)})
        ours, grad = paths.evaluate(q=x, coordinates=names)
        f = opensim.MultivariatePolynomialFunction(opensim.Vector(coefs.tolist()), dim, order)
        assert ours[0, 0] == pytest.approx(f.calcValue(opensim.Vector(x[0].tolist())), abs=1e-12)
        d0 = f.calcDerivative([0], opensim.Vector(x[0].tolist()))
        assert -grad[0, 0, 0] == pytest.approx(d0, abs=1e-12)


def test_polynomial_paths_match_muscle_analysis(g10):
    out, fit, _ = g10
    poly, ref = np.load(out / "poly_ma.npz"), np.load(out / "os_ma.npz")
    assert set(poly.files) == set(ref.files)
    for key in ("muscles", "coordinates"):
        assert list(poly[key]) == list(ref[key])
    assert poly["time"].shape == ref["time"].shape == (FRAMES,)
    np.testing.assert_allclose(poly["time"], ref["time"], atol=1e-5)
    muscles, coords = [str(m) for m in poly["muscles"]], [str(c) for c in poly["coordinates"]]
    length_rms = np.sqrt(np.mean((poly["mtu_length"] - ref["mtu_length"]) ** 2, axis=0))
    arm_rms = np.sqrt(np.mean((poly["moment_arm"] - ref["moment_arm"]) ** 2, axis=0))
    m, (am, ac) = int(np.argmax(length_rms)), np.unravel_index(np.argmax(arm_rms), arm_rms.shape)
    print(
        f"path fit {fit['seconds']:.1f} s; length RMS worst {1e3 * length_rms[m]:.3f} mm ({muscles[m]}); "
        f"moment arm RMS worst {1e3 * arm_rms[am, ac]:.3f} mm ({muscles[am]}, {coords[ac]})"
    )
    assert length_rms.max() <= 1e-3
    assert arm_rms.max() <= 1e-3
    # the filtered kinematics are OpenSim's (same filter, spline speeds)
    assert np.abs(poly["q"] - ref["q"]).max() < 1e-4
    assert np.sqrt(np.mean((poly["qdot"] - ref["qdot"]) ** 2)) < 1e-2
    # velocities follow from the same moment arms: compare with OpenSim's within 1 cm/s RMS
    vel_rms = np.sqrt(np.mean((poly["mtu_velocity"] - ref["mtu_velocity"]) ** 2, axis=0))
    assert vel_rms.max() < 0.01
    for key in ("max_isometric_force", "optimal_fiber_length", "tendon_slack_length"):
        np.testing.assert_array_equal(poly[key], ref[key])


def test_batched_so_matches_opensim_so(g10):
    out, _, _ = g10
    ours, ref = read_sto(out / "b_act.sto"), read_sto(out / "os_act.sto")
    assert list(ours.columns) == list(ref.columns)
    assert len(ours) == len(ref) == FRAMES
    np.testing.assert_allclose(ours.index.to_numpy(), ref.index.to_numpy(), atol=1e-5)
    reserves = [c for c in ours.columns if c.startswith(("reserve_", "residual_"))]
    muscles = [c for c in ours.columns if c not in reserves]
    rms = np.sqrt(np.mean((ours[muscles].to_numpy() - ref[muscles].to_numpy()) ** 2, axis=0))
    print(f"activation RMS difference worst {rms.max():.4f} ({muscles[int(np.argmax(rms))]})")
    assert rms.max() <= 0.02
    assert ours[muscles].to_numpy().min() >= -1e-9 and ours[muscles].to_numpy().max() <= 1 + 1e-9
    # the same moments: muscle forces x moment arms + reserves reproduce OpenSim SO's
    npz = np.load(out / "os_ma.npz")
    names, coords = [str(m) for m in npz["muscles"]], [str(c) for c in npz["coordinates"]]
    f_ours, f_ref = read_sto(out / "b_force.sto"), read_sto(out / "os_force.sto")
    for c in ("hip_flexion_r", "knee_angle_r", "ankle_angle_r"):
        k = coords.index(c)
        mom = [
            np.einsum("tm,tm->t", npz["moment_arm"][:, :, k], f[names].to_numpy())
            + f[f"reserve_{c}"].to_numpy()
            for f in (f_ours, f_ref)
        ]
        peak = np.abs(mom[1]).max()
        assert np.sqrt(np.mean((mom[0] - mom[1]) ** 2)) < 0.02 * peak, c
    # reserves agree with OpenSim's and the report has the same layout
    diff = np.abs(read_sto(out / "b_force.sto")[reserves].to_numpy() - f_ref[reserves].to_numpy()).max()
    assert diff < 1.0
    a, b = (
        json.loads((out / "b_reserves.json").read_text()),
        json.loads((out / "os_reserves.json").read_text()),
    )
    assert set(a) == set(b) and set(a["actuators"]) == set(b["actuators"])
    assert a["frames"] == b["frames"] == FRAMES


def test_auto_methods_use_the_fit_only_when_its_check_passes(g10, tmp_path):
    """opensim.ma_method / so_method ``auto``: the fitted paths where their own check against OpenSim
    at the trials' frames is within opensim.path_fit.accept, OpenSim's tools otherwise."""
    from musculo.errors import InputDataError
    from musculo.opensim_tools.path_fit import fit_accepted, resolve_method

    accept = {"length_mm": 1.0, "moment_arm_mm": 1.0, "outside_share": 0.05}
    out, _, _ = g10
    # the real fit on gait10dof18musc passes (its frame check: well under 1 mm)
    ok, why = fit_accepted(out / "paths.json", **accept)
    assert ok, why
    chosen = resolve_method("auto", fast="batched", paths=out / "paths.json", accept=accept, stage="so")
    assert chosen == "batched"

    record = tmp_path / "paths.json"

    def judged(length_m, arm_m, outside, method="auto"):
        check = {
            "frames": 90,
            "worst_length": ["vasti_r", length_m],
            "worst_moment_arm": ["gastroc_r/knee_angle_r", arm_m],
            "frames_outside_ranges": outside,
            "trial_frames": 100,
        }
        record.write_text(json.dumps({"frame_rmse": check}))
        return resolve_method(method, fast="polynomial", paths=record, accept=accept, stage="ma")

    assert judged(0.0009, 0.0009, 5) == "polynomial"
    assert judged(0.0011, 0.0009, 0) == "opensim"  # a path length off by more than 1 mm RMS
    assert judged(0.0009, 0.0015, 0) == "opensim"  # a moment arm off
    assert judged(0.0009, 0.0009, 6) == "opensim"  # 6 % of the frames unchecked (outside the ranges)
    assert "vasti_r" in fit_accepted(record, length_mm=0.5, moment_arm_mm=1.0, outside_share=0.05)[1]
    # explicit methods are kept as they are, whatever the check says
    assert judged(0.01, 0.01, 50, method="polynomial") == "polynomial"
    assert resolve_method("opensim", fast="batched", paths=None, accept=accept, stage="so") == "opensim"
    record.write_text("{}")
    with pytest.raises(InputDataError, match="frame_rmse"):
        fit_accepted(record, **accept)
