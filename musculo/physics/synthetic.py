"""Small synthetic trials with known excitations, for tests and examples of the physics core.

Muscle excitations are non-negative mixtures of a few smooth periodic synergy activations; joint
moments are produced by :class:`musculo.physics.muscle.MuscleModel` with default parameters, so an
estimator that recovers the excitations also recovers the moments.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from musculo.io.atomic import atomic_output
from musculo.io.tables import write_sto
from musculo.physics.data import MuscleParameters, TrialData


def synthetic_trials(
    *,
    n_trials: int = 3,
    n_frames: int = 120,
    n_muscles: int = 6,
    n_synergies: int = 2,
    n_unmeasured: int = 2,
    rate: float = 60.0,
    seed: int = 0,
) -> list[TrialData]:
    """Trials of a two-coordinate (``hip``, ``knee``) model driven by synergy excitations.

    The last ``n_unmeasured`` muscles are marked unmeasured (their true excitation is kept in
    ``so_activation`` so that tests can compare with it). Every trial shares the muscles and their
    weights on the synergies; phases and speeds differ per trial.
    """
    from musculo.physics.muscle import model_for  # local: muscle imports this module's siblings

    rng = np.random.default_rng(seed)
    muscles = [f"m{i}" for i in range(n_muscles)]
    coords = ["hip", "knee"]
    params = MuscleParameters(
        max_isometric_force=rng.uniform(800, 2500, n_muscles),
        optimal_fiber_length=rng.uniform(0.08, 0.12, n_muscles),
        tendon_slack_length=rng.uniform(0.15, 0.25, n_muscles),
        pennation_angle=rng.uniform(0.0, 0.25, n_muscles),
        max_contraction_velocity=np.full(n_muscles, 10.0),
    )
    arm0 = rng.uniform(0.02, 0.05, (n_muscles, 2)) * rng.choice([-1.0, 1.0], (n_muscles, 2))
    arm0[rng.random((n_muscles, 2)) < 0.3] = 0.0
    arm0[np.abs(arm0).sum(axis=1) == 0, 0] = 0.03
    weights = rng.uniform(0.0, 1.0, (n_muscles, n_synergies)) ** 3
    weights /= weights.max(axis=1, keepdims=True)
    measured = np.ones(n_muscles, dtype=bool)
    measured[n_muscles - n_unmeasured:] = False
    trials = []
    for k in range(n_trials):
        time = np.arange(n_frames) / rate
        speed = rng.uniform(0.8, 1.2)
        phase = 2 * np.pi * speed * time + rng.uniform(0, 2 * np.pi)
        q = np.column_stack([0.4 * np.sin(phase), 0.6 * (1 - np.cos(phase)) / 2])
        qdot = np.gradient(q, time, axis=0)
        h = np.column_stack([
            0.05 + 0.7 * np.exp(-0.5 * (np.angle(np.exp(1j * (phase - 2 * np.pi * j / n_synergies))) / 0.6)
                                ** 2)
            for j in range(n_synergies)
        ])
        exc = np.clip(h @ weights.T, 0.0, 1.0)
        arm = arm0[None] * (1 + 0.2 * np.cos(q)[:, None, :])
        length0 = params.optimal_fiber_length * np.cos(params.pennation_angle) + params.tendon_slack_length
        mtu_length = length0[None] - np.einsum("tmc,tc->tm", arm, q)
        mtu_velocity = -np.einsum("tmc,tc->tm", arm, qdot)
        trial = TrialData(
            name=f"trial{k + 1}", time=time, coordinates=coords, muscles=muscles, q=q, qdot=qdot,
            mtu_length=mtu_length, mtu_velocity=mtu_velocity, moment_arm=arm,
            id_moment=np.zeros((n_frames, 2)), excitation=exc * measured, measured=measured.copy(),
            params=params, so_activation=exc,
        )
        model = model_for(trial)
        with torch.no_grad():
            out = model(torch.as_tensor(exc[None]), torch.as_tensor(mtu_length),
                        torch.as_tensor(mtu_velocity), torch.as_tensor(arm), trial.dt)
        moments = out.moments[0].numpy() + rng.normal(0, 0.5, (n_frames, 2))
        trials.append(TrialData(**{**trial.__dict__, "id_moment": moments}))
    return trials


def write_trial_dir(trial: TrialData, directory: str | os.PathLike[str]) -> Path:
    """Write a trial in the results contract (muscle_analysis.npz, id.sto, emg.sto, so_activation.sto)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    p = trial.params
    with atomic_output(d / "muscle_analysis.npz") as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle, time=trial.time, muscles=np.array(trial.muscles), coordinates=np.array(trial.coordinates),
            mtu_length=trial.mtu_length, mtu_velocity=trial.mtu_velocity,
            fiber_length=trial.mtu_length - p.tendon_slack_length, moment_arm=trial.moment_arm,
            max_isometric_force=p.max_isometric_force, optimal_fiber_length=p.optimal_fiber_length,
            tendon_slack_length=p.tendon_slack_length, pennation_angle=p.pennation_angle,
            max_contraction_velocity=p.max_contraction_velocity, q=trial.q, qdot=trial.qdot,
        )
    index = pd.Index(trial.time, name="time")
    write_sto(d / "id.sto", pd.DataFrame(trial.id_moment, index=index,
                                         columns=[f"{c}_moment" for c in trial.coordinates]))
    write_sto(d / "emg.sto", trial.excitation_frame())
    if trial.so_activation is not None:
        so = pd.DataFrame(trial.so_activation, index=index, columns=trial.muscles)
        write_sto(d / "so_activation.sto", so)
    return d
