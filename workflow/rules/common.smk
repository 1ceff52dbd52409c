"""Subject and trial helpers shared by the rules (logic lives in the musculo package)."""

import re
from pathlib import Path

from musculo.subject import discover_subjects, load_subject

SUBJECTS = config["subjects"] or discover_subjects("subjects")
_SUBJECTS = {s: load_subject(Path("subjects") / s / "subject.yaml") for s in SUBJECTS}


wildcard_constraints:
    subject="|".join(SUBJECTS) or "NONE",
    trial="[A-Za-z0-9_.-]+",


def subject(s):
    """The validated Subject of id s."""
    return _SUBJECTS[s]


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
    return [s for s in SUBJECTS if subject(s).emg_channels]


def generated_inputs(s):
    """Files a digital-twin subject's generator writes into its folder (none for lab subjects)."""
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
    return [res(s, "report.html") for s in SUBJECTS] + ["results/summary.html", "results/summary.tsv"]


def import_static_names():
    """Regex of the static trial names (imported by import_static)."""
    return "|".join(sorted({re.escape(static_trial(s)) for s in SUBJECTS})) or "NONE"


def emg_trials(s):
    """Trials of subject s whose EMG is processed (dynamic and MVC)."""
    return [t for t in trials(s) if t in trials(s, "dynamic") + trials(s, "mvc")]


def twin_subjects():
    """Ids of the digital-twin subjects."""
    return [s for s in SUBJECTS if subject(s).is_twin]


def twin_evaluated(s):
    """Estimator evaluation tables the truth evaluation waits for (their predictions sit beside them)."""
    methods = [m for m in config["twin"]["truth_methods"] if m in ("mse", "nmm")]
    return [res(s, m, "evaluation.tsv") for m in methods if subject(s).emg_channels]
