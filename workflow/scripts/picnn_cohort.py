"""Snakemake shim: the generic PI-CNN of a cohort, trained without its left-out subject."""

from pathlib import Path

from musculo.estimators.transfer import GenericModel, common_muscle_set
from musculo.estimators.trials import load_trials
from musculo.log import job_logging
from musculo.settings import Settings
from musculo.subject import load_subject

with job_logging(snakemake.log[0]):
    settings = Settings.from_config(snakemake.config)
    groups = {}
    for sid, dirs in snakemake.params.members.items():
        subject = load_subject(Path("subjects", sid, "subject.yaml"))
        groups[sid] = load_trials(subject, dirs, settings=settings, with_so=True, muscle_set="listed")
    groups = common_muscle_set(groups)
    others = {sid: ts for sid, ts in groups.items() if sid != snakemake.wildcards.left_out}
    GenericModel(settings.picnn, physics=settings.physics, seed=settings.seed).fit(others).save(
        Path(snakemake.output.state).parent
    )
