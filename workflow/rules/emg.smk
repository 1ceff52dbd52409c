rule emg_envelope:
    """Band-pass, rectify and low-pass one trial's EMG onto the marker time base; flag bad channels."""
    input:
        raw="results/{subject}/{trial}/emg_raw.npz",
        markers="results/{subject}/{trial}/markers.trc",
    output:
        envelope="results/{subject}/{trial}/emg_envelope.sto",
        quality="results/{subject}/{trial}/emg_quality.json",
    log:
        "results/logs/{subject}/emg_envelope/{trial}.log",
    resources:
        mem_mb=1000,
        runtime=10,
    group:
        "prepare"
    conda:
        "../envs/musculo.yaml"
    params:
        band=scfg_param("emg", "band"),
        envelope_cutoff=scfg_param("emg", "envelope_cutoff"),
        filter_order=scfg_param("emg", "filter_order"),
        delay=scfg_param("emg", "delay"),
        saturation_share_max=scfg_param("emg", "saturation_share_max"),
        flat_std_min=scfg_param("emg", "flat_std_min"),
        snr_min_db=scfg_param("emg", "snr_min_db"),
        mains_share_max=scfg_param("emg", "mains_share_max"),
        max_abs=scfg_param("emg", "max_abs"),
        exclude_flagged=scfg_param("emg", "exclude_flagged"),
    script:
        "../scripts/emg_envelope.py"


rule emg_normalise:
    """Per-channel normalisation divisor (MVC trials, else peak over the dynamic trials)."""
    input:
        subject="subjects/{subject}/subject.yaml",
        envelopes=lambda w: [res(w.subject, t, "emg_envelope.sto") for t in emg_trials(w.subject)],
        qualities=lambda w: [res(w.subject, t, "emg_quality.json") for t in emg_trials(w.subject)],
    output:
        res("{subject}", "emg_normalisation.json"),
    log:
        "results/logs/{subject}/emg_normalise/emg_normalise.log",
    resources:
        mem_mb=500,
        runtime=10,
    group:
        "prepare"
    conda:
        "../envs/musculo.yaml"
    params:
        trials=lambda w: emg_trials(w.subject),
    script:
        "../scripts/emg_normalise.py"


rule emg_excitations:
    """Normalised excitations per model muscle from the channels that pass quality."""
    input:
        subject="subjects/{subject}/subject.yaml",
        envelope="results/{subject}/{trial}/emg_envelope.sto",
        quality="results/{subject}/{trial}/emg_quality.json",
        normalisation=res("{subject}", "emg_normalisation.json"),
    output:
        "results/{subject}/{trial}/emg.sto",
    log:
        "results/logs/{subject}/emg_excitations/{trial}.log",
    resources:
        mem_mb=500,
        runtime=10,
    group:
        "prepare"
    conda:
        "../envs/musculo.yaml"
    script:
        "../scripts/emg_excitations.py"
