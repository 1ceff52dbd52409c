from musculo.emg import emg_excitations
from musculo.log import job_logging

with job_logging(snakemake.log[0]):
    emg_excitations(
        subject_file=snakemake.input.subject,
        envelope_sto=snakemake.input.envelope,
        quality_json=snakemake.input.quality,
        normalisation_json=snakemake.input.normalisation,
        output=snakemake.output[0],
    )
