"""musculo: raw lab recordings -> OpenSim -> deep-muscle excitation estimates -> reports.

Run every subject:        snakemake --cores 8
Some subjects:            snakemake --cores 8 --config 'subjects=[motonms-unipd]'
Reprocess one subject:    snakemake --cores 8 results/<id>/report.html
"""

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/fetch.smk"
include: "workflow/rules/import.smk"
include: "workflow/rules/emg.smk"
include: "workflow/rules/opensim.smk"
include: "workflow/rules/estimate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/twin.smk"
include: "workflow/rules/contact.smk"
include: "workflow/rules/cohort_attention.smk"
include: "workflow/rules/cohort_picnn.smk"


rule all:
    """Every subject's outputs and the cohort summary."""
    input:
        all_targets() + CONTACT_TARGETS,
    default_target: True
