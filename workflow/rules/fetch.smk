rule fetch:
    """Resolve, fetch and checksum-verify every input file of a subject."""
    input:
        subject="subjects/{subject}/subject.yaml",
        generated=lambda w: generated_inputs(w.subject),
    output:
        res("{subject}", "inputs.json"),
    log:
        "results/logs/{subject}/fetch.log",
    resources:
        mem_mb=500,
        runtime=10,
    group:
        "prepare"
    conda:
        "../envs/musculo.yaml"
    params:
        mirrors=config["data"]["mirror"],
    script:
        "../scripts/fetch.py"
