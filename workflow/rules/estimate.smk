"""Physics calibration, MSE and SO evaluation, and the per-subject evaluation table."""


rule calibrate:
    """Calibrate the subject's physics parameters against inverse-dynamics moments."""
    input:
        trials=lambda w: [
            res(w.subject, t, n)
            for t in dynamic_trials(w.subject)
            for n in ["muscle_analysis.npz", "id.sto", "emg.sto", "events.json"]
        ],
    output:
        calibration="results/{subject}/physics/calibration.json",
    log:
        "results/logs/{subject}/calibrate/calibrate.log",
    benchmark:
        "results/benchmarks/{subject}/calibrate.tsv"
    conda:
        "../envs/musculo.yaml"
    params:
        trial_dirs=lambda w: [res(w.subject, t) for t in dynamic_trials(w.subject)],
        coordinates=lambda w: subject(w.subject).coordinates or None,
        measured=lambda w: subject(w.subject).measured_muscles,
        unmeasured=lambda w: subject(w.subject).unmeasured,
        physics=config["physics"],
        mse=config["mse"],
        seed=config["seed"],
        n_trials=config["physics"]["calibration_trials"],
    script:
        "../scripts/calibrate.py"


rule mse:
    """Fit and evaluate synergy extrapolation (folds and leave-one-muscle-out)."""
    input:
        trials=lambda w: [
            res(w.subject, t, n)
            for t in dynamic_trials(w.subject)
            for n in ["muscle_analysis.npz", "id.sto", "emg.sto", "events.json"]
        ],
        calibration=lambda w: (
            res(w.subject, "physics", "calibration.json")
            if config["mse"]["calibrate_physics"]
            else []
        ),
    output:
        evaluation="results/{subject}/mse/evaluation.tsv",
        state="results/{subject}/mse/mse.json",
    log:
        "results/logs/{subject}/mse/mse.log",
    benchmark:
        "results/benchmarks/{subject}/mse.tsv"
    conda:
        "../envs/musculo.yaml"
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
    script:
        "../scripts/evaluate_method.py"


rule so_eval:
    """Evaluate OpenSim static optimisation with the same protocol (moments, hidden muscles)."""
    input:
        trials=lambda w: [
            res(w.subject, t, n)
            for t in dynamic_trials(w.subject)
            for n in [
                "muscle_analysis.npz",
                "id.sto",
                "so_activation.sto",
                "events.json",
            ]
        ],
        emg=lambda w: (
            [res(w.subject, t, "emg.sto") for t in dynamic_trials(w.subject)]
            if subject(w.subject).emg_channels
            else []
        ),
    output:
        evaluation="results/{subject}/so/evaluation.tsv",
    log:
        "results/logs/{subject}/so_eval/so_eval.log",
    benchmark:
        "results/benchmarks/{subject}/so_eval.tsv"
    conda:
        "../envs/musculo.yaml"
    params:
        method="so",
        trial_dirs=lambda w: [res(w.subject, t) for t in dynamic_trials(w.subject)],
        coordinates=lambda w: subject(w.subject).coordinates or None,
        hide=lambda w: (
            subject(w.subject).hide if subject(w.subject).emg_channels else []
        ),
        channels=lambda w: subject(w.subject).emg_channels,
        physics=config["physics"],
        evaluation=config["evaluation"],
        seed=config["seed"],
    script:
        "../scripts/evaluate_method.py"


rule evaluate:
    """Concatenate the methods' evaluation tables into results/<s>/evaluation.tsv."""
    input:
        tables=lambda w: [
            res(w.subject, m, "evaluation.tsv")
            for m in config["evaluation"]["methods"]
            if m == "so" or subject(w.subject).emg_channels
        ]
        + (
            [res(w.subject, "truth", "evaluation.tsv")]
            if subject(w.subject).is_twin
            else []
        ),
    output:
        evaluation="results/{subject}/evaluation.tsv",
    log:
        "results/logs/{subject}/evaluate/evaluate.log",
    conda:
        "../envs/musculo.yaml"
    script:
        "../scripts/evaluate.py"
