"""NMM: neural musculoskeletal model, trained and evaluated per subject with EMG."""


rule nmm:
    """Train and evaluate the neural musculoskeletal model (folds and leave-one-muscle-out)."""
    input:
        trials=lambda w: [
            res(w.subject, t, n)
            for t in dynamic_trials(w.subject)
            for n in ("muscle_analysis.npz", "id.sto", "emg.sto", "events.json")
        ],
        calibration=lambda w: (
            res(w.subject, "physics", "calibration.json")
            if config["nmm"]["start_from_calibration"]
            else []
        ),
    output:
        evaluation="results/{subject}/nmm/evaluation.tsv",
        state="results/{subject}/nmm/hyperparameters.json",
        weights="results/{subject}/nmm/weights.pt",
    log:
        "results/logs/{subject}/nmm/nmm.log",
    benchmark:
        "results/benchmarks/{subject}/nmm.tsv"
    conda:
        "../envs/musculo.yaml"
    threads: 1
    params:
        trial_dirs=lambda w: [res(w.subject, t) for t in dynamic_trials(w.subject)],
        coordinates=lambda w: subject(w.subject).coordinates or None,
        hide=lambda w: subject(w.subject).hide,
        channels=lambda w: subject(w.subject).emg_channels,
        measured=lambda w: subject(w.subject).measured_muscles,
        unmeasured=lambda w: subject(w.subject).unmeasured,
        physics=config["physics"],
        nmm=config["nmm"],
        evaluation=config["evaluation"],
        seed=config["seed"],
    script:
        "../scripts/nmm.py"
