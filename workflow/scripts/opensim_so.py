from musculo.log import job_logging
from musculo.opensim_tools.common import table_span
from musculo.opensim_tools.path_fit import resolve_method

params = dict(snakemake.params)
method, accept = params.pop("method"), params.pop("accept")
with job_logging(snakemake.log[0]):
    paths = snakemake.input.paths or None
    method = resolve_method(method, fast="batched", paths=paths, accept=accept, stage="static optimization")
    common = dict(
        model=snakemake.input.model,
        coordinates_mot=snakemake.input.mot,
        time_range=table_span(snakemake.input.window),
        external_loads_xml=snakemake.input.loads,
        activation_out=snakemake.output.activation,
        force_out=snakemake.output.force,
        setup_out=snakemake.output.setup,
        reserves_out=snakemake.output.reserves,
        **params,
    )
    if method == "batched":
        from musculo.opensim_tools.batched_so import run_batched_so

        run_batched_so(inverse_dynamics=snakemake.input.id, paths=paths, **common)
    else:
        from musculo.opensim_tools.static_optimization import run_so

        run_so(**common)
