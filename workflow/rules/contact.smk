"""Joint contact forces from each method's muscle forces (OpenSim JointReaction + musculo.contact)."""

from musculo.contact import contact_methods, method_forces_file, method_forces_input

CONTACT = config["contact"]
# every valid subject's contact tables (one per method), part of the default target
CONTACT_TARGETS = [
    res(s, "contact", m, "evaluation.tsv")
    for s in VALID_SUBJECTS
    for m in contact_methods(CONTACT["methods"], has_emg=bool(subject(s).emg_channels))
]


rule joint_reaction:
    """Joint reaction loads of one trial with one method's muscle forces (AnalyzeTool + JointReaction)."""
    input:
        model=res("{subject}", "model", "scaled.osim"),
        mot=res("{subject}", "{trial}", "ik_padded.mot"),
        loads=res("{subject}", "{trial}", "external_loads.xml"),
        grf=res("{subject}", "{trial}", "grf.mot"),
        forces=lambda w: method_forces_input(w.subject, w.method, w.trial),
        so_forces=res("{subject}", "{trial}", "so_force.sto"),
    output:
        sto=res("{subject}", "contact", "{method}", "{trial}.reactions.sto"),
        setup=res("{subject}", "contact", "{method}", "{trial}_setup.xml"),
        summary=res("{subject}", "contact", "{method}", "{trial}.reactions.json"),
    log:
        "results/logs/{subject}/joint_reaction/{method}/{trial}.log",
    wildcard_constraints:
        method="[A-Za-z0-9_]+",
    params:
        forces_sto=lambda w: method_forces_file(w.subject, w.method, w.trial),
        joints=CONTACT["joints"],
        sides=CONTACT["sides"],
        lowpass_hz=scfg_param("opensim", "lowpass_hz"),
        reserve_optimal_force=scfg_param("opensim", "reserve_optimal_force"),
        residual_optimal_force=scfg_param("opensim", "residual_optimal_force"),
    conda:
        "../envs/musculo.yaml"
    script:
        "../scripts/joint_reaction.py"


rule contact_forces:
    """Knee (total, medial, lateral), hip and ankle contact forces of one method over the trials."""
    input:
        reactions=lambda w: [
            res(w.subject, "contact", w.method, f"{t}.reactions.sto") for t in contact_trials(w)
        ],
        summaries=lambda w: [
            res(w.subject, "contact", w.method, f"{t}.reactions.json") for t in contact_trials(w)
        ],
        events=lambda w: [res(w.subject, t, "events.json") for t in contact_trials(w)],
        scale=res("{subject}", "model", "scale_quality.json"),
        fit=lambda w: [] if w.method == "so" else res(w.subject, w.method, "model"),
        truth=lambda w: res(w.subject, "contact", "truth", "curves") if subject(w.subject).is_twin else [],
    output:
        evaluation=res("{subject}", "contact", "{method}", "evaluation.tsv"),
        curves=directory(res("{subject}", "contact", "{method}", "curves")),
    log:
        "results/logs/{subject}/contact/{method}.log",
    wildcard_constraints:
        method="(?!truth$)[A-Za-z0-9_]+",
    params:
        subject="{subject}",
        method="{method}",
        trials=contact_trials,
        not_fitted=method_not_fitted,
        mass=lambda w: subject(w.subject).mass,
        intercondylar_distance=CONTACT["intercondylar_distance"],
        published_peak_bw=CONTACT["published_peak_bw"],
    conda:
        "../envs/musculo.yaml"
    script:
        "../scripts/contact_forces.py"


rule contact_truth:
    """A twin's true contact forces: JointReaction on the true model with the true muscle forces."""
    input:
        truth="subjects/{subject}/truth.npz",
        loads=lambda w: [res(w.subject, t, "external_loads.xml") for t in dynamic_trials(w.subject)],
        grf=lambda w: [res(w.subject, t, "grf.mot") for t in dynamic_trials(w.subject)],
    output:
        curves=directory(res("{subject}", "contact", "truth", "curves")),
    log:
        "results/logs/{subject}/contact/truth.log",
    params:
        subject="{subject}",
        trials=lambda w: dynamic_trials(w.subject),
        mass=lambda w: subject(w.subject).mass,
        joints=CONTACT["joints"],
        sides=CONTACT["sides"],
        lowpass_hz=scfg_param("opensim", "lowpass_hz"),
        intercondylar_distance=CONTACT["intercondylar_distance"],
    conda:
        "../envs/musculo.yaml"
    script:
        "../scripts/contact_truth.py"
