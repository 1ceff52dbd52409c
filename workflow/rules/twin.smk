"""Digital twins: generate a twin subject's lab files and evaluate the pipeline against its truth."""

TW = config["twin"]


# One generation rule per twin subject (twin_generate_<id>, "-" as "_"): each twin names its own
# trial files in its subject.yaml, and a rule's outputs cannot be computed from a wildcard.
for _twin in twin_subjects():

    rule:
        """Generate a twin subject's generic model, marker set, C3D trials and ground truth."""
        name:
            f"twin_generate_{_twin.replace('-', '_').replace('.', '_')}"
        input:
            subject=f"subjects/{_twin}/subject.yaml",
        output:
            generated=generated_inputs(_twin),
            truth=f"subjects/{_twin}/truth.npz",
        log:
            f"results/logs/{_twin}/twin_generate/twin_generate.log",
        resources:
            mem_mb=1500,
            runtime=30,
        conda:
            "../envs/musculo.yaml"
        params:
            marker_rate=TW["marker_rate"],
            analog_rate=TW["analog_rate"],
            marker_noise=TW["marker_noise"],
            perturbation=TW["perturbation"],
            emg=TW["emg"],
            so=TW["so"],
            truth=TW["truth"],
            max_residual_fraction=TW["max_residual_fraction"],
            mirrors=config["data"]["mirror"],
        script:
            "../scripts/twin_generate.py"


rule twin_truth:
    """Compare a twin's estimated excitations, kinematics and moments with its ground truth."""
    input:
        truth="subjects/{subject}/truth.npz",
        predictions=lambda w: twin_predictions(w.subject),
        so=lambda w: [res(w.subject, t, "so_activation.sto") for t in dynamic_trials(w.subject)],
        ik=lambda w: [res(w.subject, t, "ik.mot") for t in dynamic_trials(w.subject)],
        id=lambda w: [res(w.subject, t, "id.sto") for t in dynamic_trials(w.subject)],
    output:
        evaluation="results/{subject}/truth/evaluation.tsv",
    log:
        "results/logs/{subject}/twin_truth/twin_truth.log",
    resources:
        mem_mb=1000,
        runtime=15,
    group:
        "finish"
    conda:
        "../envs/musculo.yaml"
    params:
        results_dir=lambda w: res(w.subject),
        methods=TW["truth_methods"],
    script:
        "../scripts/twin_truth.py"
