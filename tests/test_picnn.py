"""PI-CNN and its generic-to-personal transfer: physics loss, frozen features, determinism, registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import settings

from musculo.errors import EstimatorError
from musculo.estimators import registry
from musculo.estimators.picnn import MomentArmModel, PICNNEstimator, physics_loss, reference_forces
from musculo.estimators.transfer import GenericModel, cohort_members, fine_tune, transfer_evaluation
from musculo.physics.synthetic import synthetic_trials

SMALL = {
    "window": 8,
    "channels": 4,
    "hidden": 8,
    "epochs": 3,
    "finetune_epochs": 2,
    "batch_size": 32,
    "shares": [0.1],
    "selections": ["random", "active"],
}


def _settings():
    return settings(picnn=SMALL)


def _consistent(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    b, m, c = 20, 5, 2
    force = torch.rand(b, m, generator=g) * 1000
    angles = torch.rand(b, c, generator=g)
    coef = (torch.rand(1, 1 + 2 * c, m, c, generator=g) - 0.5) * 0.05
    coef = coef.expand(b, -1, -1, -1)
    arms = torch.einsum("bp,bpmc->bmc", MomentArmModel.features(angles), coef)
    moment = torch.einsum("bmc,bm->bc", arms, force)
    return force, angles, moment, coef


def test_physics_loss_zero_when_consistent_and_grows_with_disagreement():
    force, angles, moment, coef = _consistent()
    scale = torch.ones(2)
    assert float(physics_loss(force, angles, moment, coef, scale)) < 1e-8
    losses = [float(physics_loss(force * (1 + e), angles, moment, coef, scale)) for e in (0.05, 0.2, 0.5)]
    assert 0 < losses[0] < losses[1] < losses[2]
    wrong_angles = float(physics_loss(force, angles + 0.3, moment, coef, scale))
    wrong_moments = float(physics_loss(force, angles, moment + 5.0, coef, scale))
    assert wrong_angles > 1e-4 and wrong_moments > 1.0


def test_moment_arm_model_reproduces_trial_moment_arms():
    trials = synthetic_trials(n_trials=2, n_frames=60, seed=1)
    arms = MomentArmModel.fit(trials)
    q = torch.as_tensor(trials[0].q)
    fitted = arms.arms(q).numpy()
    assert np.abs(fitted - trials[0].moment_arm).max() < 0.2 * np.abs(trials[0].moment_arm).max()


def test_registered_and_deterministic():
    s = _settings()
    assert "picnn" in registry.names()
    trials = synthetic_trials(n_trials=2, n_frames=60, seed=2)
    a = registry.build("picnn", s).fit(trials[:1]).predict(trials[1])
    b = registry.build("picnn", s).fit(trials[:1]).predict(trials[1])
    np.testing.assert_array_equal(a.moments.to_numpy(), b.moments.to_numpy())
    np.testing.assert_array_equal(a.forces.to_numpy(), b.forces.to_numpy())
    c = registry.build("picnn", settings(picnn=SMALL, seed=s.seed + 1)).fit(trials[:1]).predict(trials[1])
    assert not np.array_equal(a.forces.to_numpy(), c.forces.to_numpy())


def test_save_load_round_trip(tmp_path):
    s = _settings()
    trials = synthetic_trials(n_trials=2, n_frames=50, seed=3)
    est = registry.build("picnn", s).fit(trials[:1], hidden=["m0"])
    est.save(tmp_path)
    back = PICNNEstimator.load(tmp_path)
    np.testing.assert_allclose(
        back.predict(trials[1]).moments.to_numpy(), est.predict(trials[1]).moments.to_numpy()
    )


def test_active_choice_takes_distinct_stretches_by_residual():
    from musculo.estimators.transfer import active_choice

    residual = np.zeros(100)
    residual[40:46] = np.linspace(10, 11, 6)  # one badly fitted stretch
    residual[80] = 5.0
    residual[10] = 4.0
    got = active_choice(residual, 3, spacing=8)
    assert list(got) == [10, 45, 80]  # not three neighbours of the worst stretch
    assert sorted(active_choice(residual, 100, spacing=8)) == list(range(100))  # the rest by residual


def test_generic_model_leaves_out_a_member_without_usable_emg(caplog):
    from dataclasses import replace

    s = _settings()
    groups = {f"s{i}": synthetic_trials(n_trials=1, n_frames=40, seed=10 + i) for i in range(2)}
    groups["silent"] = [replace(t, measured=np.zeros_like(t.measured), excitation=0 * t.excitation)
                        for t in synthetic_trials(n_trials=1, n_frames=40, seed=12)]
    generic = GenericModel(s.picnn, physics=s.physics, seed=s.seed).fit(groups)
    assert generic.subjects_ == ["s0", "s1"] and "['silent'] left out (no usable EMG)" in caplog.text
    with pytest.raises(EstimatorError, match="no training subjects with usable EMG"):
        GenericModel(s.picnn, physics=s.physics, seed=s.seed).fit({"silent": groups["silent"]})


def test_fine_tuning_freezes_features_and_changes_head():
    s = _settings()
    groups = {f"s{i}": synthetic_trials(n_trials=2, n_frames=50, seed=10 + i) for i in range(2)}
    generic = GenericModel(s.picnn, physics=s.physics, seed=s.seed).fit(groups)
    new = synthetic_trials(n_trials=2, n_frames=50, seed=20)
    before = {k: v.clone() for k, v in generic.net_.state_dict().items()}
    est, chosen = fine_tune(generic, new[:1], share=0.2, selection="active", seed=0)
    assert len(chosen) == 10
    after = est.net_.state_dict()
    for k, v in before.items():
        if k.startswith("features."):
            assert torch.equal(v, after[k]), k
    assert any(not torch.equal(v, after[k]) for k, v in before.items() if k.startswith("head."))
    # the generic model itself is untouched
    assert all(torch.equal(v, generic.net_.state_dict()[k]) for k, v in before.items())


def test_transfer_protocol_rows():
    s = _settings()
    groups = {f"s{i}": synthetic_trials(n_trials=2, n_frames=40, seed=30 + i) for i in range(2)}
    generic = GenericModel(s.picnn, physics=s.physics, seed=s.seed).fit(groups)
    new = synthetic_trials(n_trials=2, n_frames=40, seed=40)
    table, timing = transfer_evaluation(
        subject="x", folds=[(new[:1], new[1:])], cfg=s.picnn, physics=s.physics, seed=0, generic=generic
    )
    assert set(table["method"]) == {
        "picnn_transfer@scratch-100",
        "picnn_transfer@generic-0",
        "picnn_transfer@random-10",
        "picnn_transfer@active-10",
    }
    assert set(table["quantity"]) == {"angle", "moment", "force"}
    assert len(timing) == 3


def test_reference_forces_need_static_optimisation():
    trial = synthetic_trials(n_trials=1, n_frames=20, seed=5)[0]
    assert reference_forces(trial).shape == (20, len(trial.muscles))
    from dataclasses import replace

    with pytest.raises(Exception, match="static optimisation"):
        reference_forces(replace(trial, so_activation=None))


def test_cohort_members():
    got = cohort_members(
        {"kids": ["biomechzoo-HC*"], "twins": ["twin-*"]}, ["biomechzoo-HC002D", "twin-a", "motonms-unipd"]
    )
    assert got == {"kids": ["biomechzoo-HC002D"], "twins": ["twin-a"]}


def test_cohort_keeps_a_channel_that_failed_quality_in_one_member(tmp_path):
    """A cohort shares the muscles its subject files list: a member whose channel failed quality keeps
    that muscle, unmeasured (zero network input), so the cohort's measured inputs do not shrink to the
    channels every member happens to have."""
    from dataclasses import replace

    from helpers import synthetic_subject

    from musculo.estimators.picnn import emg_inputs
    from musculo.estimators.transfer import common_muscle_set
    from musculo.estimators.trials import load_trials
    from musculo.physics.synthetic import write_trial_dir

    raw = {"emg": {"channels": {f"c{i}": [f"m{i}"] for i in range(5)}}, "unmeasured": ["m5", "m6"]}
    groups = {}
    for k, failed in enumerate([(0,), (1, 2), ()]):
        measured = np.array([i < 5 and i not in failed for i in range(7)])
        dirs = [write_trial_dir(replace(t, measured=measured, excitation=t.excitation * measured),
                                tmp_path / f"s{k}" / t.name)
                for t in synthetic_trials(n_trials=2, n_frames=40, n_muscles=7, n_unmeasured=2, seed=k)]
        subject = synthetic_subject(tmp_path / f"s{k}", **raw)
        groups[f"s{k}"] = {ms: load_trials(subject, dirs, settings=settings(), muscle_set=ms)
                           for ms in ("subject", "listed")}
    per_subject = common_muscle_set({s: g["subject"] for s, g in groups.items()})
    assert per_subject["s2"][0].muscles == ["m3", "m4", "m5", "m6"]  # what every member measured
    cohort = common_muscle_set({s: g["listed"] for s, g in groups.items()})
    for s, failed in zip(groups, [(0,), (1, 2), ()], strict=True):
        trial = cohort[s][0]
        assert trial.muscles == [f"m{i}" for i in range(7)]
        assert [i for i in range(5) if not trial.measured[i]] == list(failed)
        x = emg_inputs(trial)
        seen = [i for i in range(5) if i not in failed]
        assert np.all(x[:, list(failed) + [5, 6]] == 0.0) and np.all(x[:, seen].std(0) > 0)
    with pytest.raises(ValueError, match="muscle_set"):
        load_trials(synthetic_subject(tmp_path / "s0", **raw), [], settings=settings(), muscle_set="all")


def test_through_the_evaluation_driver(tmp_path):
    from helpers import synthetic_subject

    from musculo.evaluation import run_evaluation
    from musculo.physics.synthetic import write_trial_dir

    trials = synthetic_trials(n_trials=2, n_frames=40, seed=6)
    dirs = [write_trial_dir(t, tmp_path / "res" / t.name) for t in trials]
    subject = synthetic_subject(tmp_path, hide=["m0"])
    table = run_evaluation(method="picnn", subject=subject, trial_dirs=dirs, out_dir=tmp_path / "picnn",
                           settings=_settings())
    assert {"moment", "excitation"} <= set(table["quantity"])
    assert (tmp_path / "picnn" / "predictions" / f"{trials[0].name}.forces.sto").is_file()
    assert PICNNEstimator.load(tmp_path / "picnn" / "model").muscles_ == trials[0].muscles
