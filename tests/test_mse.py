"""MSE baseline: synergy extraction, extrapolation through the physics core, save/load."""

from __future__ import annotations

import numpy as np
import pytest

from musculo.errors import EstimatorError
from musculo.estimators.mse import MSEEstimator, fit_synergies, synergy_activations, vaf
from musculo.physics.muscle import per_muscle_bounds
from musculo.physics.synthetic import synthetic_trials
from musculo.settings import PhysicsSettings


def test_vaf_chooses_number_of_synergies():
    rng = np.random.default_rng(0)
    h = rng.uniform(0, 1, (300, 3))
    w = rng.uniform(0, 1, (3, 8))
    data = h @ w
    syn, score = fit_synergies(data, vaf_threshold=0.999, seed=1)
    assert syn.shape == (3, 8) and score >= 0.999
    syn1, score1 = fit_synergies(data, n_synergies=1, seed=1)
    assert syn1.shape == (1, 8) and score1 < score
    act = synergy_activations(data, syn)
    assert vaf(data, act @ syn) > 0.999 and act.min() >= 0


def test_mse_extrapolates_unmeasured_muscles_and_moments(tmp_path):
    trials = synthetic_trials(n_trials=3, seed=0)
    est = MSEEstimator(max_iter=100, magnitude_weight=0.001, n_synergies=None, moment_tolerance=0.0,
                       seed=0).fit(trials[:2])
    assert est.synergies_.shape[0] == 2 and est.extrapolated_ == ["m4", "m5"]
    pred = est.predict(trials[2])
    truth = trials[2].so_activation
    for m in ("m4", "m5"):
        r = np.corrcoef(pred.excitations[m], truth[:, trials[2].muscles.index(m)])[0, 1]
        assert r > 0.95
    assert pred.excitations.to_numpy().min() >= 0 and pred.excitations.to_numpy().max() <= 1
    for j, c in enumerate(trials[2].coordinates):
        err = pred.moments[c].to_numpy() - trials[2].id_moment[:, j]
        assert np.sqrt(np.mean(err**2)) < 0.1 * np.ptp(trials[2].id_moment[:, j])
    est.save(tmp_path)
    loaded = MSEEstimator.load(tmp_path)
    again = loaded.predict(trials[2])
    np.testing.assert_allclose(again.moments.to_numpy(), pred.moments.to_numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(again.excitations.to_numpy(), pred.excitations.to_numpy(), atol=1e-12)


def test_hidden_muscle_is_not_read_from_the_trial():
    trials = synthetic_trials(n_trials=3, seed=0)
    est = MSEEstimator(max_iter=50, n_synergies=2).fit(trials[:2], hidden=["m1"])
    assert "m1" in est.extrapolated_ and "m1" not in est.measured_
    test = trials[2]
    changed = test.__class__(**{**test.__dict__, "excitation": test.excitation.copy()})
    changed.excitation[:, 1] = 0.9  # a different envelope of the hidden muscle must not matter
    np.testing.assert_array_equal(est.predict(test).excitations["m1"], est.predict(changed).excitations["m1"])


def test_predict_before_fit_and_missing_state(tmp_path):
    with pytest.raises(EstimatorError, match="before fit"):
        MSEEstimator().predict(synthetic_trials(n_trials=1)[0])
    with pytest.raises(EstimatorError, match="mse.json"):
        MSEEstimator.load(tmp_path)


def test_physics_prior_keeps_calibrated_parameters_near_the_model():
    trials = synthetic_trials(n_trials=2, n_frames=60, seed=1)
    stronger = [t.__class__(**{**t.__dict__, "id_moment": 1.5 * t.id_moment}) for t in trials]

    def change(prior_weight: float) -> float:
        est = MSEEstimator(physics={"prior_weight": prior_weight}, trainable_physics=["strength_scale"],
                           n_synergies=2, max_iter=60, seed=0).fit(stronger)
        scale = np.array(list(est.model_.to_dict()["strength_scale"].values()))
        return float(np.abs(scale - 1.0).mean())

    free, held = change(0.0), change(100.0)
    assert free > 0.2  # the data ask for about 1.5x stronger muscles
    assert held < 0.5 * free


def test_synx_defaults_fixed_synergy_count_wide_bounds_stiff_triceps_surae():
    trials = synthetic_trials(n_trials=2, n_frames=40, seed=0)
    est = MSEEstimator(max_iter=5, seed=0)
    assert est.n_synergies in (5, 6)  # fixed, as SynX
    est.fit(trials)
    assert est.synergies_.shape[0] == len(est.measured_) == 4  # capped by the measured muscles
    physics = PhysicsSettings.from_config()
    assert tuple(physics.bounds["optimal_fiber_length_scale"]) == (0.6, 1.4)
    assert tuple(physics.bounds["tendon_slack_length_scale"]) == (0.6, 1.4)
    assert physics.bounds["emg_gain"][0] <= 0.05 and physics.bounds["emg_gain"][1] >= 3.0
    assert physics.use_delay and "delay" in physics.calibrate and tuple(physics.bounds["delay"]) == (0.0, 0.1)
    lo, hi = per_muscle_bounds(["soleus_r", "gasmed_r", "lat_gas_l", "bflh_r"],
                               physics.bounds["tendon_slack_length_scale"],
                               physics.muscle_bounds["tendon_slack_length_scale"])
    assert (hi[:3] - lo[:3] <= 0.1).all() and (lo[3], hi[3]) == (0.6, 1.4)


def test_moment_tolerance_is_a_dead_band():
    trials = synthetic_trials(n_trials=2, n_frames=40, seed=0)

    def mean_extrapolated(tolerance: float) -> float:
        est = MSEEstimator(max_iter=30, n_synergies=2, moment_tolerance=tolerance, seed=0).fit(trials)
        return float(est.predict(trials[0]).excitations[est.extrapolated_].to_numpy().mean())

    # errors within a huge tolerance cost nothing: only the magnitude penalty is left, so the
    # extrapolated excitations go to zero; without tolerance they must carry their moments
    assert mean_extrapolated(1e6) < 1e-3 < mean_extrapolated(0.0)


def test_trial_gain_absorbs_amplitude_drift():
    trials = synthetic_trials(n_trials=3, n_frames=40, seed=0)
    excitation = np.clip(1.6 * trials[1].excitation, 0, 1)
    louder = trials[1].__class__(**{**trials[1].__dict__, "excitation": excitation})
    est = MSEEstimator(max_iter=60, n_synergies=2, trial_gain=True, moment_tolerance=0.0, seed=0).fit(
        [trials[0], louder, trials[2]])
    gains = est.trial_gains_
    assert gains[louder.name] < 0.85 * min(gains[trials[0].name], gains[trials[2].name])
