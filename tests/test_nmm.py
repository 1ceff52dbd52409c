"""Tests of the neural musculoskeletal model (network, training loop, estimator interface)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import settings, synthetic_subject

from musculo.config import load_config, schema
from musculo.errors import EstimatorError, InputDataError
from musculo.estimators.networks import CausalTCN, SynergyHead
from musculo.estimators.nmm import (
    NMMConfig,
    NMMEstimator,
    _losses,
    _make_windows,
    build_module,
    train_nmm,
)
from musculo.physics.synthetic import synthetic_trials

TINY = {"window": 0.5, "stride": 0.25, "epochs": 6, "patience": 50, "channels": 8, "batch_size": 8,
        "dilations": [1, 2], "fold_calibration": False}
SYNERGY = {**TINY, "output": "synergy"}


@pytest.fixture(scope="module")
def trials():
    return synthetic_trials(n_trials=3, n_frames=150, n_muscles=6, n_unmeasured=2, seed=3)


def test_network_output_range_and_causality():
    torch.manual_seed(0)
    net = CausalTCN(n_inputs=5, n_outputs=4, channels=8, kernel_size=3, dilations=(1, 2))
    x = torch.randn(3, 40, 5) * 100.0  # extreme inputs saturate but stay in range
    with torch.no_grad():
        y = net(x)
    assert y.shape == (3, 40, 4)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    # an untrained network starts at the configured excitation
    net_small = CausalTCN(n_inputs=5, n_outputs=4, init_excitation=0.05)
    with torch.no_grad():
        y0 = net_small(torch.zeros(1, 10, 5))
    assert torch.allclose(y0.mean(), torch.tensor(0.05), atol=0.02)
    # causal: changing frame 30 leaves frames before it unchanged, and changes frames within the field
    x2 = x.clone()
    x2[:, 30] += 1.0
    with torch.no_grad():
        y2 = net(x2)
    assert torch.equal(y2[:, :30], y[:, :30])
    assert not torch.equal(y2[:, 30:30 + net.receptive_field], y[:, 30:30 + net.receptive_field])
    assert net.receptive_field == 1 + 2 * 3


def test_predict_output_range_and_hidden_muscle_unused(trials):
    est = NMMEstimator(seed=1, **{**TINY, "epochs": 2}).fit(trials[:2], hidden=["m1"])
    test = trials[2]
    pred = est.predict(test)
    exc = pred.excitations
    assert list(exc.columns) == test.muscles and list(pred.moments.columns) == test.coordinates
    assert len(exc) == test.n_frames
    assert np.isfinite(exc.to_numpy()).all() and np.isfinite(pred.moments.to_numpy()).all()
    assert exc.to_numpy().min() >= 0.0 and exc.to_numpy().max() <= 1.0
    # the hidden muscle's own EMG never reaches the prediction
    altered = dataclasses.replace(test, excitation=test.excitation.copy())
    altered.excitation[:, test.muscles.index("m1")] = 1.0
    again = est.predict(altered)
    np.testing.assert_array_equal(again.excitations.to_numpy(), exc.to_numpy())
    # ... while a measured muscle's EMG does
    altered.excitation[:, test.muscles.index("m0")] *= 0.5
    assert not np.array_equal(est.predict(altered).excitations.to_numpy(), exc.to_numpy())


def test_gradients_flow_into_subject_parameters(trials):
    cfg = NMMConfig.from_mapping({**TINY, "seed": 0})
    module = build_module(trials, cfg=cfg)
    windows = _make_windows(trials, module, frames=20, context=module.net.receptive_field - 1, stride=10)
    terms = _losses(module, windows, cfg=cfg, dt=trials[0].dt, context=module.net.receptive_field - 1,
                    moment_scale=torch.ones(len(trials[0].coordinates), dtype=torch.float64),
                    generator=torch.Generator().manual_seed(0))
    terms["total"].backward()
    for name in cfg.physics_parameters:
        grad = getattr(module.physics, name).raw.grad
        assert grad is not None and torch.isfinite(grad).all(), name
        assert float(grad.abs().sum()) > 0, name
    # every parameter of the network gets a gradient too
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in module.net.parameters())
    # parameters left out of physics_parameters stay frozen
    assert module.physics.shape.raw.grad is None


def test_physics_parameters_stay_within_bounds_after_training(trials):
    est = NMMEstimator(seed=0, **{**TINY, "epochs": 4, "physics_learning_rate": 1.0}).fit(trials[:2])
    phys = est.module_.physics
    for name in ("strength_scale", "optimal_fiber_length_scale", "tendon_slack_length_scale", "emg_gain"):
        lo, hi = getattr(phys.bounds, name)
        value = getattr(phys, name).value.detach()
        assert float(value.min()) >= lo and float(value.max()) <= hi
    # a large physics learning rate moved them away from their start
    assert not torch.allclose(phys.strength_scale.value, torch.ones_like(phys.strength_scale.value))


def test_tiny_training_lowers_the_loss(trials):
    cfg = NMMConfig.from_mapping({**TINY, "epochs": 15, "seed": 0})
    module = build_module(trials[:2], cfg=cfg)
    context = module.net.receptive_field - 1
    windows = _make_windows(trials[:2], module, frames=30, context=context, stride=15)
    kw = {"cfg": cfg, "dt": trials[0].dt, "context": context, "generator": None,
          "moment_scale": torch.ones(2, dtype=torch.float64)}
    with torch.no_grad():
        before = _losses(module, windows, **kw)
    result = train_nmm(module, trials[:2], cfg=cfg)
    with torch.no_grad():
        after = _losses(module, windows, **kw)
    assert len(result.history) == 15 and 1 <= result.best_epoch <= 15
    assert result.history[result.best_epoch - 1]["val"] < result.history[0]["val"]
    assert float(after["total"]) < 0.5 * float(before["total"])
    assert float(after["moment"]) < 0.5 * float(before["moment"])


def test_training_is_deterministic(trials):
    a = NMMEstimator(seed=7, **TINY).fit(trials[:2], hidden=["m0"])
    b = NMMEstimator(seed=7, **TINY).fit(trials[:2], hidden=["m0"])
    c = NMMEstimator(seed=8, **TINY).fit(trials[:2], hidden=["m0"])
    sa, sb, sc = a.module_.state_dict(), b.module_.state_dict(), c.module_.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert [r["val"] for r in a.training_.history] == [r["val"] for r in b.training_.history]
    pa, pb = a.predict(trials[2]), b.predict(trials[2])
    np.testing.assert_array_equal(pa.excitations.to_numpy(), pb.excitations.to_numpy())
    np.testing.assert_array_equal(pa.moments.to_numpy(), pb.moments.to_numpy())
    # the global torch settings are restored after fit
    assert not torch.are_deterministic_algorithms_enabled()


def test_early_stopping_keeps_the_best_epoch(trials):
    est = NMMEstimator(seed=0, **{**TINY, "epochs": 40, "patience": 2, "learning_rate": 0.3}).fit(trials[:2])
    hist = est.training_.history
    best = est.training_.best_epoch
    # a learning rate this large makes the held-out loss stall: training stops `patience` epochs
    # after the best epoch, whose weights are the ones kept
    assert len(hist) == best + 2 < 40
    assert est.training_.best_val == min(r["val"] for r in hist)


def test_save_load_round_trip(trials, tmp_path):
    est = NMMEstimator(seed=2, **{**TINY, "epochs": 3}).fit(trials[:2], hidden=["m2"])
    est.save(tmp_path / "nmm")
    assert {p.name for p in (tmp_path / "nmm").iterdir()} == {"weights.pt", "hyperparameters.json"}
    loaded = NMMEstimator.load(tmp_path / "nmm")
    assert loaded.hidden_ == ["m2"]
    p1, p2 = est.predict(trials[2]), loaded.predict(trials[2])
    np.testing.assert_array_equal(p1.excitations.to_numpy(), p2.excitations.to_numpy())
    np.testing.assert_array_equal(p1.moments.to_numpy(), p2.moments.to_numpy())
    with pytest.raises(EstimatorError, match="not found"):
        NMMEstimator.load(tmp_path / "missing")


def test_errors_name_the_problem(trials):
    with pytest.raises(EstimatorError, match="unknown key .windw."):
        NMMEstimator(windw=0.5)
    with pytest.raises(EstimatorError, match="physics_parameters"):
        NMMEstimator(physics_parameters=["strenght_scale"])
    with pytest.raises(EstimatorError, match="not fitted"):
        NMMEstimator().predict(trials[0])
    # a window longer than the trials is shortened to half the shortest trial
    hyper = {**TINY, "window": 100.0, "stride": 100.0}
    short = NMMEstimator(**hyper).fit(trials[:2])
    assert short.training_.n_train_windows + short.training_.n_val_windows == 4


def test_config_section_matches_the_estimator(repo_root):
    cfg = load_config(repo_root / "config" / "config.yaml")
    est = NMMEstimator(seed=cfg["seed"], **cfg["nmm"])
    assert est.config.seed == cfg["seed"]
    # the schema documents every hyper-parameter and is the only source of defaults
    props = schema("config")["properties"]["nmm"]["properties"]
    assert set(props) == {f.name for f in dataclasses.fields(NMMConfig)} - {"seed"}
    defaults = dataclasses.asdict(NMMEstimator().config)
    for key, spec in props.items():
        value = spec["default"]
        assert (tuple(value) if isinstance(value, list) else value) == defaults[key], key
        assert spec.get("description"), key


def test_evaluation_uses_the_shared_protocol(trials, tmp_path):
    from musculo.evaluation import run_evaluation
    from musculo.physics.synthetic import write_trial_dir

    dirs = [write_trial_dir(t, tmp_path / "s" / t.name) for t in trials]
    subject = synthetic_subject(tmp_path, hide=["m1"])
    cfg = settings(nmm={**TINY, "epochs": 3}, mse={"max_iter": 5, "n_synergies": 2},
                   evaluation={"n_folds": 2}, seed=0)
    common = {"subject": subject, "trial_dirs": dirs, "settings": cfg}
    nmm = run_evaluation(method="nmm", out_dir=tmp_path / "s" / "nmm", **common)
    mse = run_evaluation(method="mse", out_dir=tmp_path / "s" / "mse", **common)
    assert set(nmm["method"]) == {"nmm"}
    key = ["trial", "quantity", "channel", "metric"]
    # the same held-out trials, coordinates, hidden muscles and metrics as the baseline
    assert sorted(map(tuple, nmm[key].to_numpy())) == sorted(map(tuple, mse[key].to_numpy()))
    assert set(nmm.loc[nmm["quantity"] == "excitation", "channel"]) == {"m1"}
    assert np.isfinite(nmm.loc[nmm["metric"] == "r2", "value"]).all()
    out = tmp_path / "s" / "nmm"
    written = pd.read_csv(out / "evaluation.tsv", sep="\t")
    assert len(written) == len(nmm)
    for t in trials:
        for kind in ("excitations", "moments", "forces"):
            assert (out / "predictions" / f"{t.name}.{kind}.sto").is_file()
        assert (out / "lomo" / "m1" / f"{t.name}.excitations.sto").is_file()
    deployed = NMMEstimator.load(out / "model")
    assert deployed.hidden_ == [] and deployed.muscles_ == trials[0].muscles


def test_muscles_without_emg_in_some_trials_are_estimated(trials, caplog):
    partial = [trials[0], trials[1].hide(["m0"])]
    est = NMMEstimator(seed=0, **{**TINY, "epochs": 2}).fit(partial)
    assert "lack EMG in some training trials" in caplog.text
    assert not bool(est.module_.measured[trials[0].muscles.index("m0")])
    # on a trial with m0 measured, m0 is still the network's estimate, not the EMG
    pred = est.predict(trials[2])
    assert not np.allclose(pred.excitations["m0"].to_numpy(), trials[2].excitation[:, 0])


def test_non_finite_inputs_are_rejected(trials):
    bad = dataclasses.replace(trials[0], id_moment=trials[0].id_moment.copy())
    bad.id_moment[5, 1] = np.nan
    with pytest.raises(InputDataError, match=r"trial1: non-finite values in \['id_moment'\]"):
        NMMEstimator(**TINY).fit([bad, trials[1]])


def test_network_reads_the_measured_excitations_only_by_default(trials, tmp_path):
    """Kinematics are network inputs only when asked (``kinematics_inputs``); by default moving the
    joints changes not one estimated excitation (the physics reads the pose through its muscle
    lengths and moment arms)."""
    assert NMMEstimator().config.kinematics_inputs is False
    hyper = {k: v for k, v in TINY.items() if k != "output"}
    direct = NMMEstimator(seed=0, **{**hyper, "epochs": 2}).fit(trials[:2])
    n_measured = int(trials[0].measured.sum())
    assert direct.module_.net.n_inputs == n_measured
    moved = dataclasses.replace(trials[2], q=trials[2].q + 0.3)
    np.testing.assert_array_equal(direct.predict(moved).excitations.to_numpy(),
                                  direct.predict(trials[2]).excitations.to_numpy())
    est = NMMEstimator(seed=0, **{**SYNERGY, "epochs": 2}).fit(trials[:2])
    k = est.module_.n_synergies
    assert 1 <= k <= n_measured
    assert est.module_.net.n_inputs == n_measured + k  # measured excitations and synergy activations
    np.testing.assert_array_equal(est.predict(moved).excitations.to_numpy(),
                                  est.predict(trials[2]).excitations.to_numpy())
    est.save(tmp_path)
    np.testing.assert_array_equal(NMMEstimator.load(tmp_path).predict(trials[2]).moments.to_numpy(),
                                  est.predict(trials[2]).moments.to_numpy())
    with_kin = NMMEstimator(seed=0, kinematics_inputs=True, **{**SYNERGY, "epochs": 2}).fit(trials[:2])
    assert with_kin.module_.net.n_inputs == n_measured + 2 * len(trials[0].coordinates) + k
    assert not np.array_equal(with_kin.predict(moved).excitations.to_numpy(),
                              with_kin.predict(trials[2]).excitations.to_numpy())


def test_synergy_head_bounds_and_reduction_to_constant_weights():
    torch.manual_seed(0)
    head = SynergyHead(n_muscles=3, n_synergies=2, modulation=0.5, residual_bound=0.05, init_weight=0.2)
    with torch.no_grad():
        head.weight_raw.copy_(torch.randn(3, 2))
    h = torch.rand(2, 30, 2) * 0.5
    static = h @ torch.nn.functional.softplus(head.weight_raw).T  # (B, T, M)
    raw = torch.randn(2, 30, head.n_raw) * 100.0  # saturating network outputs
    with torch.no_grad():
        u = head(raw, h)
    assert u.shape == (2, 30, 3) and float(u.min()) >= 0.0 and float(u.max()) <= 1.0
    # the network can only scale each static weight within exp(+-modulation) and add +-residual_bound
    assert torch.all(u <= torch.clamp(static * np.exp(0.5) + 0.05, max=1.0) + 1e-6)
    assert torch.all(u >= torch.clamp(static * np.exp(-0.5) - 0.05, min=0.0) - 1e-6)
    # no modulation and no residual: constant non-negative weights, as in synergy extrapolation
    fixed = SynergyHead(n_muscles=3, n_synergies=2, modulation=0.0, residual_bound=0.0)
    with torch.no_grad():
        fixed.weight_raw.copy_(head.weight_raw)
        np.testing.assert_allclose(fixed(raw, h).numpy(), torch.clamp(static, 0, 1).numpy(), rtol=1e-6)
    with pytest.raises(EstimatorError, match="synergy_modulation"):
        SynergyHead(n_muscles=3, n_synergies=2, modulation=-1.0)


def test_synergy_output_follows_the_measured_excitations(trials):
    est = NMMEstimator(seed=0, **{**SYNERGY, "epochs": 3, "residual_bound": 0.02}).fit(trials[:2],
                                                                                      hidden=["m1"])
    module = est.module_
    assert module.head is not None and module.synergies.shape[1] == int(module.measured.sum())
    # without any measured activity the synergy activations vanish and so do the estimates, up to
    # the bounded residual
    silent = dataclasses.replace(trials[2], excitation=np.zeros_like(trials[2].excitation))
    pred = est.predict(silent).excitations
    for m in ("m1", "m4", "m5"):
        assert float(pred[m].max()) <= 0.02 + 1e-9, m
    # with activity they follow it: scaling every measured excitation up raises the estimates
    loud = dataclasses.replace(trials[2], excitation=np.clip(trials[2].excitation * 2.0, 0, 1))
    base, up = est.predict(trials[2]).excitations, est.predict(loud).excitations
    assert float(up[["m4", "m5"]].to_numpy().mean()) > float(base[["m4", "m5"]].to_numpy().mean())


def test_direct_output_round_trip(trials, tmp_path):
    est = NMMEstimator(seed=3, output="direct", **{**TINY, "epochs": 2}).fit(trials[:2])
    assert est.module_.head is None and est.module_.n_synergies == 0
    assert est.module_.net.n_outputs == len(trials[0].muscles)
    est.save(tmp_path)
    loaded = NMMEstimator.load(tmp_path)
    np.testing.assert_array_equal(loaded.predict(trials[2]).excitations.to_numpy(),
                                  est.predict(trials[2]).excitations.to_numpy())
    with pytest.raises(EstimatorError, match="output"):
        NMMEstimator(output="sigmoid")


def test_default_output_is_a_direct_excitation_head(trials):
    """By default the network predicts the unmeasured excitations directly (the NMM paper), not
    through synergies of the measured EMG: a silent EMG does not silence the estimates."""
    assert NMMEstimator().config.output == "direct"
    from musculo.estimators import registry

    assert registry.build("nmm", settings()).config.output == "direct"
    hyper = {k: v for k, v in TINY.items() if k != "output"}
    est = NMMEstimator(seed=0, **{**hyper, "epochs": 2}).fit(trials[:2])
    module = est.module_
    assert module.head is None and module.n_synergies == 0
    assert module.net.n_outputs == len(trials[0].muscles) and not module.net.linear_output
    silent = dataclasses.replace(trials[2], excitation=np.zeros_like(trials[2].excitation))
    pred = est.predict(silent).excitations
    assert float(pred[["m4", "m5"]].to_numpy().min()) > 0.0  # a sigmoid output, not zero synergies


def test_full_cycle_windows_and_fold_calibration(trials):
    """window 0 trains on whole training trials; fold_calibration starts the physics from a
    calibration on the fit's own training trials."""
    est = NMMEstimator(seed=0, **{**TINY, "window": 0.0, "epochs": 1}).fit(trials[:2])
    assert est.training_.n_train_windows + est.training_.n_val_windows == 2  # one full window per trial
    calibrated = NMMEstimator(seed=0, physics={"calibrate": ["strength_scale"], "calibration_max_iter": 5},
                              mse={"n_synergies": 2}, **{**TINY, "fold_calibration": True})
    start = calibrated._fold_calibration(trials[:2])
    scale = np.array(list(start["parameters"]["strength_scale"].values()))
    assert not np.allclose(scale, 1.0)  # moved from the scaled model's values on these trials


def test_ensemble_estimate_is_the_mean_of_its_seeded_networks(trials, tmp_path):
    """``ensemble`` networks from seeds seed, seed + 1: the estimate is the mean of what each network
    alone predicts, and saving keeps every network."""
    hyper = {**{k: v for k, v in TINY.items() if k != "output"}, "epochs": 2}
    est = NMMEstimator(seed=5, ensemble=2, **hyper).fit(trials[:2])
    assert len(est.members_) == 2 and len(est.trainings_) == 2
    alone = [NMMEstimator(seed=seed, ensemble=1, **hyper).fit(trials[:2]).predict(trials[2])
             for seed in (5, 6)]
    assert not np.allclose(alone[0].excitations[["m4", "m5"]], alone[1].excitations[["m4", "m5"]])
    pred = est.predict(trials[2])
    for key in ("excitations", "moments", "forces"):
        mean = (getattr(alone[0], key).to_numpy() + getattr(alone[1], key).to_numpy()) / 2
        np.testing.assert_allclose(getattr(pred, key).to_numpy(), mean, rtol=1e-6, atol=1e-9, err_msg=key)
    est.save(tmp_path)
    loaded = NMMEstimator.load(tmp_path)
    assert len(loaded.members_) == 2
    np.testing.assert_array_equal(loaded.predict(trials[2]).moments.to_numpy(), pred.moments.to_numpy())
    hp = est.hyperparameters()
    assert len(hp["physics_parameters"]) == 2 and len(hp["training"]) == 2
    torch.save(est.members_[0].state_dict(), tmp_path / "weights.pt")  # a single state, not a list
    with pytest.raises(EstimatorError, match="list of network states"):
        NMMEstimator.load(tmp_path)
