"""The synergy + multi-scale attention estimator: gradient reversal, causality, determinism, round trip."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from helpers import settings

from musculo.estimators import registry
from musculo.estimators.attention import AttentionEstimator, MultiScaleAttentionNet, causal_mask
from musculo.estimators.sequence import DomainDiscriminator, grad_reverse
from musculo.physics.synthetic import synthetic_trials

TINY = {"epochs": 3, "channels": 8, "scales": [1, 2], "window": 0.5, "attention_window": 0.1,
        "patience": 10}


@pytest.fixture(scope="module")
def trials():
    return synthetic_trials(n_trials=3, n_frames=120, n_muscles=6, n_unmeasured=2, seed=3)


def _est(**kw):
    return registry.build("attention", settings(attention={**TINY, **kw}))


def test_gradient_reversal_flips_the_discriminator_gradient():
    torch.manual_seed(0)
    disc = DomainDiscriminator(5, 3, scale=0.7)
    x = torch.randn(4, 6, 5, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 1])
    torch.nn.functional.cross_entropy(disc(x), labels).backward()
    reversed_grad = x.grad.clone()
    weight_grad = disc.mlp[0].weight.grad.clone()
    x.grad = None
    disc.zero_grad()
    torch.nn.functional.cross_entropy(disc.mlp(x.mean(dim=1)), labels).backward()  # no reversal
    assert torch.allclose(reversed_grad, -0.7 * x.grad, atol=1e-7)
    assert reversed_grad.abs().sum() > 0
    assert torch.allclose(disc.mlp[0].weight.grad, weight_grad)  # the discriminator itself is not reversed
    y = torch.ones(3, requires_grad=True)
    assert torch.equal(grad_reverse(y, 2.0), y)  # identity forward


def test_network_does_not_look_ahead():
    torch.manual_seed(0)
    net = MultiScaleAttentionNet(n_inputs=4, n_outputs=2, channels=8, scales=(1, 3), heads=2, window=5).eval()
    x = torch.randn(1, 40, 4)
    y = x.clone()
    y[:, 25:] = torch.randn(1, 15, 4) * 10
    with torch.no_grad():
        a, _ = net(x)
        b, _ = net(y)
    assert torch.allclose(a[:, :25], b[:, :25], atol=1e-6)
    assert not torch.allclose(a[:, 25:], b[:, 25:])
    assert causal_mask(4, 2).tolist()[3] == [True, True, False, False]


def test_estimator_is_causal_deterministic_and_round_trips(trials, tmp_path):
    est = _est().fit(trials[:2])
    test = trials[2]
    ref = est.predict_moments(test)
    cut = 70
    future = dataclasses.replace(test, excitation=test.excitation.copy(), q=test.q.copy())
    future.excitation[cut:] = np.flip(future.excitation[cut:], axis=0)
    future.q[cut:] += 0.5
    changed = est.predict_moments(future)
    assert np.allclose(changed[:cut], ref[:cut], atol=1e-5)
    assert not np.allclose(changed[cut:], ref[cut:], atol=1e-3)
    again = _est().fit(trials[:2]).predict_moments(test)
    np.testing.assert_array_equal(again, ref)
    est.save(tmp_path)
    np.testing.assert_allclose(AttentionEstimator.load(tmp_path).predict_moments(test), ref, atol=1e-6)


def test_prediction_passes_measured_emg_and_constants_elsewhere(trials):
    est = _est(adversarial=False).fit(trials[:2], hidden=[trials[0].measured_muscles[0]])
    pred = est.predict(trials[2])
    exc = pred.excitations.to_numpy()
    hidden = trials[0].muscles.index(trials[0].measured_muscles[0])
    shown = [i for i, k in enumerate(trials[2].measured) if k and i != hidden]
    np.testing.assert_array_equal(exc[:, shown], trials[2].excitation[:, shown])
    assert np.ptp(exc[:, hidden]) == 0.0  # the hidden muscle's own EMG is not used
    assert list(pred.moments.columns) == trials[2].coordinates


def test_target_moments_are_never_read(trials):
    target = trials[2]
    rng = np.random.default_rng(0)
    noisy = dataclasses.replace(target, id_moment=rng.normal(size=target.id_moment.shape))
    a = _est().fit(trials[:2], target=[target]).predict_moments(trials[0])
    b = _est().fit(trials[:2], target=[noisy]).predict_moments(trials[0])
    np.testing.assert_array_equal(a, b)
