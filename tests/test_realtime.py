"""The real-time multi-task estimator: causality, streaming equals offline, activity head, determinism."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from helpers import settings

from musculo.estimators import registry
from musculo.estimators.realtime import RealtimeEstimator, RealtimeNet
from musculo.physics.synthetic import synthetic_trials

TINY = {"epochs": 4, "channels": 8, "dilations": [1, 2], "window": 0.5, "patience": 10}


@pytest.fixture(scope="module")
def trials():
    return synthetic_trials(n_trials=4, n_frames=120, n_muscles=6, n_unmeasured=2, seed=5)


def _est(**kw):
    return registry.build("realtime", settings(realtime={**TINY, **kw}))


def test_network_does_not_look_ahead():
    torch.manual_seed(0)
    net = RealtimeNet(n_inputs=5, n_outputs=2, n_classes=3, channels=8, dilations=(1, 2, 4), se_frames=4)
    net.eval()
    x = torch.randn(1, 50, 5)
    y = x.clone()
    y[:, 30:] = torch.randn(1, 20, 5) * 5
    with torch.no_grad():
        (ma, ca), (mb, cb) = net.heads(x), net.heads(y)
    assert torch.allclose(ma[:, :30], mb[:, :30], atol=1e-6)
    assert torch.allclose(ca[:, :30], cb[:, :30], atol=1e-6)
    assert not torch.allclose(ma[:, 30:], mb[:, 30:])
    # the receptive field is what the network reports
    z = x.clone()
    z[:, 49 - net.context - 1] += 100.0
    with torch.no_grad():
        assert torch.allclose(net(x)[0][:, 49], net(z)[0][:, 49], atol=1e-6)


def test_depthwise_taps_are_the_grouped_convolution():
    torch.manual_seed(1)
    net = RealtimeNet(n_inputs=3, n_outputs=1, n_classes=1, channels=6, kernel_size=3, dilations=(1, 4))
    for block in net.blocks:
        h = torch.randn(2, block.depthwise.in_channels, 40 + block.pad)
        with torch.no_grad():
            torch.testing.assert_close(block._depthwise(h), block.depthwise(h), atol=1e-5, rtol=1e-5)


def test_streaming_equals_offline_and_activity_is_learnt(trials, tmp_path):
    tasks = ["walking", "squat", "walking", "squat"]
    shifted = [dataclasses.replace(t, q=t.q + (2.0 if k == "squat" else 0.0))
               for t, k in zip(trials, tasks, strict=True)]
    est = _est(epochs=40, activity_weight=1.0, learning_rate=0.02, batch_size=4)
    est.fit(shifted[:3], tasks=tasks[:3])
    test = shifted[3]
    offline = est.predict_moments(test)
    labels, prob = est.predict_activity(test)
    assert prob.shape == (test.n_frames, 2) and np.allclose(prob.sum(axis=1), 1.0, atol=1e-5)
    assert np.mean([lab == "squat" for lab in labels]) > 0.9
    streamer = est.streamer(test.muscles)
    parts = [streamer.push(test.excitation[s:s + 7], test.q[s:s + 7], test.qdot[s:s + 7], test.measured)[0]
             for s in range(0, test.n_frames, 7)]
    np.testing.assert_allclose(np.concatenate(parts), offline, atol=1e-4)
    est.save(tmp_path)
    loaded = RealtimeEstimator.load(tmp_path)
    np.testing.assert_allclose(loaded.predict_moments(test), offline, atol=1e-6)
    assert loaded.predict_activity(test)[0] == labels


def test_training_is_deterministic_and_future_blind(trials):
    a = _est().fit(trials[:2])
    b = _est().fit(trials[:2])
    np.testing.assert_array_equal(a.predict_moments(trials[2]), b.predict_moments(trials[2]))
    future = dataclasses.replace(trials[2], excitation=trials[2].excitation.copy())
    future.excitation[60:] = 1.0 - future.excitation[60:]
    np.testing.assert_allclose(a.predict_moments(future)[:60], a.predict_moments(trials[2])[:60], atol=1e-5)
    pred = a.predict(trials[2])
    meas = np.flatnonzero(trials[2].measured)
    np.testing.assert_array_equal(pred.excitations.to_numpy()[:, meas], trials[2].excitation[:, meas])
