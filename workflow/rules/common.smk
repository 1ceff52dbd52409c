"""Subject and trial helpers shared by the rules (logic lives in the musculo package)."""

import fnmatch
import re
from pathlib import Path

from musculo.contact import not_fitted_reason
from musculo.errors import SubjectFileError
from musculo.estimators import registry
from musculo.settings import Settings
from musculo.subject import check_subject_ids, discover_subjects, load_subjects, subject_config

# Every requested id (checked: plain folder names with a subject.yaml). A subject whose subject.yaml
# is invalid stays in SUBJECTS but not in VALID_SUBJECTS: only its fetch job is planned, and that job
# fails with the file's error, so under --keep-going the other subjects and the summary carry on.
SUBJECTS = check_subject_ids(config["subjects"] or discover_subjects("subjects"), "subjects")
_SUBJECTS, SUBJECT_ERRORS = load_subjects(SUBJECTS, "subjects")
VALID_SUBJECTS = [s for s in SUBJECTS if s in _SUBJECTS]


wildcard_constraints:
    subject="|".join(re.escape(s) for s in SUBJECTS) or "NONE",
    trial="[A-Za-z0-9_][A-Za-z0-9_.-]*",
    method="|".join(re.escape(m) for m in config["evaluation"]["methods"]) or "NONE",


def subject(s):
    """The validated Subject of id s (raises the subject file's error for an invalid one)."""
    if s in SUBJECT_ERRORS:
        raise SubjectFileError(SUBJECT_ERRORS[s])
    return _SUBJECTS[s]


def scfg(s, section):
    """Config section of subject s: the workflow config with the subject's own overrides."""
    if s not in _SUBJECTS:
        return config[section]
    if s not in _SUBJECT_CONFIGS:
        _SUBJECT_CONFIGS[s] = subject_config(config, subject(s))
    return _SUBJECT_CONFIGS[s][section]


_SUBJECT_CONFIGS = {}


def scfg_param(section, key):
    """A params callable: config[section][key] as overridden by the job's subject."""
    return lambda w: scfg(w.subject, section)[key]


def trials(s, role=None):
    """Trial names of subject s (with the given role)."""
    return subject(s).trial_names(role)


def dynamic_trials(s):
    """Dynamic (movement) trials of subject s."""
    return trials(s, "dynamic")


def static_trial(s):
    """The static (scaling) trial of subject s."""
    return trials(s, "static")[0]


def emg_subjects():
    """Subjects with EMG channels."""
    return [s for s in VALID_SUBJECTS if subject(s).emg_channels]


def generated_inputs(s):
    """Files a digital-twin subject's generator writes into its folder (none for lab subjects)."""
    if s not in _SUBJECTS:
        return []
    sub = subject(s)
    if not sub.is_twin:
        return []
    refs = [sub.raw["model"], sub.raw["marker_set"]]
    refs += [ref for t in sub.trials for ref in (t.file, t.grf, t.analog) if ref is not None]
    return [str(Path("subjects", s, ref)) for ref in refs if isinstance(ref, str)]


def res(s, *parts):
    """Path under results/<s>/."""
    return str(Path("results", s, *parts))


def all_targets():
    """Final outputs of every subject (the workflow's default target)."""
    bad = [res(s, "inputs.json") for s in SUBJECT_ERRORS]  # its fetch job reports the error
    return [res(s, "report.html") for s in VALID_SUBJECTS] + bad + ["results/summary.html", "results/summary.tsv"]


def import_static_names():
    """Regex of the static trial names (imported by import_static)."""
    return "|".join(sorted({re.escape(static_trial(s)) for s in VALID_SUBJECTS})) or "NONE"


def emg_trials(s):
    """Trials of subject s whose EMG is processed (dynamic and MVC)."""
    return [t for t in trials(s) if t in trials(s, "dynamic") + trials(s, "mvc")]


def twin_subjects():
    """Ids of the digital-twin subjects."""
    return [s for s in VALID_SUBJECTS if subject(s).is_twin]


def twin_predictions(s):
    """Estimator prediction folders the truth evaluation reads (methods that ran for the twin)."""
    return [res(s, m, "predictions") for m in config["twin"]["truth_methods"] if m in methods_for(s)]


# --- estimators: every method of evaluation.methods through the registry and one generic rule ---
registry.load_plugins(config["evaluation"]["plugins"])
METHODS = list(config["evaluation"]["methods"])
SPECS = registry.specs(METHODS)  # an unknown method fails here, naming the registered ones


def settings_for(s):
    """Typed settings of subject s (the config with the subject's own overrides), built once."""
    if s not in _SETTINGS:
        overrides = subject(s).config_overrides if s in _SUBJECTS else {}
        _SETTINGS[s] = Settings.from_config(config, overrides=overrides)
    return _SETTINGS[s]


_SETTINGS = {}


def has_emg(s):
    """Whether subject s lists EMG channels."""
    return bool(subject(s).emg_channels)


def methods_for(s):
    """The methods evaluated for subject s (those needing EMG only when it has EMG)."""
    return [m for m in METHODS if has_emg(s) or not SPECS[m].needs_emg]


def trial_files(s, names):
    """Files ``names`` of every dynamic trial of subject s."""
    return [res(s, t, n) for t in dynamic_trials(s) for n in names]


def estimate_inputs(w):
    """Every file the estimate rule's method reads for its subject."""
    spec, s = SPECS[w.method], w.subject
    inputs = {
        "subject": f"subjects/{s}/subject.yaml",
        "trials": trial_files(s, ["muscle_analysis.npz", "id.sto", "events.json"]),
        "emg": trial_files(s, ["emg.sto"]) if has_emg(s) else [],
        "so": trial_files(s, ["so_activation.sto"]) if spec.needs_so else [],
    }
    if has_emg(s) and spec.uses_calibration(settings_for(s)):
        inputs["calibration"] = res(s, "physics", "calibration.json")
    return inputs


def report_inputs(w):
    """Every file the subject report reads besides the evaluation and quality tables."""
    s = w.subject
    per_trial = ["ik.mot", "id.sto", "so_activation.sto", "events.json", "ik_marker_errors.sto",
                 "residuals.json", "so_reserves.json"]
    per_trial += ["emg.sto", "emg_quality.json"] if has_emg(s) else []
    return {
        "inputs": res(s, "inputs.json"),
        "scale_quality": res(s, "model", "scale_quality.json"),
        "trial_files": trial_files(s, per_trial),
        "predictions": [res(s, m, "predictions") for m in methods_for(s)],
        "lomo": [res(s, m, "lomo") for m in methods_for(s)],
        "truth": f"subjects/{s}/truth.npz" if subject(s).is_twin else [],
    }


LOSO_COHORTS = ["twin", "biomechzoo"]


def cohort_subjects(cohort):
    """Subjects with EMG of a cohort: ids starting with '<cohort>-'."""
    return [s for s in emg_subjects() if s.startswith(f"{cohort}-")]


def method_not_fitted(w):
    """Why method w.method gave subject w.subject no muscle forces (None: it did, or it is SO)."""
    if w.method == "so":
        return None
    return not_fitted_reason(checkpoints.estimate.get(subject=w.subject, method=w.method).output.model)


def contact_trials(w):
    """The trials whose joint reactions a method's contact table is made of."""
    return [] if method_not_fitted(w) is not None else dynamic_trials(w.subject)


def contact_tables(s):
    """Joint contact-force tables of subject s (config contact.methods that ran for it)."""
    methods = [m for m in config["contact"]["methods"] if m == "so" or m in methods_for(s)]
    return [res(s, "contact", m, "evaluation.tsv") for m in methods]


# --- PI-CNN cohorts (workflow/rules/cohort_picnn.smk) ---
PICNN_FILES = ["muscle_analysis.npz", "id.sto", "emg.sto", "so_activation.sto", "events.json"]


def picnn_cohorts():
    """Cohort name -> its EMG subjects (config picnn.cohorts patterns); cohorts of one subject are dropped."""
    out = {}
    for name, patterns in config["picnn"]["cohorts"].items():
        members = sorted(s for s in emg_subjects() if any(fnmatch.fnmatchcase(s, p) for p in patterns))
        if len(members) >= 2:
            out[name] = members
    return out


def picnn_cohort_of(s):
    """The cohort of subject s (None: no cohort; transfer rows are from scratch only)."""
    return next((c for c, members in picnn_cohorts().items() if s in members), None)


def picnn_members(cohort):
    """Member -> its dynamic trial folders."""
    return {m: [res(m, t) for t in dynamic_trials(m)] for m in picnn_cohorts()[cohort]}


def picnn_member_files(cohort):
    """Every trial file the members of a PI-CNN cohort contribute."""
    return [f for m in picnn_cohorts()[cohort] for f in trial_files(m, PICNN_FILES)]


def picnn_transfer_inputs(w):
    """Inputs of a subject's PI-CNN transfer job (its cohort's generic model when it has a cohort)."""
    s = w.subject
    cohort = picnn_cohort_of(s)
    inputs = {"subject": f"subjects/{s}/subject.yaml", "trials": trial_files(s, PICNN_FILES)}
    if cohort:
        inputs["members"] = picnn_member_files(cohort)
        inputs["generic"] = f"results/cohorts/{cohort}/picnn/{s}/generic.json"
    return inputs
