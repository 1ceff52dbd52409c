"""Streaming: replay a processed trial chunk by chunk into a causal estimator, as a lab stream would.

:func:`replay` cuts a trial (``results/<s>/<t>/``, loaded as the estimators see it) into chunks of
``chunk`` seconds, feeds them in time order to a fitted causal estimator and yields one
:class:`ChunkEstimate` per chunk with the moments (and, for ``realtime`` with an activity head, the
activity) of its frames and the wall time the estimator took for it. With ``realtime=True`` it
waits so that chunks arrive at the pace they were recorded.

- ``realtime``: a :class:`~musculo.estimators.realtime.RealtimeStreamer` keeps the network's
  receptive field of feature frames between chunks; its outputs equal the offline prediction.
- any other estimator (``attention``, ``nmm``, ...): each chunk is predicted together with the last
  ``history`` seconds before it (``trial.window``) and only the chunk's frames are kept. For causal
  estimators with finite memory (convolutions, local attention, first-order activation dynamics)
  this matches the offline prediction once ``history`` covers that memory.

Only processed trials are streamed: a raw C3D must first go through the workflow (IK, ID, muscle
analysis, EMG) for the kinematics and moments the estimators read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from musculo.errors import EstimatorError
from musculo.estimators.base import Estimator
from musculo.estimators.realtime import RealtimeEstimator
from musculo.physics.data import TrialData


@dataclass(frozen=True)
class ChunkEstimate:
    """One chunk's output.

    Attributes:
        time: (n,) s, the chunk's frames.
        moments: (n, C) N m, columns ``coordinates``.
        coordinates: names of the moment columns.
        activity: (n,) labels, or None without an activity head.
        latency: wall seconds the estimator took for the chunk (excluding any real-time wait).
    """

    time: np.ndarray
    moments: np.ndarray
    coordinates: list[str]
    activity: list[str] | None
    latency: float


def _moments_of(estimator: Estimator, trial: TrialData) -> np.ndarray:
    predict = getattr(estimator, "predict_moments", None)
    if predict is not None:
        return np.asarray(predict(trial))
    return estimator.predict(trial).moments.to_numpy()


def replay(
    estimator: Estimator, trial: TrialData, *, chunk: float = 0.1, history: float = 1.0,
    realtime: bool = False,
) -> Iterator[ChunkEstimate]:
    """Feed ``trial`` to ``estimator`` in chunks of ``chunk`` s (see the module docstring)."""
    if chunk <= 0 or trial.n_frames < 2:
        raise EstimatorError(f"stream: chunk ({chunk} s) must be > 0 and trial {trial.name} needs "
                             ">= 2 frames")
    dt = trial.dt
    per = max(1, round(chunk / dt))
    hist = max(0, round(history / dt))
    streamer = estimator.streamer(trial.muscles) if isinstance(estimator, RealtimeEstimator) else None
    start_wall = time.perf_counter()
    for s in range(0, trial.n_frames, per):
        e = min(trial.n_frames, s + per)
        if realtime:
            wait = (trial.time[e - 1] - trial.time[0]) - (time.perf_counter() - start_wall)
            if wait > 0:
                time.sleep(wait)
        t0 = time.perf_counter()
        activity = None
        if streamer is not None:
            moments, prob = streamer.push(trial.excitation[s:e], trial.q[s:e], trial.qdot[s:e],
                                          measured=trial.measured)
            if prob is not None:
                activity = [estimator.classes_[i] for i in prob.argmax(axis=1)]
        else:
            a = max(0, s - hist)
            if e - a < 2:  # a last one-frame chunk right after the trial start
                a = max(0, e - 2)
            sub = trial.window(trial.time[a] - 1e-9, trial.time[e - 1] + 1e-9, name=f"{trial.name}@stream")
            moments = _moments_of(estimator, sub)[-(e - s):]
        latency = time.perf_counter() - t0
        yield ChunkEstimate(time=trial.time[s:e], moments=np.asarray(moments, dtype=float),
                            coordinates=list(trial.coordinates), activity=activity, latency=latency)


def latency_summary(latencies: list[float]) -> dict[str, float]:
    """Median, 95th percentile and maximum of chunk latencies, in milliseconds."""
    a = np.asarray(latencies, dtype=float) * 1e3
    return {"median_ms": float(np.median(a)), "p95_ms": float(np.percentile(a, 95)), "max_ms": float(a.max()),
            "chunks": float(len(a))}
