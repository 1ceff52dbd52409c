from pathlib import Path

from musculo.log import job_logging
from musculo.trial_import import import_trial

with job_logging(snakemake.log[0]):
    import_trial(
        subject_file=snakemake.input.subject,
        inputs_json=snakemake.input.inputs,
        trial=snakemake.wildcards.trial,
        out_dir=Path(snakemake.output.markers).parent,
        **snakemake.params,
    )
