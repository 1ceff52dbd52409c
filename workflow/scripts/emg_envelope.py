from musculo.emg import process_emg_trial
from musculo.log import job_logging

with job_logging(snakemake.log[0]):
    process_emg_trial(
        emg_raw=snakemake.input.raw,
        markers=snakemake.input.markers,
        envelope_out=snakemake.output.envelope,
        quality_out=snakemake.output.quality,
        **snakemake.params,
    )
