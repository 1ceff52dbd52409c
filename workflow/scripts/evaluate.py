"""Snakemake shim: concatenate the methods' evaluation tables."""

from musculo.evaluation import concatenate_evaluations
from musculo.log import job_logging

with job_logging(snakemake.log[0]):
    concatenate_evaluations(inputs=list(snakemake.input.tables), output=snakemake.output.evaluation)
