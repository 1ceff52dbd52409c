from musculo.log import job_logging
from musculo.opensim_tools.joint_reaction import run_joint_reaction

with job_logging(snakemake.log[0]):
    run_joint_reaction(
        model=snakemake.input.model,
        coordinates_mot=snakemake.input.mot,
        external_loads_xml=snakemake.input.loads,
        so_forces_sto=snakemake.input.so_forces,
        output_sto=snakemake.output.sto,
        setup_out=snakemake.output.setup,
        summary_out=snakemake.output.summary,
        **snakemake.params,
    )
