from musculo.log import job_logging
from musculo.opensim_tools.quality import write_quality_table

with job_logging(snakemake.log[0]):
    write_quality_table(
        subject=snakemake.wildcards.subject,
        scale_quality=snakemake.input.scale,
        ik_errors=list(snakemake.input.ik),
        id_residuals=list(snakemake.input.id),
        so_reserves=list(snakemake.input.so),
        output_tsv=snakemake.output.tsv,
        **snakemake.params,
    )
