"""Evaluation protocol: folds, metrics, leave-one-muscle-out, determinism of evaluation.tsv."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import settings, synthetic_subject

from musculo.evaluation import (
    COLUMNS,
    concatenate_evaluations,
    excitation_metrics,
    make_folds,
    moment_metrics,
    run_evaluation,
)
from musculo.physics.synthetic import synthetic_trials, write_trial_dir


def test_metrics():
    y = np.sin(np.linspace(0, 6, 100)) * 10
    m = moment_metrics(y + 1.0, y)
    assert m["rmse"] == pytest.approx(1.0) and m["r"] == pytest.approx(1.0)
    assert m["nrmse"] == pytest.approx(100 / np.ptp(y))
    assert m["r2"] == pytest.approx(1 - 100 / np.sum((y - y.mean()) ** 2))
    assert m["rmse_pct_peak"] == pytest.approx(100 / np.max(np.abs(y)))
    e = excitation_metrics(0.5 * np.abs(y), np.abs(y))
    assert e["r"] == pytest.approx(1.0) and e["vaf"] == pytest.approx(0.75)
    # active-period metrics: only frames where the reference is at least ACTIVE_THRESHOLD count
    ref = np.r_[np.zeros(50), np.full(50, 0.5)]
    pred = np.r_[np.full(50, 0.3), np.linspace(0.4, 0.6, 50)]
    e = excitation_metrics(pred, ref)
    assert e["active_share"] == pytest.approx(0.5) and e["mean_active"] == pytest.approx(0.5)
    assert e["mean_active_reference"] == pytest.approx(0.5)
    assert e["rmse_active"] == pytest.approx(np.sqrt(np.mean((pred[50:] - 0.5) ** 2)))
    silent = excitation_metrics(pred, np.zeros(100))  # a silent target: no active-period score
    assert np.isnan(silent["r_active"]) and silent["active_share"] == 0.0


def test_stance_and_swing_rows_from_gait_events():
    from dataclasses import replace

    from musculo.evaluation import moment_rows_of, phase_masks

    trial = synthetic_trials(n_trials=1, n_frames=100)[0]
    t = trial.time
    trial = replace(trial, events={"right": {"strike": [float(t[10])], "off": [float(t[60])]}})
    masks = phase_masks(trial, "knee_angle_r")
    assert masks["stance"].sum() == 50 and masks["swing"].sum() == 50  # frames 0-9 are the swing before
    assert phase_masks(trial, "knee_angle_l") == {} and phase_masks(trial, "pelvis_tilt") == {}
    y = np.sin(np.linspace(0, 6, 100)) * 10
    p = y.copy()
    p[masks["swing"]] += 2.0  # errors only in swing
    rows = moment_rows_of(trial, "knee_angle_r", p, y)
    assert rows["rmse_stance"] == pytest.approx(0.0) and rows["rmse_swing"] == pytest.approx(2.0)
    assert {"rmse", "rmse_pct_peak", "r2", "rmse_pct_peak_stance", "rmse_pct_peak_swing"} <= set(rows)
    assert rows["rmse_pct_peak_swing"] == pytest.approx(200.0 / np.max(np.abs(y)))


def test_held_out_emg_never_shapes_its_fold(tmp_path):
    """Changing a held-out trial's EMG leaves its fold's normalisation and fitted model unchanged,
    although the EMG stage's subject-wide divisor (peak over every walk) changes."""
    import json
    from dataclasses import replace

    from musculo.estimators.mse import MSEEstimator
    from musculo.estimators.trials import fold_normalise, load_trials
    from musculo.io.tables import read_sto

    trials = synthetic_trials(n_trials=3, n_frames=50, n_muscles=7, n_unmeasured=2, seed=3)
    subject = SUBSET(tmp_path)
    raw = [0.8 * t.excitation for t in trials]  # envelopes before normalisation (arbitrary units)

    def stage(name, envelopes):
        """The EMG stage's output: emg.sto divided by the peak over every trial, and its record."""
        peak = np.max([e.max(axis=0) for e in envelopes], axis=0)
        data = tmp_path / name / "results"
        dirs = [write_trial_dir(replace(t, excitation=e / np.where(peak > 0, peak, 1.0)), data / t.name)
                for t, e in zip(trials, envelopes, strict=True)]
        record = {f"c{i}": {"divisor": float(peak[i]), "method": "peak", "trials": [t.name for t in trials]}
                  for i in range(4)}
        (data / "emg_normalisation.json").write_text(json.dumps(record))
        return load_trials(subject, dirs, settings=settings(), muscle_set="subject"), dirs

    loud = list(raw)
    loud[2] = 3.0 * raw[2]  # the held-out trial3, three times louder
    runs = [stage("a", raw), stage("b", loud)]
    # not vacuous: the stage's subject-wide normalisation of the training trials did change
    assert not np.allclose(read_sto(runs[0][1][0] / "emg.sto").to_numpy(),
                           read_sto(runs[1][1][0] / "emg.sto").to_numpy())
    results = []
    for loaded, _ in runs:
        folds = make_folds(loaded, n_folds=3)
        train, test = next(f for f in folds if [t.name for t in f[1]] == ["trial3"])
        train, test, divisors = fold_normalise(train, test)
        est = MSEEstimator(n_synergies=2, max_iter=10, seed=0).fit(train)
        results.append((divisors, [t.excitation for t in train], est.predict(train[0]).moments.to_numpy()))
    (div_a, exc_a, pred_a), (div_b, exc_b, pred_b) = results
    np.testing.assert_allclose(div_a, div_b, rtol=1e-6)
    for a, b in zip(exc_a, exc_b, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(pred_a, pred_b, rtol=1e-5, atol=1e-5)


def test_folds_hold_each_trial_out_once():
    trials = synthetic_trials(n_trials=5, n_frames=30)
    folds = make_folds(trials, n_folds=2)
    held = sorted(t.name for _, test in folds for t in test)
    assert held == sorted(t.name for t in trials)
    for train, test in folds:
        assert not {t.name for t in train} & {t.name for t in test}
    single = make_folds(trials[:1], n_folds=2, n_segments=3)
    assert len(single) == 3
    assert sum(t.n_frames for t in single[0][1]) + sum(t.n_frames for t in single[0][0]) == 30


def _run(tmp_path, name):
    trials = synthetic_trials(n_trials=3, n_frames=60, seed=2)
    dirs = [write_trial_dir(t, tmp_path / "data" / t.name) for t in trials]
    out = tmp_path / name
    tables = []
    subject = synthetic_subject(tmp_path, hide=["m1"])
    cfg = settings(physics={"calibrate": ["strength_scale"]}, mse={"max_iter": 30, "n_synergies": 2},
                   evaluation={"n_folds": 3}, seed=1)
    for method in ("so", "mse"):
        tables.append(run_evaluation(method=method, subject=subject, trial_dirs=dirs, out_dir=out / method,
                                     settings=cfg))
    concatenate_evaluations(inputs=[out / "so" / "evaluation.tsv", out / "mse" / "evaluation.tsv"],
                            output=out / "evaluation.tsv")
    return out, tables


def test_protocol_rows_files_and_determinism(tmp_path):
    out, (so, mse) = _run(tmp_path, "a")
    table = pd.read_csv(out / "evaluation.tsv", sep="\t")
    assert list(table.columns) == COLUMNS
    assert set(table["method"]) == {"so", "mse"}
    for method in ("so", "mse"):
        rows = table[table["method"] == method]
        moments = rows[rows["quantity"] == "moment"]
        assert set(moments["trial"]) == {"trial1", "trial2", "trial3"}
        assert set(moments["channel"]) == {"hip", "knee"}
        assert set(moments["metric"]) == {"rmse", "rmse_pct_peak", "nrmse", "r2", "r"}
        lomo = rows[rows["quantity"] == "excitation"]
        assert set(lomo["channel"]) == {"m1"} and set(lomo["metric"]) == {
            "r", "rmse", "vaf", "r_active", "rmse_active", "mean_active", "mean_active_reference",
            "active_share"}
        hidden_moments = rows[rows["quantity"] == "moment_lomo"]  # moments while m1 is hidden
        assert set(hidden_moments["channel"]) == {"hip|m1", "knee|m1"}
        assert set(hidden_moments["metric"]) == {"rmse", "rmse_pct_peak", "r2"}
        assert (out / method / "folds.json").is_file()
        assert (out / method / "lomo" / "m1" / "trial2.excitations.sto").is_file()
        assert (out / method / "predictions" / "trial3.moments.sto").is_file()
        assert (out / method / "predictions" / "trial3.forces.sto").is_file()
    # SO's "prediction" of m1 is the synthetic truth, which equals m1's envelope.
    so_r = table.query("method == 'so' and quantity == 'excitation' and metric == 'r'")["value"]
    assert (so_r > 0.999).all()
    mse_r2 = table.query("method == 'mse' and quantity == 'moment' and metric == 'r2'")["value"]
    assert mse_r2.median() > 0.9
    assert (out / "mse" / "model" / "mse.json").is_file()
    out_b, _ = _run(tmp_path, "b")
    assert (out / "evaluation.tsv").read_bytes() == (out_b / "evaluation.tsv").read_bytes()


def test_model_muscles_selects_measured_with_emg_and_unmeasured():
    from musculo.errors import InputDataError
    from musculo.physics.data import model_muscles, select_muscles

    trials = synthetic_trials(n_trials=2, n_frames=30, n_muscles=7, n_unmeasured=2)
    trials[1] = trials[1].hide(["m3"])  # m3's channel failed quality in one trial
    keep = model_muscles(trials, measured=["m0", "m1", "m3"], unmeasured=["m6"])
    assert keep == ["m0", "m1", "m6"]
    sel = select_muscles(trials, measured=["m0", "m1", "m3"], unmeasured=["m6"])
    assert sel[0].muscles == keep and sel[0].moment_arm.shape == (30, 3, 2)
    np.testing.assert_array_equal(sel[0].mtu_length[:, 2], trials[0].mtu_length[:, 6])
    np.testing.assert_array_equal(sel[0].params.max_isometric_force,
                                  trials[0].params.max_isometric_force[[0, 1, 6]])
    assert sel[0].measured.tolist() == [True, True, False]
    assert select_muscles(trials) == trials
    with pytest.raises(InputDataError, match="not in the scaled model"):
        model_muscles(trials, measured=["m0"], unmeasured=["psoas_r"])
    with pytest.raises(InputDataError, match="both in emg.channels and in unmeasured"):
        model_muscles(trials, measured=["m0", "m5"], unmeasured=["m5"])


def test_unmeasured_auto_models_every_muscle_without_emg_that_spans_a_tracked_coordinate(tmp_path):
    """``unmeasured: auto`` estimates each muscle with a moment arm above 1 mm about a tracked
    coordinate and no EMG channel; a muscle that spans nothing, or only by less, stays out."""
    from dataclasses import replace

    import yaml
    from conftest import REPO

    from musculo.config import validate
    from musculo.errors import ConfigError
    from musculo.estimators.trials import load_trials
    from musculo.physics.data import spanning_muscles

    trials = synthetic_trials(n_trials=2, n_frames=30, n_muscles=8, n_unmeasured=4, seed=4)
    arms = []
    for t in trials:
        arm = t.moment_arm.copy()
        arm[:, 6] = 0.0  # m6 spans neither coordinate
        arm[:, 7] = 0.0
        arm[:, 7, 1] = 0.0008  # m7: below 1 mm everywhere
        arms.append(replace(t, moment_arm=arm))
    arms[0].moment_arm[:, 5] = 0.0  # m5 spans in one frame of one trial only
    arms[1].moment_arm[:, 5] = 0.0
    arms[1].moment_arm[5, 5, 0] = 0.002
    assert spanning_muscles(arms, exclude=["m0", "m1", "m2", "m3"]) == ["m4", "m5"]
    assert spanning_muscles(arms) == ["m0", "m1", "m2", "m3", "m4", "m5"]

    dirs = [write_trial_dir(t, tmp_path / "data" / t.name) for t in arms]
    subject = synthetic_subject(tmp_path, emg={"channels": {f"c{i}": [f"m{i}"] for i in range(4)}},
                                unmeasured="auto")
    assert subject.unmeasured_auto and subject.unmeasured == []
    loaded = load_trials(subject, dirs, settings=settings(), muscle_set="subject")
    assert loaded[0].muscles == ["m0", "m1", "m2", "m3", "m4", "m5"]
    assert loaded[0].measured.tolist() == [True] * 4 + [False] * 2
    # a listed subject keeps exactly its list
    listed = synthetic_subject(tmp_path, emg={"channels": {f"c{i}": [f"m{i}"] for i in range(4)}},
                               unmeasured=["m5"])
    assert load_trials(listed, dirs, settings=settings())[0].muscles == ["m0", "m1", "m2", "m3", "m5"]
    # the subject file's schema takes a list or auto, nothing else
    raw = yaml.safe_load((REPO / "subjects" / "motonms-unipd" / "subject.yaml").read_text())
    validate({**raw, "unmeasured": "auto"}, "subject", source="subject.yaml")
    with pytest.raises(ConfigError, match="unmeasured"):
        validate({**raw, "unmeasured": "all"}, "subject", source="subject.yaml")


def _mse_run(tmp_path, name, trials, calibration=None):
    dirs = [write_trial_dir(t, tmp_path / name / "data" / t.name) for t in trials]
    out = tmp_path / name / "mse"
    cfg = settings(physics={"calibrate": ["strength_scale"]}, mse={"max_iter": 20, "n_synergies": 2},
                   evaluation={"n_folds": 3}, seed=1)
    run_evaluation(method="mse", subject=SUBSET(tmp_path), trial_dirs=dirs, out_dir=out,
                   calibration=calibration, settings=cfg)
    return out


def SUBSET(tmp_path, **extra):  # noqa: N802 - reads like a constant subject
    """The synthetic subject measuring m0-m3 (one channel each) and estimating m5."""
    return synthetic_subject(tmp_path, emg={"channels": {f"c{i}": [f"m{i}"] for i in range(4)}},
                             unmeasured=["m5"], hide=["m1"], **extra)


def test_mse_models_the_subject_muscle_set_and_never_sees_held_out_trials(tmp_path):
    import json

    from musculo.estimators.calibration import run_calibration

    trials = synthetic_trials(n_trials=3, n_frames=50, n_muscles=7, n_unmeasured=2, seed=3)
    calib = tmp_path / "calibration.json"
    dirs = [write_trial_dir(t, tmp_path / "calib" / t.name) for t in trials]
    calib_settings = settings(physics={"calibrate": ["strength_scale"], "calibration_max_iter": 10}, seed=1)
    run_calibration(subject=SUBSET(tmp_path), trial_dirs=dirs, output=calib, settings=calib_settings)
    fitted = json.loads(calib.read_text())["parameters"]["strength_scale"]
    assert sorted(fitted) == ["m0", "m1", "m2", "m3", "m5"]
    out_a = _mse_run(tmp_path, "a", trials, calibration=calib)
    state = json.loads((out_a / "model" / "mse.json").read_text())
    assert state["muscles"] == ["m0", "m1", "m2", "m3", "m5"]  # m4 (measured, unlisted) and m6 left out
    assert state["extrapolated"] == ["m5"]
    assert (out_a / "lomo" / "m1" / "trial3.excitations.sto").is_file()
    # Changing trial3's inverse dynamics (and a calibration fitted with it) must not change the
    # fold in which trial3 is held out.
    changed = list(trials)
    changed[2] = trials[2].__class__(**{**trials[2].__dict__, "id_moment": trials[2].id_moment * 3.0 + 5.0})
    dirs_b = [write_trial_dir(t, tmp_path / "calib_b" / t.name) for t in changed]
    calib_b = tmp_path / "calibration_b.json"
    run_calibration(subject=SUBSET(tmp_path), trial_dirs=dirs_b, output=calib_b, settings=calib_settings)
    out_b = _mse_run(tmp_path, "b", changed, calibration=calib_b)
    for f in ("predictions/trial3.moments.sto", "predictions/trial3.excitations.sto",
              "lomo/m1/trial3.excitations.sto"):
        assert (out_a / f).read_bytes() == (out_b / f).read_bytes(), f
    assert (out_a / "predictions/trial1.moments.sto").read_bytes() != \
        (out_b / "predictions/trial1.moments.sto").read_bytes()


def test_hidden_muscle_is_hidden_with_its_channel_siblings(tmp_path):
    from musculo.estimators.so import SOEstimator
    from musculo.evaluation import evaluate_estimator, hidden_groups

    channels = {"c1": ["m0"], "c2": ["m1", "m2"]}
    assert hidden_groups(["m1", "m0"], channels) == {"m1": ["m1", "m2"], "m0": ["m0"]}
    assert hidden_groups(["m2"], None) == {"m2": ["m2"]}
    seen: list[list[str]] = []

    class Recording(SOEstimator):
        def fit(self, trials, *, hidden=()):
            seen.append(list(hidden))
            return super().fit(trials, hidden=hidden)

    trials = synthetic_trials(n_trials=2, n_frames=30)
    table = evaluate_estimator(make_estimator=Recording, subject="syn", folds=make_folds(trials, n_folds=2),
                               method="so", hide=["m1", "m2", "m0"], out_dir=tmp_path, channels=channels)
    # per fold: one plain fit, one fit for {m1, m2} (shared by both), one for m0
    assert seen == [[], ["m1", "m2"], ["m0"]] * 2
    lomo = table[table["quantity"] == "excitation"]
    assert set(lomo["channel"]) == {"m0", "m1", "m2"}


def test_subject_without_usable_emg_is_recorded_not_fitted(tmp_path):
    """Every EMG channel flagged: calibration, MSE and NMM record why, and the workflow carries on."""
    import json

    from musculo.estimators.calibration import run_calibration

    trials = [t.hide(t.measured_muscles) for t in synthetic_trials(n_trials=2, n_frames=40, seed=4)]
    dirs = [write_trial_dir(t, tmp_path / "data" / t.name) for t in trials]
    subject = synthetic_subject(tmp_path, emg={"channels": {"c0": ["m0"], "c1": ["m1"]}}, unmeasured=["m5"],
                                hide=["m1"])
    cfg = settings(nmm={"epochs": 1, "channels": 4})
    record = run_calibration(subject=subject, trial_dirs=dirs, output=tmp_path / "calibration.json",
                             settings=cfg)
    assert record["status"] == "not fitted" and "quality" in record["reason"]
    for method in ("mse", "nmm"):
        table = run_evaluation(method=method, subject=subject, trial_dirs=dirs, out_dir=tmp_path / method,
                               settings=cfg)
        assert table.empty
        written = pd.read_csv(tmp_path / method / "evaluation.tsv", sep="\t")
        assert list(written.columns) == COLUMNS and written.empty
        status = json.loads((tmp_path / method / "model" / "status.json").read_text())
        assert status["status"] == "not fitted" and "quality" in status["reason"]
        assert (tmp_path / method / "predictions").is_dir() and (tmp_path / method / "lomo").is_dir()
    for method in ("so", "null"):  # neither needs EMG
        assert not run_evaluation(method=method, subject=subject, trial_dirs=dirs, out_dir=tmp_path / method,
                                  settings=cfg).empty


def test_null_floor_rows_and_values(tmp_path):
    """The null estimator predicts the training means: its held-out moment R2 is at most about zero."""
    trials = synthetic_trials(n_trials=3, n_frames=60, seed=2)
    dirs = [write_trial_dir(t, tmp_path / "data" / t.name) for t in trials]
    table = run_evaluation(method="null", subject=synthetic_subject(tmp_path, hide=["m1"]), trial_dirs=dirs,
                           out_dir=tmp_path / "null", settings=settings(evaluation={"n_folds": 3}))
    r2 = table.query("quantity == 'moment' and metric == 'r2'")["value"]
    assert len(r2) == 6 and (r2 <= 0.0 + 1e-9).all()
    lomo = table.query("quantity == 'excitation' and metric == 'rmse'")
    assert set(lomo["channel"]) == {"m1"} and (lomo["value"] > 0).all()
    # the floor keeps its name through the subject table and the report reader (not read as NaN)
    from musculo.report.collect import read_evaluation

    concatenate_evaluations(inputs=[tmp_path / "null" / "evaluation.tsv"], output=tmp_path / "all.tsv")
    assert set(read_evaluation(tmp_path / "all.tsv")["method"]) == {"null"}
    from musculo.io.tables import read_sto

    moments = read_sto(tmp_path / "null" / "predictions" / "trial2.moments.sto")
    assert np.allclose(moments.std(axis=0), 0.0)  # constants
    train_mean = np.concatenate([trials[0].id_moment, trials[2].id_moment]).mean(axis=0)
    np.testing.assert_allclose(moments.iloc[0].to_numpy(), train_mean, rtol=1e-5)


def test_single_trial_predictions_are_joined_per_trial(tmp_path):
    """A one-trial subject is cut into time spans, one per fold; the report reads one file per trial."""
    from musculo.io.tables import read_sto

    trial = synthetic_trials(n_trials=1, n_frames=90, seed=5)[0]
    dirs = [write_trial_dir(trial, tmp_path / "data" / trial.name)]
    table = run_evaluation(method="null", subject=synthetic_subject(tmp_path), trial_dirs=dirs,
                           out_dir=tmp_path / "null", settings=settings(evaluation={"n_segments": 3}))
    assert sorted(set(table["trial"])) == [f"{trial.name}@{i}" for i in range(3)]
    joined = read_sto(tmp_path / "null" / "predictions" / f"{trial.name}.moments.sto")
    assert len(joined) == 90 and joined.index.is_monotonic_increasing


def test_null_floor_verdicts_per_subject_and_method():
    from musculo.report.collect import null_floor_table

    rows = []
    for method, base in (("null", 10.0), ("so", 2.0), ("mse", 8.0), ("nmm", 11.0)):
        for trial in ("t1", "t2"):
            for coord, factor in (("hip", 1.0), ("knee", 1.2)):
                value = base * factor * (0.5 if method == "nmm" and coord == "knee" else 1.0)
                rows += [{"subject": "s", "trial": trial, "method": method, "quantity": "moment",
                          "channel": coord, "metric": "rmse", "value": value},
                         {"subject": "s", "trial": trial, "method": method, "quantity": "moment",
                          "channel": coord, "metric": "r2", "value": 0.5}]
    table = null_floor_table(pd.DataFrame(rows)).set_index("method")
    assert table.loc["mse", "verdict"] == "yes" and table.loc["mse", "coordinates_beaten"] == "2/2"
    assert table.loc["nmm", "verdict"] == "partly" and table.loc["nmm", "coordinates_beaten"] == "1/2"
    assert table.loc["null", "verdict"] == "the floor"
    assert table.loc["so", "role"].startswith("consistency check")
    assert table.loc["mse", "null_rmse"] == pytest.approx(11.0)
