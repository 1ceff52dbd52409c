"""Snakemake shim: PI-CNN from scratch, generic and fine-tuned transfer for one subject (rows + figure)."""

from pathlib import Path

from musculo.estimators.transfer import GenericModel, common_muscle_set, share_summary, transfer_evaluation
from musculo.estimators.trials import load_trials
from musculo.evaluation import make_folds
from musculo.io.atomic import atomic_output
from musculo.io.tables import write_evaluation_table
from musculo.log import job_logging
from musculo.report.picnn import share_figure
from musculo.settings import Settings
from musculo.subject import load_subject

with job_logging(snakemake.log[0]):
    sid = snakemake.wildcards.subject
    subject = load_subject(snakemake.input.subject)
    settings = Settings.from_config(snakemake.config, overrides=subject.config_overrides)
    members = snakemake.params.members  # cohort members -> trial dirs (empty: no cohort)
    if members:
        groups = {
            m: load_trials(
                load_subject(Path("subjects", m, "subject.yaml")), dirs, settings=settings, with_so=True,
                muscle_set="listed",
            )
            for m, dirs in members.items()
        }
        trials = common_muscle_set(groups)[sid]
        generic = GenericModel.load(Path(snakemake.input.generic).parent)
    else:
        trials = load_trials(subject, snakemake.params.trial_dirs, settings=settings, with_so=True)
        generic = None
    folds = make_folds(trials, n_folds=settings.evaluation.n_folds, n_segments=settings.evaluation.n_segments)
    table, timing = transfer_evaluation(
        subject=sid,
        folds=folds,
        cfg=settings.picnn,
        physics=settings.physics,
        seed=settings.seed,
        generic=generic,
    )
    write_evaluation_table(table, snakemake.output.evaluation)
    summary = share_summary(table)
    with atomic_output(snakemake.output.summary) as tmp:
        summary.to_csv(tmp, sep="\t", index=False)
    with atomic_output(snakemake.output.timing) as tmp:
        timing.to_csv(tmp, sep="\t", index=False)
    with atomic_output(snakemake.output.figure) as tmp:
        share_figure(summary, title=sid).savefig(tmp, format="png", dpi=90)
