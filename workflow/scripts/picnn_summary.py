"""Snakemake shim: a cohort's PI-CNN transfer summary (table + accuracy against the fine-tuned share)."""

import pandas as pd

from musculo.io.atomic import atomic_output
from musculo.log import job_logging
from musculo.report.picnn import share_figure

with job_logging(snakemake.log[0]):
    frames = [pd.read_csv(p, sep="\t") for p in snakemake.input.summaries]
    table = pd.concat(frames, ignore_index=True)
    with atomic_output(snakemake.output.table) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    with atomic_output(snakemake.output.figure) as tmp:
        share_figure(table, title=f"cohort {snakemake.wildcards.cohort}").savefig(tmp, format="png", dpi=90)
