"""Snakemake shim: train and evaluate the NMM on a subject."""

from pathlib import Path

from musculo.estimators.nmm import run_nmm_evaluation
from musculo.log import job_logging

with job_logging(snakemake.log[0]):
    run_nmm_evaluation(
        subject=snakemake.wildcards.subject,
        out_dir=Path(snakemake.output.evaluation).parent,
        calibration=snakemake.input.get("calibration") or None,
        **dict(snakemake.params.items()),
    )
