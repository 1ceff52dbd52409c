"""Snakemake shim: evaluate one registered method on a subject."""

from pathlib import Path

from musculo.estimators import registry
from musculo.evaluation import run_evaluation
from musculo.log import job_logging
from musculo.settings import Settings
from musculo.subject import load_subject

with job_logging(snakemake.log[0]):
    registry.load_plugins(snakemake.config["evaluation"]["plugins"])
    subject = load_subject(snakemake.input.subject)
    run_evaluation(
        method=snakemake.wildcards.method,
        subject=subject,
        trial_dirs=snakemake.params.trial_dirs,
        out_dir=Path(snakemake.output.evaluation).parent,
        settings=Settings.from_config(snakemake.config, overrides=subject.config_overrides),
        calibration=snakemake.input.get("calibration") or None,
    )
