"""Physics calibration, MSE and SO evaluation, and the per-subject evaluation table."""


def _trial_files(s, names):
    """Per-trial result files (names) of subject s's dynamic trials."""
    return [res(s, t, n) for t in dynamic_trials(s) for n in names]


def _evaluated_methods(s):
    """Methods of evaluation.methods that apply to subject s (EMG-driven ones need EMG)."""
    has_emg = bool(subject(s).emg_channels)
    return [m for m in config["evaluation"]["methods"] if m == "so" or has_emg]


rule calibrate:
    """Calibrate the subject's physics parameters against inverse-dynamics moments."""
    input:
        trials=lambda w: _trial_files(w.subject, ["muscle_analysis.npz", "id.sto", "emg.sto"]),
    output:
        calibration="results/{subject}/physics/calibration.json",
    log:
        "results/logs/{subject}/calibrate/calibrate.log",
    benchmark:
        "results/benchmarks/{subject}/calibrate.tsv"
    params:
        trial_dirs=lambda w: [res(w.subject, t) for t in dynamic_trials(w.subject)],
        coordinates=lambda w: subject(w.subject).coordinates or None,
        measured=lambda w: subject(w.subject).measured_muscles,
        unmeasured=lambda w: subject(w.subject).unmeasured,
        physics=config["physics"],
        mse=config["mse"],
        seed=config["seed"],
        n_trials=config["physics"]["calibration_trials"],
    conda:
        "../envs/musculo.yaml"
    script:
        "../scripts/calibrate.py"


rule mse:
    """Fit and evaluate synergy extrapolation (folds and leave-one-muscle-out)."""
    input:
        trials=lambda w: _trial_files(w.subject, ["muscle_analysis.npz", "id.sto", "emg.sto"]),
        calibration=lambda w: (
            res(w.subject, "physics", "calibration.json") if config["mse"]["calibrate_physics"] else []
        ),
    output:
        evaluation="results/{subject}/mse/evaluation.tsv",
        state="results/{subject}/mse/mse.json",
    log:
        "results/logs/{subject}/mse/mse.log",
    benchmark:
        "results/benchmarks/{subject}/mse.tsv"
    params:
        method="mse",
        trial_dirs=lambda w: [res(w.subject, t) for t in dynamic_trials(w.subject)],
        coordinates=lambda w: subject(w.subject).coordinates or None,
        hide=lambda w: subject(w.subject).hide,
        channels=lambda w: subject(w.subject).emg_channels,
        measured=lambda w: subject(w.subject).measured_muscles,
        unmeasured=lambda w: subject(w.subject).unmeasured,
        physics=config["physics"],
        mse=config["mse"],
        evaluation=config["evaluation"],
        seed=config["seed"],
    conda:
        "../envs/musculo.yaml"
    script:
        "../scripts/evaluate_method.py"


rule so_eval:
    """Evaluate OpenSim static optimisation with the same protocol (moments, hidden muscles)."""
    input:
        trials=lambda w: _trial_files(w.subject, ["muscle_analysis.npz", "id.sto", "so_activation.sto"]),
        emg=lambda w: _trial_files(w.subject, ["emg.sto"]) if subject(w.subject).emg_channels else [],
    output:
        evaluation="results/{subject}/so/evaluation.tsv",
    log:
        "results/logs/{subject}/so_eval/so_eval.log",
    benchmark:
        "results/benchmarks/{subject}/so_eval.tsv"
    params:
        method="so",
        trial_dirs=lambda w: [res(w.subject, t) for t in dynamic_trials(w.subject)],
        coordinates=lambda w: subject(w.subject).coordinates or None,
        hide=lambda w: subject(w.subject).hide if subject(w.subject).emg_channels else [],
        channels=lambda w: subject(w.subject).emg_channels,
        physics=config["physics"],
        evaluation=config["evaluation"],
        seed=config["seed"],
    conda:
        "../envs/musculo.yaml"
    script:
        "../scripts/evaluate_method.py"


rule evaluate:
    """Concatenate the methods' evaluation tables into results/<s>/evaluation.tsv."""
    input:
        tables=lambda w: [res(w.subject, m, "evaluation.tsv") for m in _evaluated_methods(w.subject)]
        + ([res(w.subject, "truth", "evaluation.tsv")] if subject(w.subject).is_twin else []),
    output:
        evaluation="results/{subject}/evaluation.tsv",
    log:
        "results/logs/{subject}/evaluate/evaluate.log",
    conda:
        "../envs/musculo.yaml"
    script:
        "../scripts/evaluate.py"
