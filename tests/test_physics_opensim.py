"""The physics core against OpenSim: SO activations through it reproduce SO's muscle moments.

OpenSim's static optimisation (gait10dof18musc-subject01, reference scaled model and IK, 60 frames)
runs in a separate process. Its muscle-generated moments are sum(moment arm x SO muscle force).
The physics core driven by the same activations (rigid tendon, De Groote 2016 curves) differs from
OpenSim's Millard2012 curves by a few percent of max isometric force per muscle, mostly in the
passive and force-velocity parts, so the RMS difference per coordinate is required to stay below
10% of that coordinate's peak |moment| (measured: 4-9%).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd

from musculo.estimators.so import so_moments
from musculo.io.tables import read_sto, write_sto
from musculo.physics.data import load_trial

SCRIPT = """
import sys
from pathlib import Path
from musculo.opensim_tools.static_optimization import run_so
from musculo.opensim_tools.muscle_analysis import run_muscle_analysis
model, ik, grf, out, n = sys.argv[1:6]
out = Path(out)
run_so(model=model, coordinates_mot=ik, external_loads_xml=grf, activation_out=out / "so_activation.sto",
       force_out=out / "so_force.sto", setup_out=out / "so_setup.xml", reserves_out=out / "so_reserves.json",
       max_frames=int(n), log=out / "so.log")
run_muscle_analysis(model=model, coordinates_mot=ik, output_npz=out / "muscle_analysis.npz",
                    sto_dir=out / "ma", setup_out=out / "ma_setup.xml", max_frames=int(n), log=out / "ma.log")
"""


def test_so_activations_reproduce_so_muscle_moments(dataset_file, tmp_path):
    ds = "gait10dof18musc-subject01"
    model = dataset_file(ds, "OutputReference/subject01.osim")
    ik = dataset_file(ds, "OutputReference/IK/subject01_walk_IK.mot")
    grf = dataset_file(ds, "ExperimentalData/subject01_walk_grf.xml")
    dataset_file(ds, "ExperimentalData/subject01_walk_grf.mot")
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(model), str(ik), str(grf), str(tmp_path), "60"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    npz = np.load(tmp_path / "muscle_analysis.npz")
    muscles = [str(m) for m in npz["muscles"]]
    coords = [str(c) for c in npz["coordinates"]]
    forces = read_sto(tmp_path / "so_force.sto")
    time = npz["time"]
    f = np.column_stack([np.interp(time, forces.index, forces[m]) for m in muscles])
    opensim_moments = np.einsum("tmc,tm->tc", npz["moment_arm"], f)
    write_sto(tmp_path / "so_muscle_moments.sto",
              pd.DataFrame(opensim_moments, index=pd.Index(time, name="time"),
                           columns=[f"{c}_moment" for c in coords]))
    trial = load_trial(muscle_analysis=tmp_path / "muscle_analysis.npz",
                       inverse_dynamics=tmp_path / "so_muscle_moments.sto",
                       so_activation=tmp_path / "so_activation.sto")
    assert {"hip_flexion_r", "knee_angle_r", "ankle_angle_r"} <= set(trial.coordinates)
    ours = so_moments(trial)
    rms = np.sqrt(np.mean((ours - trial.id_moment) ** 2, axis=0))
    peak = np.abs(trial.id_moment).max(axis=0)
    for c, r, p in zip(trial.coordinates, rms, peak, strict=True):
        print(f"{c:16s} RMS {r:6.2f} N m   peak {p:7.2f} N m   ({100 * r / p:4.1f}%)")
    assert np.all(rms < 0.10 * peak)
