from musculo.contact import contact_forces
from musculo.log import job_logging

with job_logging(snakemake.log[0]):
    contact_forces(
        reactions=list(snakemake.input.reactions),
        summaries=list(snakemake.input.summaries),
        events=list(snakemake.input.events),
        scale_quality=snakemake.input.scale,
        evaluation_out=snakemake.output.evaluation,
        curves_dir=snakemake.output.curves,
        truth_dir=snakemake.input.truth or None,
        **snakemake.params,
    )
