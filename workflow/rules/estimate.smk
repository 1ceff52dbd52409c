"""Physics calibration, every registered estimator through one rule, and the per-subject evaluation table."""


rule calibrate:
    """Calibrate the subject's physics parameters against inverse-dynamics moments (an MSE fit)."""
    input:
        subject="subjects/{subject}/subject.yaml",
        trials=lambda w: trial_files(
            w.subject, ["muscle_analysis.npz", "id.sto", "emg.sto", "events.json"]
        ),
    output:
        calibration="results/{subject}/physics/calibration.json",
    log:
        "results/logs/{subject}/calibrate/calibrate.log",
    benchmark:
        "results/benchmarks/{subject}/calibrate.tsv"
    conda:
        "../envs/musculo.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        trial_dirs=lambda w: [res(w.subject, t) for t in dynamic_trials(w.subject)],
        physics=lambda w: settings_for(w.subject).physics.to_dict(),
        mse=lambda w: settings_for(w.subject).mse.to_dict(),
        seed=config["seed"],
    script:
        "../scripts/calibrate.py"


checkpoint estimate:
    """Fit and evaluate one registered method on a subject: folds, leave-one-muscle-out, deployable fit.

    A checkpoint: whether the method was fitted (model/status.json) decides which joint reactions
    its contact forces need.
    """
    input:
        unpack(estimate_inputs),
    output:
        evaluation="results/{subject}/{method}/evaluation.tsv",
        predictions=directory("results/{subject}/{method}/predictions"),
        lomo=directory("results/{subject}/{method}/lomo"),
        model=directory("results/{subject}/{method}/model"),
    log:
        "results/logs/{subject}/{method}/{method}.log",
    benchmark:
        "results/benchmarks/{subject}/{method}.tsv"
    conda:
        "../envs/musculo.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=120,
    params:
        trial_dirs=lambda w: [res(w.subject, t) for t in dynamic_trials(w.subject)],
        settings=lambda w: {
            k: settings_for(w.subject).section(k).to_dict()
            for k in Settings.typed_sections()
        },
        seed=config["seed"],
    script:
        "../scripts/estimate.py"


rule evaluate:
    """Concatenate the methods' evaluation tables into results/<s>/evaluation.tsv."""
    input:
        tables=lambda w: [res(w.subject, m, "evaluation.tsv") for m in methods_for(w.subject)]
        + contact_tables(w.subject)
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
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    script:
        "../scripts/evaluate.py"
