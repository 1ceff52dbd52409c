"""Snakemake shim: the subject's quality table with verdicts."""

from musculo.log import job_logging
from musculo.opensim_tools.quality import write_quality_table

with job_logging(snakemake.log[0]):
    write_quality_table(
        subject=snakemake.wildcards.subject,
        scale_quality=snakemake.input.scale,
        ik_errors=list(snakemake.input.ik),
        id_residuals=list(snakemake.input.id),
        id_moments=list(snakemake.input.id_moments),
        events=list(snakemake.input.events),
        so_reserves=list(snakemake.input.so),
        emg_quality=list(snakemake.input.emg),
        emg_normalisation=snakemake.input.emg_normalisation or None,
        model=snakemake.input.model,
        ik_mots=list(snakemake.input.ik_mots),
        paths=snakemake.input.paths or None,
        twin_truth=snakemake.input.truth or None,
        output_tsv=snakemake.output.tsv,
        **snakemake.params,
    )
