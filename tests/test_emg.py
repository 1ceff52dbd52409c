import json
import shutil
from pathlib import Path

import numpy as np

from musculo.emg import channel_quality, emg_excitations, normalise_emg, process_emg_trial
from musculo.io.c3d import read_c3d
from musculo.io.tables import read_sto
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
