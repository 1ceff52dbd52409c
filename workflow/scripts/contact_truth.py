from musculo.log import job_logging
from musculo.twin.contact_truth import true_contact_forces

with job_logging(snakemake.log[0]):
    true_contact_forces(
        truth=snakemake.input.truth,
        external_loads=list(snakemake.input.loads),
        out_dir=snakemake.output.curves,
        **snakemake.params,
    )
