"""NMM speed: training time per subject (2 threads) and inference latency per 100 ms window (1 thread).

Usage:
    python benchmarks/nmm_speed.py                      # every subject with EMG whose results exist
    python benchmarks/nmm_speed.py --subjects motonms-unipd rajagopal-walk
    python benchmarks/nmm_speed.py --synthetic          # synthetic subjects of realistic size

A subject is timed on its processed trials (``results/<id>/<trial>/``) with the hyper-parameters of
config/config.yaml (plus ``--overlay`` files). Without processed results, ``--synthetic`` times
synthetic subjects shaped like the demo subjects (muscles, coordinates, frame rate, duration).

Latency is the wall time of one call on a 100 ms window of input frames, single-threaded, after a
warm-up: "features+network" is the excitation prediction from raw inputs (input normalisation, the
synergy activations of the measured excitations by non-negative least squares, the network and its
output head), "network+physics" is the whole NMM forward pass from ready features (network, then
activation dynamics, Hill forces and joint moments). Both are for one network; with ``nmm.ensemble``
networks an estimate makes that many calls.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from musculo.config import load_config
from musculo.estimators import registry
from musculo.estimators.nmm import NMMEstimator
from musculo.estimators.trials import load_trials
from musculo.physics.muscle import DTYPE
from musculo.physics.synthetic import synthetic_trials
from musculo.settings import load_settings
from musculo.subject import discover_subjects, load_subject

REPO = Path(__file__).resolve().parents[1]

# name: (trials, frames per trial, muscles, unmeasured, rate): shaped like the demo subjects
SYNTHETIC = {
    "synthetic-motonms (5 walks, 43 muscles, 60 Hz)": (5, 150, 43, 24, 60.0),
    "synthetic-rajagopal (1 walk, 40 muscles, 100 Hz)": (1, 500, 40, 30, 100.0),
}


def _settings(overlays: list[str], overrides: dict | None, threads: int):
    """The workflow's settings (config.yaml, the overlays, a subject's overrides), training threads set."""
    overrides = dict(overrides or {})
    if threads:
        overrides["nmm"] = {**overrides.get("nmm", {}), "threads": threads}
    return load_settings(REPO / "config" / "config.yaml", overlays, overrides=overrides)


def real_subjects(ids: list[str], *, overlays: list[str], threads: int) -> dict[str, tuple]:
    """Processed demo subjects with EMG: name -> (trials, settings with the subject's overrides)."""
    out = {}
    for sid in ids or discover_subjects(REPO / "subjects"):
        subj = load_subject(REPO / "subjects" / sid / "subject.yaml")
        if not subj.emg_channels:
            continue
        dirs = [REPO / "results" / sid / t for t in subj.trial_names("dynamic")]
        if not all((d / "muscle_analysis.npz").is_file() and (d / "emg.sto").is_file() for d in dirs):
            print(f"# {sid}: no processed trials under results/{sid}/; skipped")
            continue
        settings = _settings(overlays, subj.config_overrides, threads)
        out[sid] = (load_trials(subj, dirs, settings=settings), settings)
    return out


def synthetic_subjects(*, overlays: list[str], threads: int) -> dict[str, tuple]:
    """Synthetic subjects shaped like the demo ones: name -> (trials, settings)."""
    out = {}
    settings = _settings(overlays, None, threads)
    for name, (n_trials, frames, muscles, unmeasured, rate) in SYNTHETIC.items():
        out[name] = (synthetic_trials(n_trials=n_trials, n_frames=frames, n_muscles=muscles,
                                      n_synergies=4, n_unmeasured=unmeasured, rate=rate, seed=0), settings)
    return out


def latency(est: NMMEstimator, trial, *, repeats: int) -> dict[str, tuple[float, float]]:
    module = est.module_
    frames = max(1, round(0.1 / trial.dt))
    sl = slice(0, frames)
    feats = module.features(trial.excitation[sl], trial.q[sl], trial.qdot[sl]).unsqueeze(0)
    exc = torch.as_tensor(trial.excitation[sl], dtype=DTYPE).unsqueeze(0)
    length = torch.as_tensor(trial.mtu_length[sl], dtype=DTYPE)
    vel = torch.as_tensor(trial.mtu_velocity[sl], dtype=DTYPE)
    arm = torch.as_tensor(trial.moment_arm[sl], dtype=DTYPE)
    raw = (trial.excitation[sl] * module.measured.numpy(), trial.q[sl], trial.qdot[sl])
    calls = {
        "features+network": lambda: module.excitations(module.features(*raw).unsqueeze(0), exc),
        "network+physics": lambda: module(feats, exc, length, vel, arm, trial.dt),
    }
    out = {}
    with torch.inference_mode():
        for name, call in calls.items():
            for _ in range(20):
                call()
            times = np.empty(repeats)
            for i in range(repeats):
                t0 = time.perf_counter()
                call()
                times[i] = time.perf_counter() - t0
            out[name] = (float(np.median(times) * 1e3), float(np.percentile(times, 95) * 1e3))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", nargs="*", default=[])
    parser.add_argument("--synthetic", action="store_true", help="time synthetic subjects of realistic size")
    parser.add_argument("--overlay", nargs="*", default=[], help="config files merged over config.yaml")
    parser.add_argument("--train-threads", type=int, default=0,
                        help="torch threads while training (0: nmm.threads of the config)")
    parser.add_argument("--repeats", type=int, default=500)
    parser.add_argument("-v", "--verbose", action="store_true", help="log the training epochs")
    args = parser.parse_args()
    if args.verbose:
        logging.getLogger("musculo").addHandler(logging.StreamHandler())
        logging.getLogger("musculo").setLevel(logging.INFO)
    cfg = load_config(REPO / "config" / "config.yaml", args.overlay)
    subjects = (synthetic_subjects(overlays=args.overlay, threads=args.train_threads) if args.synthetic
                else real_subjects(args.subjects, overlays=args.overlay, threads=args.train_threads))
    if not subjects:
        print("# no subject to time: process subjects first (snakemake) or use --synthetic")
        return
    rows = []
    for name, (trials, settings) in subjects.items():
        est = registry.get("nmm").factory(settings)  # as the workflow builds it (mse settings included)
        t0 = time.perf_counter()
        est.fit(trials)
        train_s = time.perf_counter() - t0
        torch.set_num_threads(1)
        lat = latency(est, trials[0], repeats=args.repeats)
        tr = est.training_
        rows.append((name, len(trials[0].muscles), int((~est.module_.measured).sum().item()),
                     round(0.1 / trials[0].dt), tr.best_epoch, len(tr.history), train_s,
                     *lat["features+network"], *lat["network+physics"]))
    header = ("subject", "muscles", "estimated", "frames/100ms", "best epoch", "epochs", "train s",
              "feat+net median ms", "feat+net p95 ms", "net+phys median ms", "net+phys p95 ms")
    print(f"# torch {torch.__version__}; training on {args.train_threads or cfg['nmm']['threads']} "
          "thread(s), latency on 1 thread; "
          f"nmm: epochs {cfg['nmm']['epochs']}, window {cfg['nmm']['window']} s, "
          f"channels {cfg['nmm']['channels']}, dilations {cfg['nmm']['dilations']}, "
          f"output {cfg['nmm']['output']}, ensemble {cfg['nmm']['ensemble']} (training time for all "
          "networks; latency and best epoch of one network, an estimate runs each network once)")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        cells = [str(c) if not isinstance(c, float) else f"{c:.3f}" if c < 10 else f"{c:.1f}" for c in r]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
