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
    conda:
        "../envs/musculo.yaml"
    params:
        band=config["emg"]["band"],
        envelope_cutoff=config["emg"]["envelope_cutoff"],
        filter_order=config["emg"]["filter_order"],
        delay=config["emg"]["delay"],
        saturation_share_max=config["emg"]["saturation_share_max"],
        flat_std_min=config["emg"]["flat_std_min"],
        snr_min_db=config["emg"]["snr_min_db"],
        mains_share_max=config["emg"]["mains_share_max"],
        exclude_flagged=config["emg"]["exclude_flagged"],
    script:
        "../scripts/emg_envelope.py"


rule emg_normalise:
    """Per-channel normalisation divisor (MVC trials, else peak over the dynamic trials)."""
    input:
        subject="subjects/{subject}/subject.yaml",
        envelopes=lambda w: [res(w.subject, t, "emg_envelope.sto") for t in emg_trials(w.subject)],
    output:
        res("{subject}", "emg_normalisation.json"),
    log:
        "results/logs/{subject}/emg_normalise/emg_normalise.log",
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
    conda:
        "../envs/musculo.yaml"
    script:
        "../scripts/emg_excitations.py"
