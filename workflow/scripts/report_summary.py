from musculo.log import job_logging
from musculo.report import build_summary

with job_logging(snakemake.log[0]):
    build_summary(
        evaluations=list(snakemake.input.evaluations),
        output_tsv=snakemake.output.tsv,
        output_html=snakemake.output.html,
        figure=snakemake.output.figure,
        **snakemake.params,
    )
