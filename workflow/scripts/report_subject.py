from musculo.log import job_logging
from musculo.report import build_subject_report

with job_logging(snakemake.log[0]):
    build_subject_report(
        evaluation=snakemake.input.evaluation,
        quality=snakemake.input.quality,
        subject_file=snakemake.input.subject,
        output=snakemake.output.html,
        figures_dir=snakemake.output.figures,
        truth=snakemake.input.get("truth") or None,
        **snakemake.params,
    )
