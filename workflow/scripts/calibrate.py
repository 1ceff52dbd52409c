"""Snakemake shim: calibrate a subject's physics parameters."""

from musculo.log import job_logging
from musculo.physics.calibration import run_calibration

with job_logging(snakemake.log[0]):
    run_calibration(output=snakemake.output.calibration, **dict(snakemake.params.items()))
