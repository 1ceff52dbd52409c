"""Cross-subject leave-one-subject-out of the attention (with and without adversarial adaptation) and
realtime estimators over a cohort of subjects with EMG (opt-in: `snakemake results/cohort/twin/loso.tsv`)."""

rule cohort_loso:
    """Leave each subject of the cohort out: attention, attention_da (gradient reversal), realtime."""
    input:
        subjects=lambda w: [f"subjects/{s}/subject.yaml" for s in cohort_subjects(w.cohort)],
        trials=lambda w: [
            f
            for s in cohort_subjects(w.cohort)
            for f in trial_files(s, ["muscle_analysis.npz", "id.sto", "events.json", "emg.sto"])
        ],
    output:
        loso="results/cohort/{cohort}/loso.tsv",
    wildcard_constraints:
        cohort="|".join(LOSO_COHORTS),
    log:
        "results/logs/cohort/{cohort}/loso.log",
    benchmark:
        "results/benchmarks/cohort/{cohort}/loso.tsv"
    conda:
        "../envs/musculo.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=240,
    params:
        trial_dirs=lambda w: {
            s: [res(s, t) for t in dynamic_trials(s)] for s in cohort_subjects(w.cohort)
        },
        attention=lambda w: dict(config["attention"]),
        realtime=lambda w: dict(config["realtime"]),
    script:
        "../scripts/cohort_loso.py"
