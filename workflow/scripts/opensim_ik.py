from musculo.log import job_logging
from musculo.opensim_tools.stages import ik_trial

with job_logging(snakemake.log[0]):
    ik_trial(
        inputs_json=snakemake.input.inputs,
        model=snakemake.input.model,
        markers_trc=snakemake.input.markers,
        events=snakemake.input.events,
        output_mot=snakemake.output.mot,
        setup_out=snakemake.output.setup,
        errors_out=snakemake.output.errors,
        padded_out=snakemake.output.padded,
        **snakemake.params,
    )
