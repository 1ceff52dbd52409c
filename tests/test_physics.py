"""Physics core: curves, activation dynamics, force, moment sum, bounds, trial loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import settings

from musculo.errors import InputDataError
from musculo.estimators.calibration import calibrate
from musculo.physics.data import load_trial, load_trial_dir
from musculo.physics.muscle import (
    DTYPE,
    MuscleModel,
    PhysicsBounds,
    active_force_length,
    force_velocity,
    model_for,
    passive_force_length,
    trial_tensors,
)
from musculo.physics.synthetic import synthetic_trials, write_trial_dir


def t(x):
    return torch.as_tensor(np.asarray(x, dtype=float), dtype=DTYPE)


def test_force_length_velocity_curves():
    lengths = t(np.linspace(0.4, 1.8, 141))
    fl = active_force_length(lengths).numpy()
    assert abs(lengths[np.argmax(fl)].item() - 1.0) < 0.05
    assert fl.max() == pytest.approx(1.0, abs=0.02)
    assert fl[0] < 0.1 and fl[-1] < 0.25
    fp = passive_force_length(lengths).numpy()
    assert np.all(fp[lengths.numpy() <= 1.0] == 0.0)
    assert passive_force_length(t(1.6)).item() == pytest.approx(1.0, abs=1e-9)
    assert np.all(np.diff(fp) >= 0)
    assert force_velocity(t(0.0)).item() == pytest.approx(1.0, abs=0.01)
    assert force_velocity(t(-1.0)).item() == pytest.approx(0.0, abs=0.02)
    assert 1.3 < force_velocity(t(1.0)).item() < 1.9
    assert np.all(np.diff(force_velocity(t(np.linspace(-1, 1, 50))).numpy()) > 0)


def test_moment_is_sum_of_arm_times_force():
    rng = np.random.default_rng(1)
    arms = rng.normal(0, 0.05, (2, 7, 4, 3))
    force = rng.uniform(0, 1000, (2, 7, 4))
    expected = np.zeros((2, 7, 3))
    for m in range(4):
        expected += arms[:, :, m, :] * force[:, :, m, None]
    np.testing.assert_allclose(MuscleModel.moments(t(force), t(arms)).numpy(), expected, rtol=1e-12)


def test_activation_time_constants_and_force():
    trial = synthetic_trials(n_trials=1, n_frames=200, rate=1000.0)[0]
    model = model_for(trial, physics={"tau_act": 0.02})
    step = torch.zeros((1, 200, 6), dtype=DTYPE)
    step[:, 1:100] = 1.0
    act = model.activation(step, 0.001)[0, :, 0].detach().numpy()
    # After one activation time constant (20 ms) a step reaches 1 - 1/e; deactivation is 4x slower.
    assert act[21] == pytest.approx(1 - np.exp(-1), abs=0.02)
    drop = act[99] - act[99 + 80]
    assert drop / act[99] == pytest.approx(1 - np.exp(-1), abs=0.03)
    # Isometric at optimal fibre length, full activation: force = Fmax * cos(pennation).
    p = trial.params
    length = p.optimal_fiber_length * np.cos(p.pennation_angle) + p.tendon_slack_length
    ones, still = t(np.ones((1, 1, 6))), t(np.zeros((1, 1, 6)))
    f = model.force(ones, t(length[None, None]), still)[0, 0].detach().numpy()
    np.testing.assert_allclose(f, p.max_isometric_force * np.cos(p.pennation_angle), rtol=0.03)
    # Strength scale multiplies force.
    model.strength_scale.set(np.full(6, 1.5))
    f2 = model.force(ones, t(length[None, None]), still)[0, 0].detach().numpy()
    np.testing.assert_allclose(f2, 1.5 * f, rtol=1e-9)


def test_bounded_parameters_stay_in_bounds_under_optimisation():
    trial = synthetic_trials(n_trials=1)[0]
    bounds = PhysicsBounds.from_config({"strength_scale": [0.8, 1.2]})
    model = MuscleModel(trial.params, trial.muscles, bounds=bounds)
    tt = trial_tensors(trial)
    opt = torch.optim.Adam([model.strength_scale.raw], lr=1.0)
    for _ in range(30):
        opt.zero_grad()
        out = model(tt.excitation, tt.mtu_length, tt.mtu_velocity, tt.moment_arm, tt.dt)
        (-out.moments.abs().sum()).backward()  # pushes strength upwards without limit
        opt.step()
    s = model.strength_scale.value.detach().numpy()
    assert np.all(s <= 1.2) and np.all(s >= 0.8) and s.max() > 1.15
    values = model.to_dict()
    other = MuscleModel(trial.params, trial.muscles, bounds=bounds)
    other.load_dict(json.loads(json.dumps(values)))
    np.testing.assert_allclose(other.strength_scale.value.detach().numpy(), s, rtol=1e-6)


def test_delay_shifts_excitation():
    trial = synthetic_trials(n_trials=1, n_frames=50)[0]
    model = model_for(trial, physics={"use_delay": True, "delay": 0.05, "tau_act": 0.0075})
    u = torch.zeros((1, 50, 6), dtype=DTYPE)
    u[:, 20:] = 1.0
    act = model.activation(u, 0.01)[0, :, 0].detach().numpy()
    assert act[24] < 1e-3 < act[26]


def test_load_trial_round_trip(tmp_path):
    trial = synthetic_trials(n_trials=1)[0]
    d = write_trial_dir(trial, tmp_path / "walk1")
    back = load_trial_dir(d, window="all", with_so=True)
    assert back.name == "walk1" and back.coordinates == trial.coordinates and back.muscles == trial.muscles
    np.testing.assert_allclose(back.id_moment, trial.id_moment, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(back.measured, trial.measured)
    np.testing.assert_allclose(back.excitation, trial.excitation, atol=1e-7)
    np.testing.assert_allclose(back.so_activation, trial.so_activation, atol=1e-7)
    np.testing.assert_allclose(back.moment_arm, trial.moment_arm)
    only_knee = load_trial(muscle_analysis=d / "muscle_analysis.npz", inverse_dynamics=d / "id.sto",
                           coordinates=["knee"])
    assert only_knee.moment_arm.shape[2] == 1 and not only_knee.measured.any()
    with pytest.raises(InputDataError, match="ankle"):
        load_trial(muscle_analysis=d / "muscle_analysis.npz", inverse_dynamics=d / "id.sto",
                   coordinates=["ankle"])


def test_calibration_recovers_strength():
    trials = synthetic_trials(n_trials=2, n_unmeasured=0, seed=3)
    weak = [t.__class__(**{**t.__dict__, "id_moment": t.id_moment * 1.3}) for t in trials]
    physics = {"calibrate": ["strength_scale"], "calibration_max_iter": 60, "prior_weight": 0.0}
    rec = calibrate(trials=weak, settings=settings(physics=physics, mse={"n_synergies": 2}))
    strength = np.array(list(rec["parameters"]["strength_scale"].values()))
    # Moments 1.3x larger than the nominal model: the fitted strength rises by about that factor.
    assert np.median(strength) == pytest.approx(1.3, abs=0.1)
    json.dumps(rec)


def test_change_penalty_is_zero_at_the_start_and_grows_with_the_change():
    """The calibration's prior: mean squared change of the trainable parameters (fraction of range)."""
    trial = synthetic_trials(n_trials=1, seed=3)[0]
    phys = model_for(trial)
    phys.set_trainable(["strength_scale"])
    penalty = phys.change_penalty()
    assert float(penalty().detach()) == 0.0
    lo, hi = phys.bounds.strength_scale
    phys.strength_scale.set(phys.strength_scale.value.detach() + 0.1 * (hi - lo))
    assert float(penalty().detach()) == pytest.approx(0.01, rel=1e-3)
    phys.set_trainable([])
    assert float(phys.change_penalty()().detach()) == 0.0


def _reference_activation(u, alpha_a, alpha_d):
    """Per-frame autograd recursion (the definition the fast dynamics must match)."""
    a = u[:, 0]
    out = [a]
    for t in range(1, u.shape[1]):
        a = a + (u[:, t] - a) * torch.where(u[:, t] > a, alpha_a, alpha_d)
        out.append(a)
    return torch.stack(out, dim=1)


def test_fast_activation_dynamics_match_the_recursion_and_its_gradient():
    from musculo.physics.muscle import first_order_activation

    gen = torch.Generator().manual_seed(0)
    u = torch.rand((2, 40, 3), generator=gen, dtype=torch.float64).requires_grad_(True)
    tau = torch.tensor(0.02, dtype=torch.float64, requires_grad=True)
    weights = torch.rand((2, 40, 3), generator=gen, dtype=torch.float64)

    def run(fn):
        alpha_a = 1 - torch.exp(-0.01 / tau)
        alpha_d = 1 - torch.exp(-0.01 / (4 * tau))
        a = fn(u, alpha_a, alpha_d)
        loss = (weights * a**2).sum()
        gu, gtau = torch.autograd.grad(loss, (u, tau))
        return a.detach(), gu, gtau

    fast, ref = run(first_order_activation), run(_reference_activation)
    for x, y in zip(fast, ref, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda x, aa, ad: first_order_activation(x, aa, ad),
        (u[:1, :12].detach().clone().requires_grad_(True),
         torch.tensor(0.4, dtype=torch.float64, requires_grad=True),
         torch.tensor(0.1, dtype=torch.float64, requires_grad=True)))


def test_tables_rounding_times_differently_still_align(tmp_path):
    import pandas as pd

    from musculo.io.tables import write_sto

    trial = synthetic_trials(n_trials=1, n_frames=30)[0]
    d = write_trial_dir(trial, tmp_path / "t")
    emg = trial.excitation_frame()
    write_sto(d / "emg.sto", emg.set_axis(emg.index + 2e-6, axis=0))  # starts 2 us after the MA
    loaded = load_trial(muscle_analysis=d / "muscle_analysis.npz", inverse_dynamics=d / "id.sto",
                        emg=d / "emg.sto")
    np.testing.assert_allclose(loaded.excitation[0], trial.excitation[0], atol=1e-3)
    shifted = emg.set_axis(emg.index - 0.7 * trial.dt, axis=0)  # OpenSim ID's own grid: held at the end
    write_sto(d / "emg.sto", pd.DataFrame(shifted))
    loaded = load_trial(muscle_analysis=d / "muscle_analysis.npz", inverse_dynamics=d / "id.sto",
                        emg=d / "emg.sto")
    assert loaded.excitation.shape == trial.excitation.shape
    late = emg.set_axis(emg.index + 1.5 * trial.dt, axis=0)  # more than one sample late
    write_sto(d / "emg.sto", pd.DataFrame(late))
    with pytest.raises(InputDataError, match="does not cover"):
        load_trial(muscle_analysis=d / "muscle_analysis.npz", inverse_dynamics=d / "id.sto",
                   emg=d / "emg.sto")


def test_contact_window_keeps_force_plate_frames(tmp_path):
    import pandas as pd

    from musculo.io.tables import write_sto
    from musculo.physics.data import contact_window

    trial = synthetic_trials(n_trials=1, n_frames=60)[0]  # 0 .. 0.983 s at 60 Hz
    d = write_trial_dir(trial, tmp_path / "t")
    (d / "events.json").write_text(json.dumps(
        {"right": {"strike": [0.2], "off": [0.6]}, "left": {"strike": [0.5], "off": [0.8]}}))
    assert contact_window(d / "events.json") == (0.2, 0.8)
    cropped = load_trial_dir(d, window="contact")
    assert cropped.name == "t"
    assert cropped.time[0] >= 0.2 - 1e-9 and cropped.time[-1] <= 0.8 + 1e-9
    assert cropped.n_frames == int(np.sum((trial.time >= 0.2 - 1e-9) & (trial.time <= 0.8 + 1e-9)))
    np.testing.assert_allclose(cropped.id_moment, trial.id_moment[12:49], rtol=1e-5, atol=1e-6)
    assert load_trial_dir(d, window="all").n_frames == 60
    # A strike marked only by the C3D file's events (right foot at 0.65 s) loads a foot that no
    # plate measures: the window ends where the ground reactions stop being the ones the feet bear.
    t = np.round(np.arange(0.0, 1.0, 0.01), 4)
    def load(a, b):
        return np.where((t >= a - 1e-9) & (t <= b + 1e-9), 300.0, 0.0)

    grf = {"ground_force_r_vy": load(0.2, 0.6), "ground_force_r_py": 0 * t,
           "ground_force_l_vy": load(0.5, 0.8)}
    write_sto(d / "grf.mot", pd.DataFrame(grf, index=pd.Index(t, name="time")))
    assert contact_window(d / "events.json", grf=d / "grf.mot") == (0.2, 0.8)  # events and plates agree
    (d / "events.json").write_text(json.dumps(
        {"right": {"strike": [0.2, 0.65], "off": [0.6]}, "left": {"strike": [0.5], "off": [0.8]}}))
    assert contact_window(d / "events.json") == (0.2, 0.8)
    assert contact_window(d / "events.json", grf=d / "grf.mot") == (0.2, 0.7)
    # Within the frames a trial holds (a window cut short): the measured part of them, or none.
    assert contact_window(d / "events.json", grf=d / "grf.mot", within=(0.0, 0.3)) == (0.2, 0.3)
    assert contact_window(d / "events.json", grf=d / "grf.mot", within=(0.75, 0.99)) is None
    measured = load_trial_dir(d, window="contact")
    assert measured.time[0] >= 0.2 - 1e-9 and measured.time[-1] <= 0.7 + 1e-9
    assert measured.n_frames == int(np.sum((trial.time >= 0.2 - 1e-9) & (trial.time <= 0.7 + 1e-9)))
    (d / "grf.mot").unlink()
    (d / "events.json").write_text(json.dumps({"right": {"strike": [], "off": []}, "left": {}}))
    assert load_trial_dir(d, window="contact").n_frames == 60  # no contact: every frame, warned
    with pytest.raises(InputDataError, match="physics.window"):
        load_trial_dir(d, window="stance")
