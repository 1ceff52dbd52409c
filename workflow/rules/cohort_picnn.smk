"""PI-CNN transfer: one generic model per cohort and left-out subject, per-subject transfer rows, cohort summary.

Opt-in target: ``snakemake --cores N picnn_all`` (the registered ``picnn`` estimator itself runs through
the generic ``estimate`` rule when it is listed in evaluation.methods).
"""

wildcard_constraints:
    cohort="|".join(picnn_cohorts()) or "NONE",


rule cohort_picnn:
    """The generic PI-CNN of a cohort without its left-out subject (reused by that subject's transfer)."""
    input:
        trials=lambda w: picnn_member_files(w.cohort),
        subjects=lambda w: [f"subjects/{m}/subject.yaml" for m in picnn_cohorts()[w.cohort]],
    output:
        state="results/cohorts/{cohort}/picnn/{left_out}/generic.json",
        weights="results/cohorts/{cohort}/picnn/{left_out}/generic.pt",
    log:
        "results/logs/cohorts/{cohort}/picnn/{left_out}.log",
    benchmark:
        "results/benchmarks/cohorts/{cohort}/picnn/{left_out}.tsv"
    conda:
        "../envs/musculo.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=60,
    params:
        members=lambda w: picnn_members(w.cohort),
    script:
        "../scripts/picnn_cohort.py"


rule picnn_transfer:
    """PI-CNN from scratch, generic and fine-tuned on 5-50 % of the subject's windows (random / active)."""
    input:
        unpack(picnn_transfer_inputs),
    output:
        evaluation="results/{subject}/picnn_transfer/evaluation.tsv",
        summary="results/{subject}/picnn_transfer/summary.tsv",
        timing="results/{subject}/picnn_transfer/timing.tsv",
        figure="results/{subject}/picnn_transfer/accuracy_vs_share.png",
    log:
        "results/logs/{subject}/picnn_transfer/picnn_transfer.log",
    benchmark:
        "results/benchmarks/{subject}/picnn_transfer.tsv"
    conda:
        "../envs/musculo.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=120,
    params:
        trial_dirs=lambda w: [res(w.subject, t) for t in dynamic_trials(w.subject)],
        members=lambda w: picnn_members(picnn_cohort_of(w.subject)) if picnn_cohort_of(w.subject) else {},
    script:
        "../scripts/picnn_transfer.py"


rule picnn_cohort_summary:
    """A cohort's transfer summary: table and accuracy against the fine-tuned share."""
    input:
        summaries=lambda w: [res(s, "picnn_transfer", "summary.tsv") for s in picnn_cohorts()[w.cohort]],
    output:
        table="results/cohorts/{cohort}/picnn_transfer.tsv",
        figure="results/cohorts/{cohort}/picnn_transfer.png",
    log:
        "results/logs/cohorts/{cohort}/picnn_summary.log",
    conda:
        "../envs/musculo.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/picnn_summary.py"


rule picnn_all:
    """Every EMG subject's PI-CNN transfer rows and every cohort's summary."""
    input:
        [res(s, "picnn_transfer", "evaluation.tsv") for s in emg_subjects()]
        + [f"results/cohorts/{c}/picnn_transfer.tsv" for c in picnn_cohorts()],
