from musculo.log import job_logging
from musculo.opensim_tools.muscle_analysis import run_muscle_analysis

with job_logging(snakemake.log[0]):
    run_muscle_analysis(
        model=snakemake.input.model,
        coordinates_mot=snakemake.input.mot,
        output_npz=snakemake.output.npz,
        sto_dir=snakemake.output.sto_dir,
        setup_out=snakemake.output.setup,
        **snakemake.params,
    )
