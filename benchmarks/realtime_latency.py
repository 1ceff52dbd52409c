"""Inference latency of the streaming estimators per 100 ms chunk on one CPU thread.

Fits ``realtime`` (and ``attention``) briefly on synthetic trials (100 Hz) with the config's network
sizes, then streams a held-out trial chunk by chunk (musculo.stream.replay) and prints the median and
95th percentile of the per-chunk wall time. The network size, not the training, sets the latency.

    python benchmarks/realtime_latency.py [--configfile config/config.yaml] [--repeats 5]
"""

from __future__ import annotations

import argparse

import torch

from musculo.estimators import registry
from musculo.physics.synthetic import synthetic_trials
from musculo.settings import load_settings
from musculo.stream import latency_summary, replay


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", nargs="+", default=["config/config.yaml"])
    parser.add_argument("--repeats", type=int, default=5, help="replays of the held-out trial")
    parser.add_argument("--methods", nargs="+", default=["realtime", "attention"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = load_settings(args.configfile[0], args.configfile[1:])
    raw = dict(base.raw)
    raw["physics"] = {**raw["physics"], "window": "all"}
    for m in ("realtime", "attention"):
        raw[m] = {**raw[m], "epochs": 2}  # latency depends on the network, not on its training
    settings = type(base).from_config(raw)
    trials = synthetic_trials(n_trials=3, n_frames=600, n_muscles=12, n_unmeasured=4, rate=100.0, seed=1)
    chunk = settings.realtime.chunk
    print("| method | chunk (s) | frames/chunk | chunks | median (ms) | p95 (ms) | max (ms) |")
    print("|---|---|---|---|---|---|---|")
    for method in args.methods:
        est = registry.build(method, settings).fit(trials[:2])
        torch.set_num_threads(1)
        lat: list[float] = []
        for _ in range(args.repeats):
            lat += [c.latency for c in replay(est, trials[2], chunk=chunk, history=1.0)]
        s = latency_summary(lat)
        print(f"| {method} | {chunk:g} | {round(chunk * 100)} | {int(s['chunks'])} | {s['median_ms']:.3f} | "
              f"{s['p95_ms']:.3f} | {s['max_ms']:.3f} |")


if __name__ == "__main__":
    main()
