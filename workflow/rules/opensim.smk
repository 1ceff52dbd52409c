"""OpenSim stages: scale, IK, ID, static optimization, muscle analysis, quality table."""

from musculo.opensim_tools.stages import trial_window


rule scale:
    """Scale the generic model to the subject from its static trial (ScaleTool)."""
    input:
        inputs=res("{subject}", "inputs.json"),
        static=lambda w: res(w.subject, static_trial(w.subject), "markers.trc"),
    output:
        model=res("{subject}", "model", "scaled.osim"),
        setup=res("{subject}", "model", "scale_setup.xml"),
        quality=res("{subject}", "model", "scale_quality.json"),
    log:
        "results/logs/{subject}/scale/scale.log",
    resources:
        mem_mb=1000,
        runtime=15,
    group:
        "opensim"
    params:
        mass=lambda w: subject(w.subject).mass,
        height=lambda w: subject(w.subject).height,
        scale_bounds=scfg_param("opensim", "scale_bounds"),
        max_marker_rms=scfg_param("opensim", "max_marker_rms"),
        max_marker_error=scfg_param("opensim", "max_marker_error"),
        min_markers=scfg_param("opensim", "min_static_markers"),
        min_marker_coverage=scfg_param("opensim", "min_marker_coverage"),
        marker_weights=scfg_param("opensim", "marker_weights"),
    conda:
        "../envs/musculo.yaml"
    script:
        "../scripts/opensim_scale.py"


rule ik:
    """Inverse kinematics of one dynamic trial (InverseKinematicsTool)."""
    input:
        inputs=res("{subject}", "inputs.json"),
        model=res("{subject}", "model", "scaled.osim"),
        markers=res("{subject}", "{trial}", "markers.trc"),
        events=res("{subject}", "{trial}", "events.json"),
    output:
        mot=res("{subject}", "{trial}", "ik.mot"),
        padded=res("{subject}", "{trial}", "ik_padded.mot"),
        setup=res("{subject}", "{trial}", "ik_setup.xml"),
        errors=res("{subject}", "{trial}", "ik_marker_errors.sto"),
    log:
        "results/logs/{subject}/ik/{trial}.log",
    resources:
        mem_mb=1000,
        runtime=20,
    group:
        "opensim"
    params:
        time_range=lambda w: trial_window(subject=subject(w.subject), trial=w.trial, default=scfg(w.subject, "opensim")["time_range"]),
        max_frames=scfg_param("opensim", "max_frames"),
        strike_lead=scfg_param("opensim", "strike_lead"),
        strike_sides=lambda w: subject(w.subject).tracked_sides,
        off_lag=scfg_param("opensim", "off_lag"),
        marker_weights=scfg_param("opensim", "marker_weights"),
        coordinate_weights=scfg_param("opensim", "ik_coordinate_weights"),
        flag_limit=scfg_param("opensim", "ik_flag_limit"),
        pad=scfg_param("opensim", "edge_pad"),
    conda:
        "../envs/musculo.yaml"
    script:
        "../scripts/opensim_ik.py"


rule id:
    """Inverse dynamics of one dynamic trial with its external loads (InverseDynamicsTool)."""
    input:
        model=res("{subject}", "model", "scaled.osim"),
        mot=res("{subject}", "{trial}", "ik_padded.mot"),
        window=res("{subject}", "{trial}", "ik.mot"),
        loads=res("{subject}", "{trial}", "external_loads.xml"),
        grf=res("{subject}", "{trial}", "grf.mot"),
    output:
        sto=res("{subject}", "{trial}", "id.sto"),
        setup=res("{subject}", "{trial}", "id_setup.xml"),
        residuals=res("{subject}", "{trial}", "residuals.json"),
    log:
        "results/logs/{subject}/id/{trial}.log",
    resources:
        mem_mb=1000,
        runtime=20,
    group:
        "opensim"
    params:
        lowpass_hz=scfg_param("opensim", "lowpass_hz"),
        height=lambda w: subject(w.subject).height,
    conda:
        "../envs/musculo.yaml"
    script:
        "../scripts/opensim_id.py"


rule path_fit:
    """Fit every muscle path of the scaled model as a polynomial over the coordinates the trials visit."""
    input:
        model=res("{subject}", "model", "scaled.osim"),
        mots=lambda w: [res(w.subject, t, "ik.mot") for t in dynamic_trials(w.subject)],
    output:
        paths=res("{subject}", "model", "paths.json"),
        path_set=res("{subject}", "model", "function_based_paths.xml"),
    log:
        "results/logs/{subject}/path_fit/path_fit.log",
    resources:
        mem_mb=3000,
        runtime=60,
    group:
        "opensim"
    params:
        max_fit_frames=lambda w: scfg(w.subject, "opensim")["path_fit"]["frames"],
        samples_per_frame=lambda w: scfg(w.subject, "opensim")["path_fit"]["samples_per_frame"],
        sampling_bounds_deg=lambda w: scfg(w.subject, "opensim")["path_fit"]["bounds_deg"],
        max_order=lambda w: scfg(w.subject, "opensim")["path_fit"]["max_order"],
        moment_arm_threshold=lambda w: scfg(w.subject, "opensim")["path_fit"]["moment_arm_threshold"],
        seed=config["seed"],
    conda:
        "../envs/musculo.yaml"
    script:
        "../scripts/opensim_path_fit.py"


rule so:
    """Static optimization of one dynamic trial with reserve and residual actuators (opensim.so_method)."""
    input:
        model=res("{subject}", "model", "scaled.osim"),
        mot=res("{subject}", "{trial}", "ik_padded.mot"),
        window=res("{subject}", "{trial}", "ik.mot"),
        loads=res("{subject}", "{trial}", "external_loads.xml"),
        grf=res("{subject}", "{trial}", "grf.mot"),
        id=lambda w: res(w.subject, w.trial, "id.sto") if scfg(w.subject, "opensim")["so_method"] != "opensim" else [],
        paths=lambda w: res(w.subject, "model", "paths.json") if scfg(w.subject, "opensim")["so_method"] != "opensim" else [],
    output:
        activation=res("{subject}", "{trial}", "so_activation.sto"),
        force=res("{subject}", "{trial}", "so_force.sto"),
        setup=res("{subject}", "{trial}", "so_setup.xml"),
        reserves=res("{subject}", "{trial}", "so_reserves.json"),
    log:
        "results/logs/{subject}/so/{trial}.log",
    resources:
        mem_mb=1000,
        runtime=60,
    group:
        "opensim"
    params:
        method=scfg_param("opensim", "so_method"),
        accept=lambda w: scfg(w.subject, "opensim")["path_fit"]["accept"],
        reserve_optimal_force=scfg_param("opensim", "reserve_optimal_force"),
        residual_optimal_force=scfg_param("opensim", "residual_optimal_force"),
        lowpass_hz=scfg_param("opensim", "lowpass_hz"),
    conda:
        "../envs/musculo.yaml"
    script:
        "../scripts/opensim_so.py"


rule muscle_analysis:
    """Muscle-tendon lengths, velocities and moment arms of one dynamic trial (opensim.ma_method)."""
    input:
        model=res("{subject}", "model", "scaled.osim"),
        mot=res("{subject}", "{trial}", "ik_padded.mot"),
        window=res("{subject}", "{trial}", "ik.mot"),
        paths=lambda w: res(w.subject, "model", "paths.json") if scfg(w.subject, "opensim")["ma_method"] != "opensim" else [],
    output:
        npz=res("{subject}", "{trial}", "muscle_analysis.npz"),
        sto_dir=directory(res("{subject}", "{trial}", "muscle_analysis")),
        setup=res("{subject}", "{trial}", "ma_setup.xml"),
    log:
        "results/logs/{subject}/muscle_analysis/{trial}.log",
    resources:
        mem_mb=1000,
        runtime=60,
    group:
        "opensim"
    params:
        method=scfg_param("opensim", "ma_method"),
        accept=lambda w: scfg(w.subject, "opensim")["path_fit"]["accept"],
        lowpass_hz=scfg_param("opensim", "lowpass_hz"),
        coordinates=lambda w: subject(w.subject).coordinates if scfg(w.subject, "opensim")["ma_coordinates"] == "tracked" else None,
    conda:
        "../envs/musculo.yaml"
    script:
        "../scripts/opensim_muscle_analysis.py"


rule quality:
    """Per-subject quality table: every check with its value, limit and PASS/WARN/FAIL verdict."""
    input:
        scale=res("{subject}", "model", "scale_quality.json"),
        model=res("{subject}", "model", "scaled.osim"),
        ik_mots=lambda w: [res(w.subject, t, "ik.mot") for t in dynamic_trials(w.subject)],
        ik=lambda w: [res(w.subject, t, "ik_marker_errors.sto") for t in dynamic_trials(w.subject)],
        id=lambda w: [res(w.subject, t, "residuals.json") for t in dynamic_trials(w.subject)],
        id_moments=lambda w: [res(w.subject, t, "id.sto") for t in dynamic_trials(w.subject)],
        events=lambda w: [res(w.subject, t, "events.json") for t in dynamic_trials(w.subject)],
        so=lambda w: [res(w.subject, t, "so_reserves.json") for t in dynamic_trials(w.subject)],
        emg=lambda w: (
            [res(w.subject, t, "emg_quality.json") for t in dynamic_trials(w.subject)]
            if subject(w.subject).emg_channels
            else []
        ),
        emg_normalisation=lambda w: (
            res(w.subject, "emg_normalisation.json") if subject(w.subject).emg_channels else []
        ),
        paths=lambda w: (
            res(w.subject, "model", "paths.json")
            if {scfg(w.subject, "opensim")["ma_method"], scfg(w.subject, "opensim")["so_method"]} != {"opensim"}
            else []
        ),
        truth=lambda w: f"subjects/{w.subject}/truth.npz" if subject(w.subject).is_twin else [],
    output:
        tsv=res("{subject}", "quality.tsv"),
    log:
        "results/logs/{subject}/quality/quality.log",
    resources:
        mem_mb=500,
        runtime=10,
    group:
        "opensim"
    params:
        max_marker_rms=scfg_param("opensim", "max_marker_rms"),
        max_marker_error=scfg_param("opensim", "max_marker_error"),
        ik_flag_limit=scfg_param("opensim", "ik_flag_limit"),
        residual_force_pct_limit=scfg_param("opensim", "residual_force_pct_limit"),
        residual_moment_pct_limit=scfg_param("opensim", "residual_moment_pct_limit"),
        reserve_limit=scfg_param("opensim", "reserve_limit"),
        range_share_limit=scfg_param("opensim", "ik_range_share_limit"),
        accept=lambda w: scfg(w.subject, "opensim")["path_fit"]["accept"],
        twin_residual_pct_limit=100.0 * config["twin"]["max_residual_fraction"],
    conda:
        "../envs/musculo.yaml"
    script:
        "../scripts/opensim_quality.py"
