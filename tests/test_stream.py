"""Streaming replay: chunked causal estimates equal the offline ones; latencies are measured."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import settings

from musculo.errors import EstimatorError
from musculo.estimators import registry
from musculo.physics.synthetic import synthetic_trials
from musculo.stream import latency_summary, replay


@pytest.fixture(scope="module")
def trials():
    return synthetic_trials(n_trials=3, n_frames=120, n_muscles=6, n_unmeasured=2, seed=7)


def test_replay_matches_offline_for_both_causal_estimators(trials):
    s = settings(realtime={"epochs": 2, "channels": 8, "dilations": [1, 2], "window": 0.5},
                 attention={"epochs": 2, "channels": 8, "scales": [1, 2], "window": 0.5,
                            "attention_window": 0.1, "activation_tau": 0.0})
    for method in ("realtime", "attention"):
        est = registry.build(method, s).fit(trials[:2])
        offline = est.predict_moments(trials[2])
        chunks = list(replay(est, trials[2], chunk=0.1, history=1.0))
        assert sum(len(c.time) for c in chunks) == trials[2].n_frames
        np.testing.assert_allclose(np.concatenate([c.moments for c in chunks]), offline, atol=1e-4)
        summary = latency_summary([c.latency for c in chunks])
        assert summary["chunks"] == len(chunks) and 0 < summary["median_ms"] <= summary["p95_ms"]


def test_replay_rejects_a_bad_chunk(trials):
    est = registry.build("realtime", settings(realtime={"epochs": 1, "channels": 4, "dilations": [1]}))
    with pytest.raises(EstimatorError, match="chunk"):
        next(replay(est.fit(trials[:2]), trials[2], chunk=0.0))
