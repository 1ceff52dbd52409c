from musculo.log import job_logging
from musculo.opensim_tools.common import table_span

params = dict(snakemake.params)
method = params.pop("method")
with job_logging(snakemake.log[0]):
    common = dict(
        model=snakemake.input.model,
        coordinates_mot=snakemake.input.mot,
        time_range=table_span(snakemake.input.window),
        output_npz=snakemake.output.npz,
        sto_dir=snakemake.output.sto_dir,
        setup_out=snakemake.output.setup,
        **params,
    )
    if method == "polynomial":
        from musculo.opensim_tools.path_fit import run_polynomial_muscle_analysis

        run_polynomial_muscle_analysis(paths=snakemake.input.paths, **common)
    else:
        from musculo.opensim_tools.muscle_analysis import run_muscle_analysis

        run_muscle_analysis(**common)
