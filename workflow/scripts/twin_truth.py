"""Snakemake shim: evaluate a twin's results against its ground truth."""

from musculo.log import job_logging
from musculo.twin.truth import evaluate_truth

with job_logging(snakemake.log[0]):
    evaluate_truth(
        subject=snakemake.wildcards.subject,
        truth=snakemake.input.truth,
        output=snakemake.output.evaluation,
        **dict(snakemake.params.items()),
    )
