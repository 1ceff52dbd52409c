"""Snakemake shim: generate a digital-twin subject's files."""

from pathlib import Path

from musculo.log import job_logging
from musculo.twin.generate import generate_twin

with job_logging(snakemake.log[0]):
    generate_twin(
        subject=snakemake.input.subject,
        out_dir=Path(snakemake.output.truth).parent,
        **dict(snakemake.params.items()),
    )
