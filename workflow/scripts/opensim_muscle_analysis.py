from musculo.log import job_logging
from musculo.opensim_tools.common import table_span
from musculo.opensim_tools.path_fit import resolve_method

params = dict(snakemake.params)
method, accept = params.pop("method"), params.pop("accept")
with job_logging(snakemake.log[0]):
    paths = snakemake.input.paths or None
    method = resolve_method(method, fast="polynomial", paths=paths, accept=accept, stage="muscle analysis")
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

        run_polynomial_muscle_analysis(paths=paths, **common)
    else:
        from musculo.opensim_tools.muscle_analysis import run_muscle_analysis

        run_muscle_analysis(**common)
