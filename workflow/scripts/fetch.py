from musculo.log import job_logging
from musculo.subject import fetch_inputs

with job_logging(snakemake.log[0]):
    fetch_inputs(
        subject_file=snakemake.input.subject,
        output_json=snakemake.output[0],
        mirrors=snakemake.params.mirrors,
    )
