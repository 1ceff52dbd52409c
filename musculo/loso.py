"""Cross-subject leave-one-subject-out (LOSO) evaluation of the ``attention`` and ``realtime`` estimators.

For a cohort of subjects (the digital twins, the biomechZoo children), each subject is left out in
turn; the estimators are trained on the other subjects' trials and predict the left-out subject's:

- ``attention``: synergy + multi-scale attention model without adaptation;
- ``attention_da``: the same with adversarial adaptation: the domains are subjects and the left-out
  subject's trials enter the domain discriminator unlabelled (their moments are never read);
- ``realtime``: the causal multi-task network, moments and activity (the trials' ``task``).

Trials of different subjects are brought to one layout (:func:`harmonise`): the union of the
cohort's measured muscles as inputs (zero where a subject has no usable channel), the coordinates
every subject tracks, and moments divided by body mass (N m/kg, multiplied back for the metrics).

Rows of ``loso.tsv``: ``cohort, subject, trial, method, quantity, channel, metric, value`` with
``quantity`` ``moment`` (channel: coordinate; metrics r2, rmse, r) or ``activity`` (channel
``all``; metrics accuracy and macro f1 over the subject's frames).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from musculo import logger
from musculo.errors import EstimatorError
from musculo.estimators.attention import AttentionEstimator
from musculo.estimators.realtime import RealtimeEstimator
from musculo.estimators.trials import load_trials
from musculo.evaluation import moment_metrics
from musculo.io.atomic import atomic_output
from musculo.physics.data import TrialData
from musculo.settings import Settings
from musculo.subject import Subject

LOSO_COLUMNS = ["cohort", "subject", "trial", "method", "quantity", "channel", "metric", "value"]
TWIN_TASKS = {"sit2stand": "sit-to-stand"}


def trial_task(subject: Subject, trial: str) -> str:
    """The ``task`` of a trial: its subject-file key, else a twin's movement name, else ``unknown``."""
    for t in subject.raw["trials"]:
        if t["name"] == trial and t.get("task"):
            return str(t["task"])
    movement = subject.raw.get("twin", {}).get("trials", {}).get(trial, {}).get("movement")
    return TWIN_TASKS.get(movement, movement) if movement else "unknown"


def harmonise(trials: Sequence[TrialData], *, muscles: Sequence[str], coordinates: Sequence[str],
              mass: float, prefix: str) -> list[TrialData]:
    """Trials on one cohort layout: ``muscles`` (EMG zero where absent), ``coordinates``, moments / mass."""
    out = []
    for t in trials:
        n, m = t.n_frames, len(muscles)
        exc = np.zeros((n, m))
        meas = np.zeros(m, dtype=bool)
        for j, name in enumerate(muscles):
            if name in t.muscles:
                i = t.muscles.index(name)
                exc[:, j], meas[j] = t.excitation[:, i], bool(t.measured[i])
        ci = [t.coordinates.index(c) for c in coordinates]
        zeros = np.zeros((n, m))
        out.append(replace(t, name=f"{prefix}/{t.name}", muscles=list(muscles), coordinates=list(coordinates),
                           q=t.q[:, ci], qdot=t.qdot[:, ci], id_moment=t.id_moment[:, ci] / mass,
                           excitation=exc, measured=meas, mtu_length=zeros, mtu_velocity=zeros,
                           moment_arm=np.zeros((n, m, len(coordinates))), so_activation=None))
    return out


def _f1_macro(y: Sequence[str], p: Sequence[str]) -> float:
    labels = sorted(set(y) | set(p))
    scores = []
    for lab in labels:
        tp = sum(a == lab and b == lab for a, b in zip(y, p, strict=True))
        fp = sum(a != lab and b == lab for a, b in zip(y, p, strict=True))
        fn = sum(a == lab and b != lab for a, b in zip(y, p, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0)
    return float(np.mean(scores)) if scores else float("nan")


def cohort_loso(
    *, cohort: str, subjects: Sequence[Subject], trial_dirs: Mapping[str, Sequence[str | os.PathLike[str]]],
    settings: Settings, output: str | os.PathLike[str],
    methods: Sequence[str] = ("attention", "attention_da", "realtime"),
) -> pd.DataFrame:
    """Leave each subject of ``subjects`` out in turn (see the module docstring); write ``output``."""
    if len(subjects) < 2:
        raise EstimatorError(f"cohort {cohort}: leave-one-subject-out needs at least two subjects with EMG "
                             f"(got {[s.id for s in subjects]})")
    loaded = {s.id: load_trials(s, trial_dirs[s.id], settings=settings) for s in subjects}
    muscles: list[str] = []
    for trials in loaded.values():
        for t in trials:
            muscles += [m for m, k in zip(t.muscles, t.measured, strict=True) if k and m not in muscles]
    first = next(iter(loaded.values()))[0]
    coords = [c for c in first.coordinates if all(c in t.coordinates for ts in loaded.values() for t in ts)]
    if not muscles or not coords:
        raise EstimatorError(f"cohort {cohort}: no measured muscle or no coordinate common to the subjects")
    mass = {s.id: s.mass for s in subjects}
    data = {s.id: harmonise(loaded[s.id], muscles=muscles, coordinates=coords, mass=mass[s.id], prefix=s.id)
            for s in subjects}
    tasks = {s.id: [trial_task(s, t.name) for t in loaded[s.id]] for s in subjects}
    rows: list[dict[str, Any]] = []
    att = settings.attention.to_dict()
    for left in subjects:
        train = [t for s in subjects if s.id != left.id for t in data[s.id]]
        domains = [s.id for s in subjects if s.id != left.id for _ in data[s.id]]
        test = data[left.id]
        for method in methods:
            logger.info("loso %s: %s left out, %s", cohort, left.id, method)
            if method == "attention":
                est: Any = AttentionEstimator(config={**att, "adversarial": False}, seed=settings.seed)
                est.fit(train, domains=domains)
            elif method == "attention_da":
                est = AttentionEstimator(config={**att, "adversarial": True}, seed=settings.seed)
                est.fit(train, domains=domains, target=test, target_domains=[left.id] * len(test))
            elif method == "realtime":
                est = RealtimeEstimator(config=settings.realtime.to_dict(), seed=settings.seed)
                est.fit(train, tasks=[k for s in subjects if s.id != left.id for k in tasks[s.id]])
            else:
                raise EstimatorError(f"loso: unknown method {method!r} (attention, attention_da, realtime)")
            truth_all: list[str] = []
            pred_all: list[str] = []
            for trial, task in zip(test, tasks[left.id], strict=True):
                pred = est.predict_moments(trial) * mass[left.id]
                ref = trial.id_moment * mass[left.id]
                for j, c in enumerate(coords):
                    for k, v in moment_metrics(pred[:, j], ref[:, j]).items():
                        if k in ("r2", "rmse", "r"):
                            rows.append({"cohort": cohort, "subject": left.id,
                                         "trial": trial.name.split("/")[-1],
                                         "method": method, "quantity": "moment", "channel": c, "metric": k,
                                         "value": v})
                if method == "realtime" and len(est.classes_) >= 2:
                    labels, _ = est.predict_activity(trial)
                    truth_all += [task] * len(labels)
                    pred_all += labels
            if pred_all:
                acc = float(np.mean([a == b for a, b in zip(truth_all, pred_all, strict=True)]))
                for k, v in (("accuracy", acc), ("f1", _f1_macro(truth_all, pred_all))):
                    rows.append({"cohort": cohort, "subject": left.id, "trial": "all", "method": method,
                                 "quantity": "activity", "channel": "all", "metric": k, "value": v})
    table = pd.DataFrame(rows, columns=LOSO_COLUMNS)
    with atomic_output(Path(output)) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    return table
