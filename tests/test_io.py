from pathlib import Path

import numpy as np
import pytest

from musculo.errors import InputDataError
from musculo.io.anc import read_anc
from musculo.io.c3d import clean_labels, read_c3d
from musculo.io.trc import read_trc, write_trc


def test_clean_labels():
    got = clean_labels(["Subj:RASI ", "R Tib Ant", "R Tib Ant", "", "a:b:c d"])
    assert got == ["RASI", "R_Tib_Ant", "R_Tib_Ant_2", "ch4", "c_d"]
    assert clean_labels(["EMG:ch 1"], drop_prefix=False) == ["EMG_ch_1"]


def test_read_c3d_clock_units_plates(dataset_file):
    c = read_c3d(dataset_file("biomechzoo", "HC002D/Straight/HC002D06.c3d"))
    assert c.first_frame == 124 and c.marker_rate == 100
    assert c.time[0] == pytest.approx(1.24) and c.analog_time[0] == pytest.approx(1.24)
    assert c.analog.shape[0] == pytest.approx(c.markers.shape[0] * 10, abs=10)
    # the C3D events lie inside the recorded span
    assert all(c.time[0] <= t <= c.time[-1] for _, _, t in c.events)
    assert "R_Tib_Ant" in c.analog_labels and len(c.plates) == 2
    assert c.processing["Bodymass"] == pytest.approx(32.1, abs=0.01)
    # markers in mm: pelvis width (ASIS-ASIS) of a child is 0.15-0.3 m
    i, j = c.marker_labels.index("RASI"), c.marker_labels.index("LASI")
    width = np.nanmedian(np.linalg.norm(c.markers[:, i] - c.markers[:, j], axis=1))
    assert 150 < width < 300


def test_truncated_c3d_is_an_error(dataset_file, tmp_path):
    src = dataset_file("biomechzoo", "HC002D/Straight/HC002D06.c3d").read_bytes()
    bad = tmp_path / "cut.c3d"
    bad.write_bytes(src[: len(src) // 2])
    with pytest.raises(InputDataError, match="truncated"):
        read_c3d(bad)


def test_trc_round_trip_keeps_gaps(tmp_path):
    t = np.arange(50) / 100.0
    data = np.random.default_rng(0).normal(size=(50, 2, 3)) * 100
    data[10:12, 1] = np.nan
    write_trc(tmp_path / "m.trc", time=t, labels=["A", "B.c"], data=data, units="mm", rate=100)
    back = read_trc(tmp_path / "m.trc")
    assert back.labels == ["A", "B.c"] and back.units == "mm" and back.rate == 100
    np.testing.assert_allclose(back.data, data, rtol=1e-5, atol=1e-3)
    assert np.isnan(back.data[10:12, 1]).all()
    # the header names the file itself, not the temporary file it was written through
    first = (tmp_path / "m.trc").read_text().splitlines()[0]
    assert Path(first.split("\t")[-1]) == (tmp_path / "m.trc").resolve()


def test_read_anc(dataset_file):
    a = read_anc(dataset_file("rajagopal-walk", "ExpData/emg_walk_raw.anc"))
    assert a.rate == 2000 and a.labels[-10:] == [
        "SOL",
        "GAS",
        "TA",
        "MH",
        "BF",
        "VL",
        "VM",
        "RF",
        "GMAX",
        "GMED",
    ]
    assert a.data.shape == (4780, 28)
    assert np.abs(a.data[:, 18:]).max() < 2.5  # volts within the +-2.5 V range


def test_a_table_covers_a_window_give_or_take_one_of_its_samples():
    from musculo.io.tables import covers

    grid = 0.0083 + np.arange(61) / 60.0  # OpenSim's own 60 Hz grid, half a sample off the frames
    assert covers(grid, 0.0, 1.0)
    assert not covers(grid, 0.0, 1.03)  # two samples short at the end
    assert not covers(grid + 0.02, 0.0, 1.0)  # starts more than a sample late
    assert covers(np.array([-1e-6, 0.5, 1.0]), 0.0, 1.0)
    assert not covers(np.array([0.0]), 0.0, 0.0)
