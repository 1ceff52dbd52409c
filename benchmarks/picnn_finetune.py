"""PI-CNN transfer: seconds to fine-tune a generic model on a new subject (target <= 30 s on 2 cores).

Usage:
    python benchmarks/picnn_finetune.py --subjects twin-squat twin-slowsquat twin-sit2stand
    python benchmarks/picnn_finetune.py --synthetic            # no results needed
    python benchmarks/picnn_finetune.py --overlay config/ci.yaml --threads 1 2

With ``--subjects`` (EMG subjects of one cohort, processed up to static optimisation under ``results/``)
the last subject is the new one: a generic model is trained on the others (its time is listed too) and
fine-tuned on each share and choice of ``picnn`` settings on the new subject's every dynamic trial.
``--synthetic`` uses :func:`musculo.physics.synthetic.synthetic_trials` (10 muscles, 2 coordinates,
``--frames`` frames per trial). ``seconds`` is wall time of :func:`musculo.estimators.transfer.fine_tune`
(window building, the active choice, training), with ``--threads`` torch threads; ``cpu s`` the
process CPU time over the same span (on a shared, loaded machine wall time overstates the cost).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from musculo.estimators.transfer import GenericModel, common_muscle_set, fine_tune
from musculo.estimators.trials import load_trials
from musculo.physics.synthetic import synthetic_trials
from musculo.settings import load_settings
from musculo.subject import load_subject


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", nargs="*", default=[])
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--frames", type=int, default=600, help="frames per synthetic trial")
    ap.add_argument("--overlay", nargs="*", default=[])
    ap.add_argument("--threads", type=int, nargs="*", default=[2])
    args = ap.parse_args()
    settings = load_settings("config/config.yaml", args.overlay)
    if args.synthetic or not args.subjects:
        groups = {
            f"syn{i}": synthetic_trials(n_trials=2, n_frames=args.frames, n_muscles=10, seed=i)
            for i in range(4)
        }
    else:
        groups = {}
        for sid in args.subjects:
            subject = load_subject(Path("subjects", sid, "subject.yaml"))
            dirs = [Path("results", sid, t) for t in subject.trial_names("dynamic")]
            groups[sid] = load_trials(subject, dirs, settings=settings, with_so=True)
        groups = common_muscle_set(groups)
    new_id = list(groups)[-1]
    new = groups.pop(new_id)
    print(f"{'threads':>7} {'step':>10} {'share':>6} {'windows':>8} {'seconds':>8} {'cpu s':>8}")
    for threads in args.threads:
        cfg = dataclasses.replace(settings.picnn, threads=threads)
        torch.set_num_threads(threads)
        t0, c0 = time.perf_counter(), time.process_time()
        generic = GenericModel(cfg, physics=settings.physics, seed=settings.seed).fit(groups)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"{threads:>7} {'generic':>10} {'':>6} {'':>8} {seconds:8.2f} {cpu:8.2f}")
        for selection in cfg.selections:
            for share in cfg.shares:
                t0, c0 = time.perf_counter(), time.process_time()
                _, chosen = fine_tune(generic, new, share=share, selection=selection, seed=settings.seed)
                seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
                print(f"{threads:>7} {selection:>10} {share:6.2f} {len(chosen):>8} {seconds:8.2f} {cpu:8.2f}")


if __name__ == "__main__":
    main()
