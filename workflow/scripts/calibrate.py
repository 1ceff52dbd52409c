"""Snakemake shim: calibrate a subject's physics parameters."""

from musculo.estimators.calibration import run_calibration
from musculo.log import job_logging
from musculo.settings import Settings
from musculo.subject import load_subject

with job_logging(snakemake.log[0]):
    subject = load_subject(snakemake.input.subject)
    run_calibration(
        subject=subject,
        trial_dirs=snakemake.params.trial_dirs,
        output=snakemake.output.calibration,
        settings=Settings.from_config(snakemake.config, overrides=subject.config_overrides),
    )
