import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from musculo.emg import channel_quality, channel_usable, emg_excitations, normalise_emg, process_emg_trial
from musculo.io.c3d import read_c3d
from musculo.io.tables import read_sto, write_sto
from musculo.subject import fetch_inputs
from musculo.trial_import import import_trial

REPO = Path(__file__).resolve().parents[1]
AUTHORS = {
    "SOL": "soleus",
    "GAS": "gastrocnemius",
    "TA": "tibialis_anterior",
    "MH": "medial_hamstrings",
    "BF": "biceps_femoris",
    "VL": "vastus_lateralis",
    "VM": "vastus_medius",
    "RF": "rectus_femoris",
    "GMAX": "gluteus_maximus",
    "GMED": "gluteus_medius",
}


def test_rajagopal_envelopes_match_authors(tmp_path, dataset_file):
    folder = tmp_path / "rajagopal-walk"
    shutil.copytree(REPO / "subjects" / "rajagopal-walk", folder)
    inputs = tmp_path / "inputs.json"
    fetch_inputs(subject_file=folder / "subject.yaml", output_json=inputs)
    out = tmp_path / "walk"
    import_trial(subject_file=folder / "subject.yaml", inputs_json=inputs, trial="walk", out_dir=out)
    # the authors' processing (README.txt): band-pass 50-500 Hz, rectify, low-pass 7.5 Hz
    process_emg_trial(
        emg_raw=out / "emg_raw.npz",
        markers=out / "markers.trc",
        envelope_out=out / "emg_envelope.sto",
        quality_out=out / "emg_quality.json",
        band=[50.0, 500.0],
        envelope_cutoff=7.5,
    )
    env = read_sto(out / "emg_envelope.sto")
    ref = read_sto(dataset_file("opensim-example3dwalking", "electromyography.sto"))
    t = env.index.to_numpy()
    t = t[(t >= ref.index.min()) & (t <= ref.index.max())]
    table = {
        ch: float(np.corrcoef(np.interp(t, env.index, env[ch]), np.interp(t, ref.index, ref[name]))[0, 1])
        for ch, name in AUTHORS.items()
    }
    print("\nchannel  r (vs electromyography.sto)")
    for ch, r in table.items():
        print(f"{ch:8s} {r:.3f}")
    assert all(r >= 0.9 for r in table.values()), table
    # normalisation to the per-subject peak, and the channel -> muscle map
    norm = normalise_emg(
        subject_file=folder / "subject.yaml",
        trials=["walk"],
        envelopes=[out / "emg_envelope.sto"],
        output_json=tmp_path / "norm.json",
    )
    assert norm["SOL"]["method"] == "peak"
    muscles = emg_excitations(
        subject_file=folder / "subject.yaml",
        envelope_sto=out / "emg_envelope.sto",
        quality_json=out / "emg_quality.json",
        normalisation_json=tmp_path / "norm.json",
        output=out / "emg.sto",
    )
    exc = read_sto(out / "emg.sto")
    quality = json.loads((out / "emg_quality.json").read_text())
    assert exc.to_numpy().max() <= 1.0 and exc.to_numpy().min() >= 0.0
    assert exc["soleus_r"].max() == 1.0
    np.testing.assert_array_equal(exc["gasmed_r"], exc["gaslat_r"])
    assert all(
        quality[ch]["use"] == any(m in muscles for m in ms)
        for ch, ms in {"SOL": ["soleus_r"], "GMAX": ["glmax1_r"]}.items()
    )


def test_biomechzoo_flags(dataset_file):
    """Channels inspected by eye: live, saturated at 1.25 V, and noise-only ones."""
    cases = {
        "HC002D/Straight/HC002D06.c3d": {"R_Tib_Ant": [], "R_Gast": [], "L_Tib_Ant": ["noise"]},
        "HC038A/Straight/HC038A11.c3d": {
            "R_Rect": [],
            "L_Rect": ["saturated"],
            "L_Gast": ["saturated"],
            "R_Tib_Post": ["noise"],
        },
        "HC031A/Straight/HC031A06.c3d": {"R_Gast": [], "L_Rect": ["saturated"], "L_Gast": ["noise"]},
    }
    for file, channels in cases.items():
        c3d = read_c3d(dataset_file("biomechzoo", file), plates=False)
        for ch, expected in channels.items():
            q = channel_quality(c3d.analog[:, c3d.analog_labels.index(ch)], rate=c3d.analog_rate)
            print(file, ch, q["flags"], {k: round(v, 4) for k, v in q["metrics"].items()})
            if expected:
                assert set(expected) <= set(q["flags"]), (file, ch, q)
            else:
                assert q["flags"] == [], (file, ch, q)


def test_flat_and_mains_synthetic():
    rate = 1000.0
    t = np.arange(0, 3, 1 / rate)
    rng = np.random.default_rng(1)
    burst = (np.sin(2 * np.pi * 1.0 * t) > 0.5) * rng.normal(0, 0.2, t.size) + rng.normal(0, 0.005, t.size)
    assert channel_quality(burst, rate=rate)["flags"] == []
    assert channel_quality(np.zeros_like(t), rate=rate)["flags"] == ["flat"]
    hum = burst + 0.5 * np.sin(2 * np.pi * 50 * t)
    assert "mains" in channel_quality(hum, rate=rate)["flags"]


def test_quiet_channel_is_used_when_its_mvc_trial_passes(tmp_path):
    """A channel flagged only 'noise' in a trial is a quiet muscle when its MVC trial passed."""
    subject = REPO / "subjects" / "twin-squat" / "subject.yaml"
    t = np.arange(100) / 100.0
    channels = ["R_RF", "R_VL", "R_HAM", "R_GAS", "R_SOL", "R_TA", "R_GMAX"]
    ok = {"flags": [], "metrics": {}, "use": True}
    quiet = {"flags": ["noise"], "metrics": {}, "use": False}
    saturated = {"flags": ["saturated"], "metrics": {}, "use": False}
    files = {}
    for trial, level in (("mvc", 1e-3), ("squat1", 1e-5)):
        env = pd.DataFrame({ch: level * (1 + np.sin(t)) for ch in channels}, index=t)
        write_sto(tmp_path / f"{trial}_env.sto", env, name="emg_envelope")
        files[trial] = tmp_path / f"{trial}_env.sto"
    # the MVC trial: every channel passes but R_TA (saturated); the squat: R_SOL and R_TA quiet
    mvc_q = {ch: saturated if ch == "R_TA" else ok for ch in channels}
    (tmp_path / "mvc_q.json").write_text(json.dumps(mvc_q))
    squat_q = {ch: quiet if ch in ("R_SOL", "R_TA") else ok for ch in channels}
    squat_q["R_GAS"] = {"flags": ["noise", "mains"], "metrics": {}, "use": False}
    (tmp_path / "squat_q.json").write_text(json.dumps(squat_q))
    norm = normalise_emg(subject_file=subject, trials=["mvc", "squat1"],
                         envelopes=[files["mvc"], files["squat1"]], output_json=tmp_path / "norm.json",
                         qualities=[tmp_path / "mvc_q.json", tmp_path / "squat_q.json"])
    assert norm["R_SOL"]["method"] == "mvc" and norm["R_SOL"]["mvc_ok"] and not norm["R_TA"]["mvc_ok"]
    muscles = emg_excitations(subject_file=subject, envelope_sto=files["squat1"],
                              quality_json=tmp_path / "squat_q.json",
                              normalisation_json=tmp_path / "norm.json", output=tmp_path / "emg.sto")
    assert "soleus_r" in muscles  # quiet, electrode shown to work by the MVC trial
    assert "tib_ant_r" not in muscles  # its MVC trial failed quality
    assert "gastroc_r" not in muscles  # another flag besides noise
    exc = read_sto(tmp_path / "emg.sto")
    assert exc["soleus_r"].max() < 0.05  # a quiet muscle: near zero, not scaled up
    # without MVC trials (peak normalisation) a quiet channel stays out
    assert not channel_usable(quiet, {"divisor": 1e-5, "method": "peak"})
