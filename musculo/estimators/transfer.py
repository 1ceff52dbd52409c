"""Generic-to-personal transfer of the PI-CNN (after Zhang et al., IEEE TIM 2023), and its protocol.

A *generic* PI-CNN (:mod:`musculo.estimators.picnn`) is trained on every trial of the other subjects of
a cohort (subjects sharing a muscle set, coordinates and EMG channels). For the left-out subject, the
feature-extraction layers (``net.features``) are inherited frozen and only the subject-specific head
(``net.head``) is fine-tuned, with the same data + physics loss, on a share of the subject's training
windows. The windows are chosen randomly or *actively*: those with the largest physics residual
(:func:`musculo.estimators.picnn.physics_loss` per window) under the generic model, kept apart so
that they cover distinct stretches of the trials (:func:`active_choice`).

:func:`transfer_evaluation` runs the protocol for one subject on the evaluation folds
(:func:`musculo.evaluation.make_folds`): from scratch on the fold's training trials, the generic model
without fine-tuning, and the transfer fine-tuned on each share and choice; each is scored on the fold's
held-out trials (angles, moments, forces). Rows use the columns of ``evaluation.tsv`` with ``method``
``picnn_transfer@<variant>-<percent>`` (variants ``scratch``, ``generic``, ``random``, ``active``).
"""

from __future__ import annotations

import copy
import fnmatch
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import torch

from musculo import logger
from musculo.errors import EstimatorError
from musculo.estimators.picnn import (
    MomentArmModel,
    Normaliser,
    PICNNEstimator,
    PICNNNet,
    joint_moments,
    new_net,
    outputs,
    reference_forces,
    subject_tensors,
    torch_threads,
    train,
)
from musculo.io.atomic import atomic_output
from musculo.io.tables import EVALUATION_COLUMNS
from musculo.physics.data import TrialData
from musculo.settings import PhysicsSettings, PICNNSettings

METHOD = "picnn_transfer"
GENERIC_WEIGHTS = "generic.pt"
GENERIC_STATE = "generic.json"


def cohort_members(cohorts: Mapping[str, Sequence[str]], subjects: Sequence[str]) -> dict[str, list[str]]:
    """Cohort name -> the ``subjects`` matching any of its shell-style patterns (sorted)."""
    return {
        name: sorted(s for s in subjects if any(fnmatch.fnmatchcase(s, p) for p in patterns))
        for name, patterns in cohorts.items()
    }


def cohort_of(cohorts: Mapping[str, Sequence[str]], subject: str) -> str | None:
    """The first cohort whose patterns match ``subject`` (None: in no cohort)."""
    for name, patterns in cohorts.items():
        if any(fnmatch.fnmatchcase(subject, p) for p in patterns):
            return name
    return None


class GenericModel:
    """A PI-CNN trained on several subjects: shared weights and normaliser, no subject's moment arms."""

    def __init__(self, cfg: PICNNSettings, *, physics: PhysicsSettings | None = None, seed: int = 0):
        self.cfg, self.physics, self.seed = cfg, physics, int(seed)
        self.muscles_: list[str] = []
        self.coordinates_: list[str] = []
        self.subjects_: list[str] = []
        self.net_: PICNNNet | None = None
        self.norm_: Normaliser | None = None

    def fit(self, groups: Mapping[str, Sequence[TrialData]]) -> Self:
        """Train on every trial of each subject of ``groups`` (subject id -> trials).

        A subject none of whose muscles has EMG in any trial (every channel failed quality) teaches
        the shared EMG features nothing: it is left out, with a warning.
        """
        silent = sorted(sid for sid, trials in groups.items() if not any(np.any(t.measured) for t in trials))
        if silent:
            logger.warning("picnn generic model: %s left out (no usable EMG)", silent)
            groups = {sid: trials for sid, trials in groups.items() if sid not in silent}
        if not groups:
            raise EstimatorError("picnn generic model: no training subjects with usable EMG")
        first = next(iter(groups.values()))[0]
        for sid, trials in groups.items():
            for t in trials:
                if list(t.muscles) != list(first.muscles) or list(t.coordinates) != list(first.coordinates):
                    raise EstimatorError(
                        f"picnn generic model: subject {sid} trial {t.name} models muscles {t.muscles} and "
                        f"coordinates {t.coordinates}, unlike {first.muscles} / {first.coordinates}; "
                        "a cohort must share them (fix picnn.cohorts or the subject files)"
                    )
        self.muscles_, self.coordinates_ = list(first.muscles), list(first.coordinates)
        self.subjects_ = list(groups)
        data = subject_tensors(
            list(groups.values()), width=self.cfg.window, stride=self.cfg.stride, physics=self.physics
        )
        self.norm_ = Normaliser.of(data)
        self.net_ = new_net(len(self.muscles_), len(self.coordinates_), self.cfg, self.seed)
        with torch_threads(self.cfg.threads):
            parts = train(
                self.net_,
                self.norm_,
                data,
                self.cfg,
                epochs=self.cfg.epochs,
                learning_rate=self.cfg.learning_rate,
                seed=self.seed,
                min_steps=self.cfg.min_steps,
            )
        logger.info("picnn generic model: %d subjects, %d samples, losses %s", len(groups), len(data), parts)
        return self

    def personal(self, trials: Sequence[TrialData]) -> PICNNEstimator:
        """The generic network as a subject's estimator (its moment arms from ``trials``), not fine-tuned."""
        if self.net_ is None or self.norm_ is None:
            raise EstimatorError("picnn generic model: used before fit (or load)")
        est = PICNNEstimator(self.cfg, physics=self.physics, seed=self.seed)
        est.muscles_, est.coordinates_ = list(self.muscles_), list(self.coordinates_)
        if list(trials[0].muscles) != est.muscles_ or list(trials[0].coordinates) != est.coordinates_:
            raise EstimatorError(
                f"picnn transfer: trial {trials[0].name} models {trials[0].muscles} / "
                f"{trials[0].coordinates}, "
                f"the generic model {est.muscles_} / {est.coordinates_}"
            )
        est.net_ = copy.deepcopy(self.net_)
        est.norm_ = self.norm_
        est.arms_ = MomentArmModel.fit(trials)
        return est

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write ``generic.json`` and ``generic.pt``."""
        if self.net_ is None or self.norm_ is None:
            raise EstimatorError("picnn generic model: nothing to save before fit")
        d = Path(directory)
        with atomic_output(d / GENERIC_WEIGHTS) as tmp:
            torch.save(self.net_.state_dict(), tmp)
        state = {
            "seed": self.seed,
            "settings": self.cfg.to_dict(),
            "physics": None if self.physics is None else self.physics.to_dict(),
            "muscles": self.muscles_,
            "coordinates": self.coordinates_,
            "subjects": self.subjects_,
            "normaliser": self.norm_.to_dict(),
        }
        with atomic_output(d / GENERIC_STATE) as tmp:
            tmp.write_text(json.dumps(state, indent=1))

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> GenericModel:
        """Read a model written by :meth:`save`."""
        d = Path(directory)
        for name in (GENERIC_STATE, GENERIC_WEIGHTS):
            if not (d / name).is_file():
                raise EstimatorError(
                    f"{d / name}: not found; run the cohort_picnn rule for this cohort first"
                )
        state = json.loads((d / GENERIC_STATE).read_text())
        physics = None if state["physics"] is None else PhysicsSettings.from_config(state["physics"])
        model = cls(PICNNSettings.from_config(state["settings"]), physics=physics, seed=state["seed"])
        model.muscles_, model.coordinates_ = state["muscles"], state["coordinates"]
        model.subjects_ = state["subjects"]
        model.norm_ = Normaliser.from_dict(state["normaliser"])
        model.net_ = new_net(len(model.muscles_), len(model.coordinates_), model.cfg, model.seed)
        model.net_.load_state_dict(torch.load(d / GENERIC_WEIGHTS, weights_only=True))
        model.net_.eval()
        return model


def window_residuals(est: PICNNEstimator, trials: Sequence[TrialData]) -> np.ndarray:
    """Per training window (every ``stride`` frames of ``trials``), the squared physics residual."""
    data = subject_tensors(
        [trials], width=est.cfg.window, stride=est.cfg.stride, physics=est.physics, with_targets=False
    )
    with torch.no_grad(), torch_threads(est.cfg.threads):
        q, f = outputs(est.net_, est.norm_, data.x, data.fmax[data.subject])  # type: ignore[arg-type]
        tau = joint_moments(f, q, data.coef[data.subject])
        res = ((tau - data.tau) / data.tau_scale[data.subject]) ** 2
    return res.mean(dim=1).numpy()


def active_choice(residual: np.ndarray, n: int, *, spacing: int) -> np.ndarray:
    """``n`` window indices, the largest ``residual`` first, no two closer than ``spacing``.

    Windows one frame apart share all but one of their frames, so the plain top-``n`` by residual
    piles up on the single worst-fitted stretch of a trial; keeping them ``spacing`` apart spends
    the budget on distinct poorly fitted stretches. When fewer than ``n`` windows are that far
    apart, the rest follow by residual alone.
    """
    order = np.argsort(-np.asarray(residual), kind="stable")
    blocked = np.zeros(len(order), dtype=bool)
    picked: list[int] = []
    for i in order:
        if len(picked) < n and not blocked[i]:
            picked.append(int(i))
            blocked[max(0, i - spacing + 1):i + spacing] = True
    chosen = set(picked)
    rest = [int(i) for i in order if int(i) not in chosen][: n - len(picked)]
    return np.sort(np.asarray(picked + rest, dtype=int))


def fine_tune(
    generic: GenericModel, trials: Sequence[TrialData], *, share: float, selection: str, seed: int
) -> tuple[PICNNEstimator, np.ndarray]:
    """The generic model fine-tuned (head only, features frozen) on ``share`` of the windows of ``trials``.

    Returns the estimator and the indices of the windows it was fine-tuned on.
    """
    if selection not in ("random", "active"):
        raise EstimatorError(f"picnn.selections: unknown selection {selection!r} (random, active)")
    est = generic.personal(trials)
    cfg = est.cfg
    data = subject_tensors([trials], width=cfg.window, stride=cfg.stride, physics=est.physics)
    n = max(1, math.ceil(share * len(data)))
    if selection == "active":
        spacing = max(1, min(int(cfg.window), len(data) // n))
        chosen = active_choice(window_residuals(est, trials), n, spacing=spacing)
    else:
        chosen = np.sort(np.random.default_rng(seed).choice(len(data), size=n, replace=False))
    net = est.net_
    assert net is not None
    for p in net.features.parameters():
        p.requires_grad_(False)
    with torch_threads(cfg.threads):
        est.losses_ = train(
            net,
            est.norm_,
            data.take(chosen),
            cfg,
            epochs=cfg.finetune_epochs,  # type: ignore[arg-type]
            learning_rate=cfg.finetune_learning_rate,
            seed=seed,
            parameters=list(net.head.parameters()),
            min_steps=cfg.finetune_min_steps,
        )
    return est, chosen


# --- metrics and the protocol --------------------------------------------------------------------
def _r2(p: np.ndarray, y: np.ndarray) -> float:
    ss = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((p - y) ** 2)) / ss if ss > 0 else float("nan")


def _r(p: np.ndarray, y: np.ndarray) -> float:
    if np.std(p) < 1e-12 or np.std(y) < 1e-12:
        return float("nan")
    return float(np.corrcoef(p, y)[0, 1])


def trial_metrics(
    est: PICNNEstimator, trial: TrialData, reference_force: np.ndarray
) -> list[tuple[str, str, str, float]]:
    """(quantity, channel, metric, value): angles (deg), moments (N m, % of peak), forces on ``trial``."""
    out = est.predict_arrays(trial)
    rows: list[tuple[str, str, str, float]] = []
    for j, c in enumerate(trial.coordinates):
        pa, ya = np.degrees(out["angles"][:, j]), np.degrees(trial.q[:, j])
        rows += [
            ("angle", c, "rmse", float(np.sqrt(np.mean((pa - ya) ** 2)))),
            ("angle", c, "r2", _r2(pa, ya)),
            ("angle", c, "r", _r(pa, ya)),
        ]
        pm, ym = out["moments"][:, j], trial.id_moment[:, j]
        rmse = float(np.sqrt(np.mean((pm - ym) ** 2)))
        peak = float(np.abs(ym).max())
        rows += [
            ("moment", c, "rmse", rmse),
            ("moment", c, "pct_peak", 100 * rmse / peak if peak > 0 else math.nan),
            ("moment", c, "r2", _r2(pm, ym)),
            ("moment", c, "r", _r(pm, ym)),
        ]
    for i, m in enumerate(trial.muscles):
        pf, yf = out["forces"][:, i], reference_force[:, i]
        rows += [("force", m, "r", _r(pf, yf)), ("force", m, "rmse", float(np.sqrt(np.mean((pf - yf) ** 2))))]
    return rows


def transfer_evaluation(
    *,
    subject: str,
    folds: Sequence[tuple[list[TrialData], list[TrialData]]],
    cfg: PICNNSettings,
    physics: PhysicsSettings | None,
    seed: int,
    generic: GenericModel | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The transfer protocol for one subject (see module docstring).

    Returns the ``evaluation.tsv`` rows and a timing table (variant, share, fold, seconds, windows).
    ``generic`` None (a subject in no cohort) runs from scratch only.
    """
    rows: list[dict[str, Any]] = []
    timings: list[dict[str, Any]] = []

    def score(est: PICNNEstimator, method: str, tests: Sequence[TrialData]) -> None:
        for trial in tests:
            for quantity, channel, metric, value in trial_metrics(
                est, trial, reference_forces(trial, physics)
            ):
                rows.append(
                    {
                        "subject": subject,
                        "trial": trial.name,
                        "method": method,
                        "quantity": quantity,
                        "channel": channel,
                        "metric": metric,
                        "value": value,
                    }
                )

    for k, (train_trials, test_trials) in enumerate(folds):
        t0 = time.perf_counter()
        scratch = PICNNEstimator(cfg, physics=physics, seed=seed).fit(train_trials)
        timings.append({"variant": "scratch", "share": 1.0, "fold": k, "seconds": time.perf_counter() - t0})
        score(scratch, f"{METHOD}@scratch-100", test_trials)
        if generic is None:
            continue
        score(generic.personal(train_trials), f"{METHOD}@generic-0", test_trials)
        for selection in cfg.selections:
            for share in cfg.shares:
                t0 = time.perf_counter()
                est, chosen = fine_tune(
                    generic, train_trials, share=share, selection=selection, seed=seed + k
                )
                timings.append(
                    {
                        "variant": selection,
                        "share": share,
                        "fold": k,
                        "seconds": time.perf_counter() - t0,
                        "windows": len(chosen),
                    }
                )
                score(est, f"{METHOD}@{selection}-{round(100 * share):d}", test_trials)
    return pd.DataFrame(rows, columns=EVALUATION_COLUMNS), pd.DataFrame(timings)


def share_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Means over trials and channels of the angle, moment and force metrics per variant and share."""
    if table.empty:
        return pd.DataFrame(columns=["subject", "variant", "share", "quantity", "metric", "value"])
    t = table.copy()
    parts = t["method"].str.split("@", n=1).str[1].str.rsplit("-", n=1)
    t["variant"], t["share"] = parts.str[0], parts.str[1].astype(float)
    keep = t[t["quantity"].isin(["angle", "moment", "force"])]
    return keep.groupby(["subject", "variant", "share", "quantity", "metric"], as_index=False)["value"].mean(
        numeric_only=True
    )


def common_muscle_set(groups: Mapping[str, Sequence[TrialData]]) -> dict[str, list[TrialData]]:
    """Every subject's trials restricted to the muscles and coordinates all of ``groups`` model.

    Channels that failed quality in one subject leave that subject's muscle set smaller; the cohort
    shares what every member models (in the order of the first member). Raises naming the subjects when
    nothing is shared.
    """
    if not groups:
        raise EstimatorError("picnn cohort: no subjects")
    first = next(iter(groups.values()))[0]
    muscles = [m for m in first.muscles if all(m in t.muscles for ts in groups.values() for t in ts)]
    coords = [c for c in first.coordinates if all(c in t.coordinates for ts in groups.values() for t in ts)]
    if not muscles or not coords:
        raise EstimatorError(
            f"picnn cohort {sorted(groups)}: no muscle or coordinate is modelled by every "
            "subject; fix picnn.cohorts so that a cohort shares a model and EMG channels"
        )
    if coords != list(first.coordinates) or any(
        list(t.coordinates) != coords for ts in groups.values() for t in ts
    ):
        raise EstimatorError(
            f"picnn cohort {sorted(groups)}: subjects track different coordinates; "
            "give them the same `coordinates` in their subject files"
        )
    return {sid: [t.select(muscles) for t in ts] for sid, ts in groups.items()}
