"""Snakemake shim: leave-one-subject-out of the attention and realtime estimators over a cohort."""

from musculo.log import job_logging
from musculo.loso import cohort_loso
from musculo.settings import Settings
from musculo.subject import load_subject

with job_logging(snakemake.log[0]):
    cohort_loso(
        cohort=snakemake.wildcards.cohort,
        subjects=[load_subject(p) for p in snakemake.input.subjects],
        trial_dirs=snakemake.params.trial_dirs,
        settings=Settings.from_config(snakemake.config),
        output=snakemake.output.loso,
    )
