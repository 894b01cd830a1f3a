"""NWB: reading units, writing results into an existing file safely, reading them back."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import h5py
import numpy as np
import pandas as pd
import pytest

pynwb = pytest.importorskip("pynwb")

from spikeinterface_dic import nwb as dic_nwb  # noqa: E402
from spikeinterface_dic.io import read_spike_trains  # noqa: E402
from spikeinterface_dic.nwb import MODULE_NAME, read_nwb_results, write_nwb  # noqa: E402
from spikeinterface_dic.result import PipelineResult  # noqa: E402

CONDUCTANCES = ("Na", "Kd", "CaT", "CaS", "KCa", "A", "H", "leak")
SPIKES = {
    0: np.array([0.5, 1.0, 1.5, 2.5, 3.5, 4.0, 6.0]),  # 2.5 and 6.0 lie outside its obs_intervals
    1: np.array([0.1, 0.2, 0.35, 7.5]),
    2: np.array([1.25, 9.0]),
}


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _make_nwb(path, *, obs_intervals=True, spikes=SPIKES, extra_units_table=False):
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.file import Subject
    from pynwb.misc import Units

    nwbfile = NWBFile(
        session_description="three sorted units for tests",
        identifier="test-dic-nwb",
        session_start_time=datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        experimenter=["Doe, Jane"],
        lab="test lab",
        institution="test institution",
        experiment_description="test file",
        session_id="session-1",
        keywords=["test"],
    )
    nwbfile.subject = Subject(
        subject_id="animal-1", species="Mus musculus", sex="F", age="P90D", description="test animal"
    )
    nwbfile.units = Units(name="units", description="sorted units", resolution=1 / 30000)
    if spikes:  # an empty table cannot have typed columns
        nwbfile.add_unit_column(name="unit_name", description="name given by the curator")
        nwbfile.add_unit_column(name="quality", description="curation label")
    for unit_id, times in spikes.items():
        kwargs = {}
        if obs_intervals:
            kwargs["obs_intervals"] = [[0.0, 2.0], [3.0, 5.0]] if unit_id == 0 else [[0.0, 10.0]]
        nwbfile.add_unit(spike_times=times, id=unit_id, unit_name=f"cell-{unit_id}", quality="good", **kwargs)
    if extra_units_table:
        module = nwbfile.create_processing_module(name="ecephys", description="a second sorting")
        other = Units(name="other_units", description="another sorting")
        other.add_unit(spike_times=[0.25, 0.75], id=0)
        other.add_unit(spike_times=[1.5], id=7)
        module.add(other)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path


def _make_result(unit_ids=(0, 1, 2), seed=0, population_size=5, simulate=True) -> PipelineResult:
    rng = np.random.default_rng(seed)
    n = len(unit_ids)
    estimates = pd.DataFrame(
        {
            "g_s": rng.normal(0, 5, n),
            "g_u": rng.uniform(0, 10, n),
            "g_s_std": rng.uniform(0.1, 1, n),
            "g_u_std": rng.uniform(0.1, 1, n),
            "time_scale": rng.uniform(0.5, 2, n),
            "time_scale_std": rng.uniform(0.01, 0.1, n),
            "label": (["bursting", "spiking", "silent"] * n)[:n],
            "in_distribution": ([True, False, True] * n)[:n],
            "ood_reason": (["", "rate above training range", ""] * n)[:n],
            "n_spikes": rng.integers(3, 100, n),
            "n_windows": rng.integers(1, 5, n),
        },
        index=pd.Index(list(unit_ids)),
    )
    estimates.loc[estimates.index[-1], ["g_s", "g_u", "g_s_std", "g_u_std"]] = np.nan  # the silent unit
    analysed = list(unit_ids)[:-1]
    populations = {u: rng.uniform(0, 100, (population_size, len(CONDUCTANCES))) for u in analysed}
    twins, fidelity = {}, pd.DataFrame()
    if simulate:
        twins = {u: [np.sort(rng.uniform(0, 3, rng.integers(0, 20))) for _ in range(population_size)] for u in analysed}
        fidelity = pd.DataFrame(
            {
                "fraction_matching": rng.uniform(0, 1, len(analysed)),
                "n_twins": [population_size] * len(analysed),
                "twin_label_fraction": rng.uniform(0, 1, len(analysed)),
                "median_isi_distance": rng.uniform(0, 1, len(analysed)),
                "main_frequency_hz": rng.uniform(1, 20, len(analysed)),
                "twin_main_frequency_hz": rng.uniform(1, 20, len(analysed)),
            },
            index=pd.Index(analysed),
        )
    return PipelineResult(
        model_name="stg",
        conductance_names=CONDUCTANCES,
        estimates=estimates,
        populations=populations,
        twin_spike_trains=twins,
        fidelity=fidelity,
        parameters={
            "population_size": population_size,
            "simulate": simulate,
            "duration_s": 6.0,
            "seed": seed,
            "windows": {"length_s": 2.0, "overlap": 0.5},
            "unit_ids": list(unit_ids),
        },
        provenance={"package_version": "0.1.0", "weights_sha256": "ab" * 32, "date": "2026-01-01T00:00:00+00:00"},
    )


@pytest.fixture
def nwb_path(tmp_path):
    return _make_nwb(tmp_path / "session.nwb")


def _units_datasets(path) -> dict:
    with h5py.File(path, "r") as file:
        return {
            name: file["units"][name][()]
            for name in ("id", "spike_times", "spike_times_index", "obs_intervals", "obs_intervals_index", "quality")
        }


def _leftovers(folder) -> list:
    return [p.name for p in folder.iterdir() if p.name != "session.nwb"]


# ------------------------------------------------------------------------------------------------------- reading
def test_read_spike_trains_nwb_respects_obs_intervals(nwb_path):
    # The curator's unit names are the ids (as in SpikeInterface's NWB sorting); unit_column="id" gives the ids.
    trains = read_spike_trains(nwb_path)
    assert list(trains) == ["cell-0", "cell-1", "cell-2"] and trains.file_format == "nwb"
    np.testing.assert_array_equal(trains["cell-0"], [0.5, 1.0, 1.5, 3.5, 4.0])  # 2.5 and 6.0 are outside
    np.testing.assert_array_equal(trains["cell-1"], SPIKES[1])
    assert trains["cell-0"].dtype == np.float64
    assert trains.durations_s["cell-0"] == pytest.approx(4.0) and trains.t_start_s["cell-0"] == 0.0
    assert trains.durations_s["cell-1"] == pytest.approx(10.0)
    assert trains.unit_names == {"cell-0": "cell-0", "cell-1": "cell-1", "cell-2": "cell-2"}
    by_id = read_spike_trains(nwb_path, unit_column="id")
    assert list(by_id) == [0, 1, 2]
    with pytest.raises(ValueError, match="seconds"):
        read_spike_trains(nwb_path, time_unit="ms")


def test_read_spike_trains_nwb_without_obs_intervals_keeps_all_spikes(tmp_path):
    trains = read_spike_trains(_make_nwb(tmp_path / "plain.nwb", obs_intervals=False))
    np.testing.assert_array_equal(trains["cell-0"], SPIKES[0])
    assert trains.durations_s == {}


def test_read_spike_trains_nwb_every_units_table(tmp_path):
    trains = read_spike_trains(_make_nwb(tmp_path / "two.nwb", extra_units_table=True), unit_column="id")
    # id 0 exists in both tables, so every key names its table
    assert set(trains) == {
        "units/0",
        "units/1",
        "units/2",
        "processing/ecephys/other_units/0",
        "processing/ecephys/other_units/7",
    }
    np.testing.assert_array_equal(trains["processing/ecephys/other_units/0"], [0.25, 0.75])
    assert trains.origins["units/1"] == "units"
    named = read_spike_trains(tmp_path / "two.nwb")  # names in /units, ids in the other table: no clash
    assert set(named) == {"cell-0", "cell-1", "cell-2", 0, 7}


def test_read_spike_trains_nwb_empty_units_raises(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        read_spike_trains(_make_nwb(tmp_path / "empty.nwb", spikes={}))


def test_read_spike_trains_nwb_without_units_raises(tmp_path):
    from pynwb import NWBHDF5IO, NWBFile

    path = tmp_path / "nounits.nwb"
    with NWBHDF5IO(str(path), "w") as io:
        io.write(
            NWBFile(
                session_description="no units",
                identifier="x",
                session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc),
            )
        )
    with pytest.raises(ValueError, match="no Units table"):
        read_spike_trains(path)
    with pytest.raises(ValueError, match="no Units table"):
        write_nwb(_make_result(), path)


# ------------------------------------------------------------------------------------------------------- writing
def test_write_nwb_validates_inspects_and_round_trips(nwb_path):
    from nwbinspector import Importance, inspect_nwbfile

    def findings(path):
        return {
            (m.check_function_name, m.object_name, m.location, m.message): m
            for m in inspect_nwbfile(nwbfile_path=str(path), importance_threshold=Importance.BEST_PRACTICE_VIOLATION)
        }

    before_units = _units_datasets(nwb_path)
    before = findings(nwb_path)
    result = _make_result()
    write_nwb(result, nwb_path)

    assert pynwb.validate(path=str(nwb_path)) == []
    new = {key: m for key, m in findings(nwb_path).items() if key not in before}
    assert not new, [f"{m.importance.name}: {m.object_name} {m.location}: {m.message}" for m in new.values()]
    after_units = _units_datasets(nwb_path)
    for name, values in before_units.items():
        np.testing.assert_array_equal(after_units[name], values, err_msg=name)
    assert _leftovers(nwb_path.parent) == []

    back = read_nwb_results(nwb_path)
    assert back.equals(result)
    pd.testing.assert_frame_equal(back.estimates, result.estimates)
    pd.testing.assert_frame_equal(back.fidelity, result.fidelity)
    assert back.parameters == result.parameters and back.provenance == result.provenance
    assert read_spike_trains(nwb_path)["cell-1"].tolist() == SPIKES[1].tolist()


def test_write_nwb_layout_and_descriptions(nwb_path):
    write_nwb(_make_result(), nwb_path)
    with pynwb.NWBHDF5IO(str(nwb_path), "r") as io:
        nwbfile = io.read()
        expected = {
            "dic_g_s",
            "dic_g_u",
            "dic_g_s_std",
            "dic_g_u_std",
            "dic_time_scale",
            "dic_time_scale_std",
            "dic_label",
            "dic_in_distribution",
            "dic_ood_reason",
            "dic_model",
            "dic_fidelity",
        }
        assert expected <= set(nwbfile.units.colnames)
        for name in expected:
            assert len(nwbfile.units[name].description) > 20, name
        module = nwbfile.processing[MODULE_NAME]
        assert set(module.data_interfaces) == {"populations", "fidelity", "run_info"}
        populations = module["populations"]
        assert len(populations) == 10 and populations["g_Na"].description.endswith("(mS/cm^2).")
        assert populations["unit"].table is nwbfile.units
        assert populations["g_Na"].data.compression == "gzip"
        assert list(nwbfile.units["dic_model"].data[:]) == ["stg", "stg", "stg"]
        run = module["run_info"].to_dataframe()
        keys = set(zip(run["section"], run["key"], strict=True))
        assert {
            ("provenance", "weights_sha256"),
            ("parameters", "seed"),
            ("writer", "package_version"),
            ("parameters", "windows/length_s"),
        } <= keys


def test_write_nwb_subset_of_units_and_no_simulation(nwb_path):
    result = _make_result(unit_ids=(2, 0), simulate=False)
    write_nwb(result, nwb_path)
    back = read_nwb_results(nwb_path)
    assert back.equals(result) and sorted(back.estimates.index) == [0, 2]
    assert back.twin_spike_trains == {} and back.fidelity.empty


def test_write_nwb_missing_unit_ids_are_named(nwb_path):
    digest = _sha256(nwb_path)
    with pytest.raises(ValueError, match=r"\[5, 9\]"):
        write_nwb(_make_result(unit_ids=(0, 5, 9)), nwb_path)
    assert _sha256(nwb_path) == digest


def test_write_nwb_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.nwb"):
        write_nwb(_make_result(), tmp_path / "missing.nwb")


def test_second_write_without_overwrite_raises_and_keeps_file(nwb_path):
    write_nwb(_make_result(seed=0), nwb_path)
    digest = _sha256(nwb_path)
    with pytest.raises(ValueError, match="overwrite=True"):
        write_nwb(_make_result(seed=1), nwb_path)
    assert _sha256(nwb_path) == digest
    assert _leftovers(nwb_path.parent) == []


def test_overwrite_replaces_every_result(nwb_path):
    before_units = _units_datasets(nwb_path)
    write_nwb(_make_result(seed=0, population_size=5), nwb_path)
    new = _make_result(unit_ids=(1, 2), seed=1, population_size=3)
    new.estimates = new.estimates.drop(columns="n_windows")
    write_nwb(new, nwb_path, overwrite=True)

    assert pynwb.validate(path=str(nwb_path)) == []
    back = read_nwb_results(nwb_path)
    assert back.equals(new) and not back.equals(_make_result(seed=0))
    assert "n_windows" not in back.estimates and sorted(back.estimates.index) == [1, 2]
    with h5py.File(nwb_path, "r") as file:
        assert "dic_n_windows" not in file["units"]
        assert file[f"processing/{MODULE_NAME}/populations/id"].shape == (3,)
    after_units = _units_datasets(nwb_path)
    for name, values in before_units.items():
        np.testing.assert_array_equal(after_units[name], values, err_msg=name)
    assert _leftovers(nwb_path.parent) == []


@pytest.mark.parametrize("existing", [False, True], ids=["append", "overwrite"])
def test_failure_mid_write_leaves_original_unchanged(nwb_path, monkeypatch, existing):
    if existing:
        write_nwb(_make_result(seed=0), nwb_path)
    digest = _sha256(nwb_path)
    modified = []

    def failing_validation(path, original):
        with h5py.File(path, "r") as file:  # the copy already holds the new results when this runs
            modified.append(f"processing/{MODULE_NAME}/populations" in file)
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(dic_nwb, "_validate_file", failing_validation)
    with pytest.raises(RuntimeError, match="simulated crash"):
        write_nwb(_make_result(seed=1), nwb_path, overwrite=True)
    assert modified == [True]
    assert _sha256(nwb_path) == digest
    assert _leftovers(nwb_path.parent) == []


def test_read_nwb_results_without_results_raises(nwb_path):
    with pytest.raises(ValueError, match="no DIC results"):
        read_nwb_results(nwb_path)
