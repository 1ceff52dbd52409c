from musculo.log import job_logging
from musculo.opensim_tools.path_fit import fit_paths

with job_logging(snakemake.log[0]):
    fit_paths(
        model=snakemake.input.model,
        coordinates_mots=list(snakemake.input.mots),
        paths_out=snakemake.output.paths,
        path_set_out=snakemake.output.path_set,
        **snakemake.params,
    )
