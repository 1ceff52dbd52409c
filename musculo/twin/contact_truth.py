"""A twin's true joint contact forces: OpenSim JointReaction on the TRUE model with the true forces.

For each dynamic trial of a twin, from its ``truth.npz``: the true model is rebuilt from the true
parameters (:func:`musculo.twin.model.build_model`), the true coordinates and the true muscle forces
are written as tables, and :func:`musculo.opensim_tools.joint_reaction.run_joint_reaction` runs
with the trial's external loads as imported by the pipeline (``results/<s>/<trial>/external_loads.xml``:
the ground reactions the generator put on the force plates) and, as reserves and residuals, the
part of the true generalized forces (``<trial>/moments``) the true muscles do not produce (close to
zero: the truth's forces come from static optimization on the true model). The channels are those
of :func:`musculo.contact.contact_channels`, with the intercondylar distance scaled by the true
tibia length factor. Written into ``out_dir`` as ``<trial>.sto`` (N) plus ``info.json``, the format
of the contact stage's curves, which :func:`musculo.contact.contact_forces` compares against.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from musculo import logger
from musculo.contact import NOMINAL_INTERCONDYLAR_DISTANCE, G, contact_channels
from musculo.errors import InputDataError
from musculo.io.atomic import atomic_output
from musculo.io.tables import read_sto, write_sto
from musculo.opensim_tools.isolated import run_isolated
from musculo.twin.generate import load_truth
from musculo.twin.model import ModelParameters, build_model, write_model


def true_parameters_of(truth: Mapping[str, Any]) -> ModelParameters:
    """The true model's parameters stored in a ``truth.npz`` (key ``parameters``)."""
    data = json.loads(str(truth["parameters"]))
    return ModelParameters(
        segment_scale=dict(data.get("segment_scale") or {}),
        mass=data.get("mass"),
        max_isometric_force=dict(data.get("max_isometric_force") or {}),
        optimal_fiber_length=dict(data.get("optimal_fiber_length") or {}),
        tendon_slack_length=dict(data.get("tendon_slack_length") or {}),
    )


def true_contact_forces(
    *,
    subject: str,
    truth: str | os.PathLike[str],
    trials: Sequence[str],
    external_loads: Sequence[str | os.PathLike[str]],
    mass: float,
    out_dir: str | os.PathLike[str],
    joints: Mapping[str, str] | None = None,
    sides: Sequence[str] = ("r", "l"),
    lowpass_hz: float = 6.0,
    intercondylar_distance: float = NOMINAL_INTERCONDYLAR_DISTANCE,
) -> dict[str, Any]:
    """Write the twin's true contact-force curves (see the module docstring); return a summary."""
    if len(trials) != len(external_loads):
        raise InputDataError(f"{subject}: {len(trials)} trials but {len(external_loads)} external loads")
    data = load_truth(truth)
    params = true_parameters_of(data)
    coords = [str(c) for c in data["coordinates"]]
    muscles = [str(m) for m in data["muscles"]]
    summary: dict[str, Any] = {"subject": subject, "trials": {}}
    tibia = float(params.segment_scale.get("tibia", 1.0))
    distance = intercondylar_distance * tibia
    with tempfile.TemporaryDirectory(prefix="musculo-truth-contact-") as tmp_name, \
            atomic_output(out_dir, is_dir=True) as out:
        tmp = Path(tmp_name)
        model = tmp / "true.osim"
        write_model(model=build_model(name=f"{subject}_true", parameters=params), path=model)
        for trial, loads in zip(trials, external_loads, strict=True):
            if f"{trial}/force" not in data:
                raise InputDataError(
                    f"{truth}: no key '{trial}/force'; regenerate the twin (rule twin_generate)"
                )
            time = pd.Index(np.asarray(data[f"{trial}/time"], dtype=float), name="time")
            write_sto(tmp / f"{trial}_q.mot", pd.DataFrame(data[f"{trial}/q"], index=time, columns=coords),
                      name="true_coordinates")
            write_sto(tmp / f"{trial}_forces.sto",
                      pd.DataFrame(data[f"{trial}/force"], index=time, columns=muscles), name="true_forces")
            write_sto(tmp / f"{trial}_tau.sto",
                      pd.DataFrame(data[f"{trial}/moments"], index=time, columns=coords), name="true_moments")
            info = run_isolated(
                "joint_reaction",
                model=str(model),
                coordinates_mot=str(tmp / f"{trial}_q.mot"),
                external_loads_xml=str(loads),
                forces_sto=str(tmp / f"{trial}_forces.sto"),
                generalized_forces_sto=str(tmp / f"{trial}_tau.sto"),
                output_sto=str(tmp / "jr" / f"{trial}.reactions.sto"),
                setup_out=str(tmp / "jr" / f"{trial}_setup.xml"),
                joints=dict(joints) if joints else None,
                sides=list(sides),
                lowpass_hz=lowpass_hz,
            )
            channels = contact_channels(read_sto(tmp / "jr" / f"{trial}.reactions.sto"),
                                        joints=info["joints"], intercondylar_distance=distance)
            write_sto(Path(out) / f"{trial}.sto", channels, name=f"true_contact_forces_{trial}")
            summary["trials"][trial] = {"frames": info["frames"], "reserves_max_abs": info["closure_max_abs"]}
            logger.info("%s %s: true knee contact peak %s BW; largest reserve %.3g N m", subject, trial,
                        {c: round(float(channels[c].max()) / (mass * G), 2)
                         for c in channels.columns if c.endswith("_total")},
                        max(info["closure_max_abs"].values(), default=0.0))
        (Path(out) / "info.json").write_text(json.dumps(
            {**summary, "mass": mass, "body_weight": mass * G, "intercondylar_distance": distance,
             "published_peak_bw": {}}, indent=2))
    return summary
