from musculo.log import job_logging
from musculo.opensim_tools.common import table_span
from musculo.opensim_tools.inverse_dynamics import run_id

with job_logging(snakemake.log[0]):
    run_id(
        model=snakemake.input.model,
        coordinates_mot=snakemake.input.mot,
        external_loads_xml=snakemake.input.loads,
        output_sto=snakemake.output.sto,
        setup_out=snakemake.output.setup,
        residuals_out=snakemake.output.residuals,
        time_range=table_span(snakemake.input.window),
        **snakemake.params,
    )
