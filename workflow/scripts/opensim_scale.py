from musculo.log import job_logging
from musculo.opensim_tools.stages import scale_subject

with job_logging(snakemake.log[0]):
    scale_subject(
        inputs_json=snakemake.input.inputs,
        static_trc=snakemake.input.static,
        output_model=snakemake.output.model,
        setup_out=snakemake.output.setup,
        quality_out=snakemake.output.quality,
        **snakemake.params,
    )
