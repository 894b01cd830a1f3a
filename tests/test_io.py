"""Spike-train readers (CSV, neo) and the CSV writer of results. NWB reading is tested in test_nwb.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spikeinterface_dic.io import SpikeTrains, read_spike_trains, write_csv
from spikeinterface_dic.result import PipelineResult

DATA = Path(__file__).parent / "data"


def _spike2pop_reference(path) -> dict:
    frame = pd.read_csv(path)
    id_column = "ID" if "ID" in frame else "id"
    return {
        key: np.asarray(json.loads(times), dtype=float)
        for key, times in zip(frame[id_column], frame["spiking_times"], strict=True)
    }


def test_spike2pop_csv_is_read_in_seconds():
    trains = read_spike_trains(DATA / "spike2pop_stg_set.csv")
    assert isinstance(trains, SpikeTrains) and isinstance(trains, dict)
    assert list(trains) == [1, 2, 3, 4, 5]
    assert trains.file_format == "csv-spike2pop" and trains.file_time_unit == "ms" and trains.problems == []
    assert trains[1][0] == pytest.approx(3.0570500000002075)
    for key, times_ms in _spike2pop_reference(DATA / "spike2pop_stg_set.csv").items():
        assert trains[key].dtype == np.float64
        np.testing.assert_allclose(trains[key], times_ms / 1000, rtol=1e-15)


@pytest.mark.parametrize("name, n_trains", [("grasshopper_receptor.csv", 2), ("current_clamp_steps.csv", 33)])
def test_real_spike_trains(name, n_trains):
    trains = read_spike_trains(DATA / name)
    reference = _spike2pop_reference(DATA / name)
    assert len(trains) == n_trains and list(trains) == list(reference) and trains.problems == []
    for key, times_ms in reference.items():
        np.testing.assert_allclose(trains[key], times_ms / 1000, rtol=1e-15)
        assert np.all(np.diff(trains[key]) >= 0)
    if name == "grasshopper_receptor.csv":
        assert [len(t) for t in trains.values()] == [929, 868]


def test_time_unit_overrides_the_spike2pop_default(tmp_path):
    path = tmp_path / "seconds.csv"
    path.write_text('id,spiking_times\n7,"[0.5, 1.25]"\n')
    np.testing.assert_array_equal(read_spike_trains(path, time_unit="s")[7], [0.5, 1.25])
    np.testing.assert_array_equal(read_spike_trains(path)[7], [0.0005, 0.00125])
    with pytest.raises(ValueError, match="time_unit"):
        read_spike_trains(path, time_unit="minutes")


def test_malformed_rows_are_reported_with_line_numbers(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text(
        "ID,spiking_times\n"
        '1,"[1.0, 2.0, 3.0]"\n'  # line 2: good
        '2,"[1.0, oops]"\n'  # line 3: not a number
        "3\n"  # line 4: missing field
        '4,"[]"\n'  # line 5: good, silent unit
        '5,"[3.0, 1.0]"\n'  # line 6: decreasing
        '1,"[5.0]"\n'  # line 7: repeated id
        '6,"[4.0, nan]"\n'  # line 8: NaN
        '7,"[10, 20]"\n'  # line 9: good
    )
    with pytest.warns(UserWarning, match="5 problem"):
        trains = read_spike_trains(path)
    # Unsorted (line 6) and NaN (line 8) rows are kept, cleaned, with the reason (the one bad-data policy).
    assert list(trains) == [1, 4, 5, 6, 7]
    np.testing.assert_array_equal(trains[1], [0.001, 0.002, 0.003])
    np.testing.assert_array_equal(trains[5], [0.001, 0.003])
    np.testing.assert_array_equal(trains[6], [0.004])
    assert trains[4].size == 0 and trains[4].dtype == np.float64
    assert [problem.split(":")[0] for problem in trains.problems] == [f"line {n}" for n in (3, 4, 6, 7, 8)]
    assert "not in increasing order" in trains.problems[2] and "sorted" in trains.problems[2]
    assert "repeated" in trains.problems[3] and "1 non-finite" in trains.problems[4]


def test_long_format_in_seconds_and_milliseconds(tmp_path):
    seconds = tmp_path / "long_s.csv"
    seconds.write_text("unit_id,spike_time_s\na,0.3\nb,1.0\na,0.1\nb,x\na,0.2\n")
    with pytest.warns(UserWarning, match="line 5"):
        trains = read_spike_trains(seconds)
    assert trains.file_format == "csv-long" and trains.file_time_unit == "s"
    np.testing.assert_array_equal(trains["a"], [0.1, 0.2, 0.3])  # one row per spike: order does not matter
    np.testing.assert_array_equal(trains["b"], [1.0])
    assert trains.problems == ["line 5: row skipped: spike time 'x' is not a number"]

    milliseconds = tmp_path / "long_ms.csv"
    milliseconds.write_text("unit_id,spike_time_ms\n3,250\n3,125\n")
    np.testing.assert_array_equal(read_spike_trains(milliseconds)[3], [0.125, 0.25])
    with pytest.raises(ValueError, match="contradicts"):
        read_spike_trains(milliseconds, time_unit="s")


def test_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        read_spike_trains(tmp_path / "nowhere.csv")
    with pytest.raises(FileNotFoundError, match="nowhere.nwb"):
        read_spike_trains(tmp_path / "nowhere.nwb")
    no_times = tmp_path / "no_times.csv"
    no_times.write_text("id,rate\n1,3.0\n")
    with pytest.raises(ValueError, match="spiking_times"):
        read_spike_trains(no_times)
    all_bad = tmp_path / "all_bad.csv"
    all_bad.write_text('id,spiking_times\n1,"[a]"\n')
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no readable spike train"):
        read_spike_trains(all_bad)
    unknown = tmp_path / "trains.unknownformat"
    unknown.write_text("nothing")
    with pytest.raises(ValueError, match="neo"):
        read_spike_trains(unknown)


def _neo_block():
    neo = pytest.importorskip("neo")
    pq = pytest.importorskip("quantities")
    block = neo.Block(name="recording")
    segment = neo.Segment()
    block.segments.append(segment)
    # 59/30000 s is the value that truncation to samples gets wrong; times in ms must be rescaled exactly
    segment.spiketrains.append(
        neo.SpikeTrain(
            np.array([59 / 30, 20.25, 300.125]) * pq.ms, t_start=0 * pq.ms, t_stop=1000 * pq.ms, name="alpha", unit_id=4
        )
    )
    segment.spiketrains.append(
        neo.SpikeTrain(np.array([0.1, 0.7]) * pq.s, t_start=0.05 * pq.s, t_stop=2 * pq.s, name="beta")
    )
    return block


@pytest.mark.parametrize("io_name, suffix", [("NeoMatlabIO", ".mat"), ("PickleIO", ".pkl")])
def test_neo_file(tmp_path, io_name, suffix):
    neo = pytest.importorskip("neo")
    if io_name == "NeoMatlabIO":
        pytest.importorskip("scipy")
    path = tmp_path / f"trains{suffix}"
    getattr(neo.io, io_name)(str(path)).write_block(_neo_block())
    trains = read_spike_trains(path)
    assert trains.file_format == "neo" and list(trains) == [4, "beta"]
    np.testing.assert_allclose(trains[4], [59 / 30000, 0.02025, 0.300125], rtol=1e-15)
    np.testing.assert_array_equal(trains["beta"], [0.1, 0.7])
    assert trains.durations_s == pytest.approx({4: 1.0, "beta": 1.95})
    assert trains.t_start_s == pytest.approx({4: 0.0, "beta": 0.05})
    assert trains.unit_names == {4: "alpha", "beta": "beta"}
    by_name = read_spike_trains(path, unit_column="no_such_annotation")
    assert list(by_name) == ["alpha", "beta"]
    with pytest.raises(ValueError, match="CSV files only"):
        read_spike_trains(path, time_unit="ms")


def _result() -> PipelineResult:
    estimates = pd.DataFrame(
        {
            "g_s": [1.0, -2.0, np.nan],
            "g_u": [3.0, 4.0, np.nan],
            "label": ["spiking", "bursting", "silent"],
            "in_distribution": [True, False, True],
            "ood_reason": ["", "too fast", ""],
            "n_spikes": [30, 40, 1],
        },
        index=[10, 11, 12],
    )
    populations = {10: np.arange(6.0).reshape(2, 3), 11: np.arange(6.0, 12.0).reshape(2, 3)}
    fidelity = pd.DataFrame({"fraction_matching": [0.5, 1.0], "n_twins": [2, 2]}, index=[10, 11])
    return PipelineResult(
        model_name="stg",
        conductance_names=("Na", "Kd", "leak"),
        estimates=estimates,
        populations=populations,
        fidelity=fidelity,
    )


def test_write_csv(tmp_path):
    units_path, populations_path, columns_path = write_csv(_result(), tmp_path / "run")
    assert units_path == tmp_path / "run_units.csv" and populations_path == tmp_path / "run_populations.csv"
    units = pd.read_csv(units_path)
    assert list(units["unit_id"]) == [10, 11, 12]
    assert list(units.columns) == [
        "unit_id",
        "g_s",
        "g_u",
        "label",
        "in_distribution",
        "ood_reason",
        "n_spikes",
        "fraction_matching",
        "n_twins",
    ]
    assert np.isnan(units.loc[2, "fraction_matching"]) and units.loc[1, "label"] == "bursting"
    populations = pd.read_csv(populations_path)
    assert list(populations.columns) == ["unit_id", "twin_index", "g_Na", "g_Kd", "g_leak"]
    assert populations.shape == (4, 5) and populations["g_leak"].tolist() == [2.0, 5.0, 8.0, 11.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_columns.csv", "run_populations.csv", "run_units.csv"]
    dictionary = pd.read_csv(columns_path, keep_default_na=False)
    described = dictionary.set_index(["file", "column"])
    for name in units.columns:  # every column of both files is described, with its unit
        assert described.loc[("run_units.csv", name), "description"], name
    assert described.loc[("run_populations.csv", "g_Na"), "unit"] == "mS/cm2"
    assert described.loc[("run_units.csv", "g_s"), "dtype"] == "float64"
    assert oct(units_path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # not mkstemp's 0600


def _umask() -> int:
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_csv_round_trip_keeps_dtypes(tmp_path):
    import spikeinterface_dic as sdic
    from spikeinterface_dic.analysis import read_result
    from spikeinterface_dic.schema import ALL_COLUMNS

    trains = sdic.read_spike_trains(DATA / "spike2pop_stg_set.csv")
    trains["few"] = np.array([0.1, 0.5])
    result = sdic.run_pipeline(dict(trains), population_size=2, duration_s=0.5)
    sdic.write_csv(result, tmp_path / "run")
    back = read_result(tmp_path / "run").estimates
    expected = result.estimates.join(result.fidelity)
    for name in expected.columns:
        dtype = ALL_COLUMNS[name].dtype
        kind = {"float64": "f", "int64": "i", "bool": "b", "str": "O"}[dtype]
        assert back[name].dtype.kind == kind, (name, back[name].dtype)
        if dtype == "str":
            assert back[name].tolist() == ["" if v != v or v is None else str(v) for v in expected[name]], name


def test_write_csv_failure_leaves_no_partial_file(tmp_path, monkeypatch):
    (tmp_path / "run_units.csv").write_text("old content\n")

    def failing_to_csv(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", failing_to_csv)
    with pytest.raises(OSError, match="disk full"):
        write_csv(_result(), tmp_path / "run")
    assert (tmp_path / "run_units.csv").read_text() == "old content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["run_units.csv"]
