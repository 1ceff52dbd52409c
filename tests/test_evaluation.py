"""Evaluation protocol: folds, metrics, leave-one-muscle-out, determinism of evaluation.tsv."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from musculo.evaluation import (
    COLUMNS,
    concatenate_evaluations,
    excitation_metrics,
    make_folds,
    moment_metrics,
    run_method_evaluation,
)
from musculo.physics.synthetic import synthetic_trials, write_trial_dir


def test_metrics():
    y = np.sin(np.linspace(0, 6, 100)) * 10
    m = moment_metrics(y + 1.0, y)
    assert m["rmse"] == pytest.approx(1.0) and m["r"] == pytest.approx(1.0)
    assert m["nrmse"] == pytest.approx(100 / np.ptp(y))
    assert m["r2"] == pytest.approx(1 - 100 / np.sum((y - y.mean()) ** 2))
    e = excitation_metrics(0.5 * np.abs(y), np.abs(y))
    assert e["r"] == pytest.approx(1.0) and e["vaf"] == pytest.approx(0.75)


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
    for method in ("so", "mse"):
        tables.append(run_method_evaluation(
            method=method, subject="syn", trial_dirs=dirs, out_dir=out / method, hide=["m1"],
            physics={"calibrate": ["strength_scale"]}, mse={"max_iter": 30, "n_synergies": 2},
            evaluation={"n_folds": 3}, seed=1))
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
        assert set(moments["metric"]) == {"rmse", "nrmse", "r2", "r"}
        lomo = rows[rows["quantity"] == "excitation"]
        assert set(lomo["channel"]) == {"m1"} and set(lomo["metric"]) == {"r", "rmse", "vaf"}
        assert (out / method / "lomo" / "m1" / "trial2.excitations.sto").is_file()
        assert (out / method / "trial3.moments.sto").is_file()
    # SO's "prediction" of m1 is the synthetic truth, which equals m1's envelope.
    so_r = table.query("method == 'so' and quantity == 'excitation' and metric == 'r'")["value"]
    assert (so_r > 0.999).all()
    mse_r2 = table.query("method == 'mse' and quantity == 'moment' and metric == 'r2'")["value"]
    assert mse_r2.median() > 0.9
    assert (out / "mse" / "mse.json").is_file()
    out_b, _ = _run(tmp_path, "b")
    assert (out / "evaluation.tsv").read_bytes() == (out_b / "evaluation.tsv").read_bytes()
