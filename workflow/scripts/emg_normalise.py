from musculo.emg import normalise_emg
from musculo.log import job_logging

with job_logging(snakemake.log[0]):
    normalise_emg(
        subject_file=snakemake.input.subject,
        envelopes=list(snakemake.input.envelopes),
        qualities=list(snakemake.input.qualities),
        output_json=snakemake.output[0],
        **snakemake.params,
    )
