rule import_static:
    """Import a static trial: markers in OpenSim's frame."""
    input:
        subject="subjects/{subject}/subject.yaml",
        inputs=res("{subject}", "inputs.json"),
    output:
        markers="results/{subject}/{trial}/markers.trc",
    log:
        "results/logs/{subject}/import_static/{trial}.log",
    resources:
        mem_mb=1000,
        runtime=10,
    group:
        "prepare"
    wildcard_constraints:
        trial=import_static_names(),
    conda:
        "../envs/musculo.yaml"
    params:
        marker_gap_max=scfg_param("import", "marker_gap_max"),
        grf_cutoff=scfg_param("import", "grf_cutoff"),
        filter_order=scfg_param("import", "filter_order"),
        force_threshold=scfg_param("import", "force_threshold"),
        min_contact=scfg_param("import", "min_contact"),
        required_markers=scfg_param("import", "required_markers"),
    script:
        "../scripts/import_trial.py"


rule import_trial:
    """Import a dynamic or MVC trial: markers, ground reactions, external loads, events, raw EMG."""
    input:
        subject="subjects/{subject}/subject.yaml",
        inputs=res("{subject}", "inputs.json"),
    output:
        markers="results/{subject}/{trial}/markers.trc",
        grf="results/{subject}/{trial}/grf.mot",
        loads="results/{subject}/{trial}/external_loads.xml",
        events="results/{subject}/{trial}/events.json",
        emg="results/{subject}/{trial}/emg_raw.npz",
    log:
        "results/logs/{subject}/import_trial/{trial}.log",
    resources:
        mem_mb=1000,
        runtime=10,
    group:
        "prepare"
    wildcard_constraints:
        trial=f"(?!(?:{import_static_names()})/)[A-Za-z0-9_.-]+",
    conda:
        "../envs/musculo.yaml"
    params:
        marker_gap_max=scfg_param("import", "marker_gap_max"),
        grf_cutoff=scfg_param("import", "grf_cutoff"),
        filter_order=scfg_param("import", "filter_order"),
        force_threshold=scfg_param("import", "force_threshold"),
        min_contact=scfg_param("import", "min_contact"),
        required_markers=scfg_param("import", "required_markers"),
    script:
        "../scripts/import_trial.py"
