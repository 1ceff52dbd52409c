from musculo.report.collect import config_sha256


rule report:
    """Per-subject validation report: one self-contained HTML file with embedded figures."""
    input:
        unpack(report_inputs),
        evaluation=res("{subject}", "evaluation.tsv"),
        quality=res("{subject}", "quality.tsv"),
        subject="subjects/{subject}/subject.yaml",
    output:
        html=res("{subject}", "report.html"),
        figures=report(
            directory(res("{subject}", "report_figures")),
            patterns=["{name}.png"],
            caption="../report/subject_figure.rst",
            category="Subjects",
            subcategory="{subject}",
            labels={"subject": "{subject}", "figure": "{name}"},
        ),
    log:
        "results/logs/{subject}/report/report.log",
    resources:
        mem_mb=1000,
        runtime=15,
    group:
        "finish"
    conda:
        "../envs/musculo.yaml"
    params:
        subject="{subject}",
        results_dir=lambda wildcards: res(wildcards.subject),
        config_hash=config_sha256(config),
        settings=config["report"],
    script:
        "../scripts/report_subject.py"


onerror:
    # some jobs failed (under --keep-going the others ran): the cohort summary of the subjects that
    # finished, listing the rest as failed, so that one subject's failure does not hide the cohort
    if len(VALID_SUBJECTS) + len(SUBJECT_ERRORS) > 1:
        from snakemake.logging import logger as smk_logger

        from musculo.report.summary import build_partial_summary

        try:
            done = build_partial_summary(
                results_dir="results", subjects=VALID_SUBJECTS, failed=SUBJECT_ERRORS, settings=config["report"]
            )
        except Exception as exc:  # the run has failed already; say why the summary is missing too
            smk_logger.warning(f"musculo: no partial summary: {exc}")
        else:
            if done:
                smk_logger.warning(
                    f"musculo: results/summary.html lists the {len(done)} finished subjects and the failed ones"
                )


rule summary:
    """Cohort summary: headline metrics per subject and method (TSV, HTML and a figure)."""
    input:
        evaluations=expand(res("{subject}", "evaluation.tsv"), subject=VALID_SUBJECTS),
        reports=expand(res("{subject}", "report.html"), subject=VALID_SUBJECTS),
    output:
        tsv="results/summary.tsv",
        html="results/summary.html",
        figure=report(
            "results/summary.png",
            caption="../report/summary.rst",
            category="Cohort",
            labels={"figure": "headline metrics"},
        ),
    log:
        "results/logs/summary/summary.log",
    resources:
        mem_mb=1000,
        runtime=15,
    conda:
        "../envs/musculo.yaml"
    params:
        settings=config["report"],
        failed=SUBJECT_ERRORS,
    script:
        "../scripts/report_summary.py"
