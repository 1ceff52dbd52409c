from musculo.log import job_logging
from musculo.opensim_tools.static_optimization import run_so

with job_logging(snakemake.log[0]):
    run_so(
        model=snakemake.input.model,
        coordinates_mot=snakemake.input.mot,
        external_loads_xml=snakemake.input.loads,
        activation_out=snakemake.output.activation,
        force_out=snakemake.output.force,
        setup_out=snakemake.output.setup,
        reserves_out=snakemake.output.reserves,
        **snakemake.params,
    )
