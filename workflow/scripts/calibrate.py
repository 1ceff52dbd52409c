"""Snakemake shim: calibrate a subject's physics parameters."""

from musculo.estimators.calibration import run_calibration
from musculo.log import job_logging

with job_logging(snakemake.log[0]):
    run_calibration(output=snakemake.output.calibration, **dict(snakemake.params.items()))
