"""Snakemake shim: evaluate one method (mse or so) on a subject."""

from pathlib import Path

from musculo.evaluation import run_method_evaluation
from musculo.log import job_logging

with job_logging(snakemake.log[0]):
    run_method_evaluation(
        subject=snakemake.wildcards.subject,
        out_dir=Path(snakemake.output.evaluation).parent,
        calibration=snakemake.input.get("calibration") or None,
        **dict(snakemake.params.items()),
    )
