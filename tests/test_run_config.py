"""One run configuration and one twin stage: validation, serialisation, and the same per-unit results through
run_pipeline and the SpikeInterface twin extension."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from spikeinterface.core import NumpySorting

import spikeinterface_dic as sdic
from spikeinterface_dic.config import RunConfig
from spikeinterface_dic.schema import ALL_COLUMNS, ESTIMATE_NAMES, TWIN_COLUMNS

FS = 10_000.0


def test_defaults_validate_and_round_trip():
    config = RunConfig()
    assert config.population_size == 100 and config.frequency_tolerance == 0.10 and config.model == "stg"
    settings = config.to_dict()
    assert json.loads(json.dumps(settings)) == settings  # JSON-serialisable as written to NWB and CSV
    assert RunConfig.from_dict(settings) == config
    known = RunConfig(time_scale={"a": 2.0, "b": None})
    assert known.known_time_scale("a") == 2.0 and np.isnan(known.known_time_scale("b"))
    assert RunConfig.from_dict(known.to_dict()) == known


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"population_size": 0}, "population_size"),
        ({"population_size": 2.5}, "population_size"),
        ({"duration_s": -1.0}, "duration_s"),
        ({"noise_std_uA_cm2": float("nan")}, "noise_std_uA_cm2"),
        ({"frequency_tolerance": -0.1}, "frequency_tolerance"),
        ({"spikes_per_burst_relative_tolerance": -0.1}, "spikes_per_burst_relative_tolerance"),
        ({"time_scale": 0.0}, "time_scale"),
        ({"time_scale": {"u1": -2.0}}, "unit 'u1'"),
        ({"model": "cortex"}, "unknown model"),
        ({"span_source": "simulated"}, "span_source"),
    ],
)
def test_bad_settings_are_refused_once_with_their_name(settings, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**settings)
    with pytest.raises(ValueError, match=message):  # every front end goes through the same validation
        sdic.run_pipeline({0: np.arange(0, 1, 0.1)}, **settings)


def test_pattern_tolerances_come_from_one_place():
    """The twins' match criterion of a run (every caller of pattern_matches takes it from the run configuration),
    and the command line's options reach it."""
    from spikeinterface_dic import cli

    config = RunConfig(frequency_tolerance=0.2, spikes_per_burst_tolerance=2.0, spikes_per_burst_relative_tolerance=0)
    assert config.pattern_tolerances() == {
        "frequency_tolerance": 0.2,
        "spikes_per_burst_tolerance": 2.0,
        "spikes_per_burst_relative_tolerance": 0.0,
    }
    assert config.pattern_tolerances(frequency=False)["frequency_tolerance"] == float("inf")
    args = cli.build_parser().parse_args(["run", "x.csv", "--spikes-per-burst-relative-tolerance", "0.25"])
    assert cli._run_config(args, "stg").spikes_per_burst_relative_tolerance == 0.25


def test_span_source_reaches_every_front_end():
    """What the user knows of how the spans came about (tonic_rate.SPAN_SOURCES) is one setting: the command line
    and the DIC extension's stored params carry it to the same RunConfig."""
    from spikeinterface_dic import cli
    from spikeinterface_dic.config import INFERENCE_SETTINGS

    args = cli.build_parser().parse_args(["run", "x.csv", "--span-source", "recording"])
    assert cli._run_config(args, "da").span_source == "recording"
    assert cli._run_config(cli.build_parser().parse_args(["run", "x.csv"]), "da").span_source is None
    assert "span_source" in INFERENCE_SETTINGS
    assert RunConfig.from_dict({"span_source": "window"}).span_source == "window"
    times = np.cumsum(np.full(12, 2.0))  # a regular 0.5 Hz DA unit over 22 s: both readings weigh in by default
    analyzer = _analyzer({"u": times})
    analyzer.compute("dynamic_input_conductances", model="da", span_source="recording")
    extension = analyzer.get_extension("dynamic_input_conductances")
    assert extension.params["span_source"] == "recording"
    expected = sdic.infer_dics({"u": times}, model="da", span_source="recording")["time_scale"].iloc[0]
    assert extension.get_data().loc["u", "time_scale"] == pytest.approx(expected, rel=1e-6)
    default = sdic.infer_dics({"u": times}, model="da")["time_scale"].iloc[0]
    assert abs(np.log(default / expected)) > 0.2  # the statement made a difference here (k 2.5 vs 1.2)


def test_unknown_setting_lists_the_known_ones():
    with pytest.raises(TypeError, match="population_size"):
        RunConfig.from_dict({"populaton_size": 3})


def test_earlier_keyword_names_still_work():
    assert RunConfig.from_dict({"noise_std": 0.5}).noise_std_uA_cm2 == 0.5


@pytest.fixture(scope="module")
def trains() -> dict:
    model = sdic.get_model("stg")
    gbar = np.concatenate(
        [sdic.generate_population(model, g_s, g_u, 1, seed=i).gbar for i, (g_s, g_u) in enumerate([(-4, 5), (4, 5)])]
    )
    simulated = sdic.simulate(model, gbar, duration_s=8.0, transient_s=2.0, seed=0)
    trains = {f"u{i}": np.round(t * FS) / FS for i, t in enumerate(simulated)}
    # A sorting error: extra spikes 0.3 ms after some spikes. Both front ends must compare the twins with the same
    # recorded train (refractory violations removed).
    trains["dirty"] = np.sort(np.concatenate([trains["u0"], trains["u0"][5:12] + 3 / FS]))
    trains["few"] = np.array([0.5, 1.2])  # no estimate, no population
    return trains


def _analyzer(trains: dict):
    times = np.concatenate(list(trains.values()))
    labels = np.concatenate([[u] * len(t) for u, t in trains.items()])
    order = np.argsort(times, kind="stable")
    sorting = NumpySorting.from_times_and_labels([times[order]], [labels[order]], FS, unit_ids=list(trains))
    return sdic.create_sorting_analyzer_from_sorting(sorting)


def test_run_pipeline_and_twin_extension_give_identical_units(trains):
    config = RunConfig(population_size=4, duration_s=1.0, seed=7, noise_std_uA_cm2=0.3)
    result = sdic.run_pipeline(trains, config)
    analyzer = _analyzer(trains)
    analyzer.compute("dynamic_input_conductances", model=config.model, refractory_ms=config.refractory_ms)
    twin_settings = {k: v for k, v in config.to_dict().items() if k in sdic.config.TWIN_SETTINGS}
    analyzer.compute("twin_populations", **twin_settings, n_jobs=1, progress_bar=False)
    extension = analyzer.get_extension("twin_populations")
    assert extension.run_config() == config
    summary = extension.get_data()
    estimates = analyzer.get_extension("dynamic_input_conductances").get_data()
    for column in ("g_s", "g_u", "time_scale"):
        np.testing.assert_array_equal(
            estimates[column].to_numpy(float),
            result.estimates["time_scale_network" if column == "time_scale" else column]
            .reindex(estimates.index)
            .to_numpy(float),
        )
    for unit_id in trains:
        if unit_id not in result.populations:
            assert summary.loc[unit_id, "population_size"] == 0
            continue
        np.testing.assert_array_equal(extension.get_population(unit_id).to_numpy(), result.populations[unit_id])
        np.testing.assert_array_equal(
            extension.get_twin_parameters(unit_id).to_numpy(), result.twin_parameters[unit_id]
        )
        for ours, theirs in zip(
            extension.get_twin_spike_trains(unit_id), result.twin_spike_trains[unit_id], strict=True
        ):
            np.testing.assert_array_equal(ours, theirs)
        for column in TWIN_COLUMNS:
            ours, theirs = summary.loc[unit_id, column.name], result.fidelity.loc[unit_id, column.name]
            if column.dtype == "str":
                assert ours == theirs, column.name
            else:
                np.testing.assert_equal(float(ours), float(theirs), err_msg=column.name)
        # Each twin has its own k (drawn from the posterior): the unit's twin_time_scale is their median.
        assert summary.loc[unit_id, "twin_time_scale"] == np.median(result.twin_parameters[unit_id][:, 2])
        for column in ("target_g_s", "target_g_u"):
            assert summary.loc[unit_id, column] == result.estimates.loc[unit_id, column]
    assert result.estimates.loc["dirty", "n_refractory_violations"] == 7


def test_known_time_scale_is_never_adapted_and_reaches_the_provenance(trains):
    subset = {u: trains[u] for u in ("u0", "u1")}
    result = sdic.run_pipeline(subset, population_size=3, duration_s=1.0, time_scale={"u0": 1.5})
    assert result.estimates.loc["u0", "time_scale"] == 1.5  # given: kept
    assert result.parameters["time_scale"] == {"u0": 1.5} and result.parameters["device"] == "cpu"
    assert (
        RunConfig.from_dict({k: v for k, v in result.parameters.items() if k != "dt_ms"}).known_time_scale("u0") == 1.5
    )


def test_every_output_column_is_in_the_schema(trains):
    result = sdic.run_pipeline({u: trains[u] for u in ("u0", "few")}, population_size=2, duration_s=0.5)
    for column in (*result.estimates.columns, *result.fidelity.columns):
        assert column in ALL_COLUMNS, column
        assert ALL_COLUMNS[column].unit is not None and ALL_COLUMNS[column].description
    assert set(ESTIMATE_NAMES) <= set(result.estimates.columns)
    assert isinstance(result.estimates, pd.DataFrame)


def test_every_nwb_column_has_a_description_and_a_unit(trains, tmp_path):
    from datetime import datetime, timezone

    import h5py
    from pynwb import NWBHDF5IO, NWBFile

    subset = {u: trains[u] for u in ("u0", "few")}
    nwbfile = NWBFile("units", "schema-test", datetime(2024, 1, 1, tzinfo=timezone.utc))
    for row, times in enumerate(subset.values()):
        nwbfile.add_unit(spike_times=times, id=row)
    path = tmp_path / "units.nwb"
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    result = sdic.run_pipeline(dict(enumerate(subset.values())), population_size=2, duration_s=0.5)
    sdic.write_nwb(result, path)
    with h5py.File(path, "r") as file:
        described = {}
        for group in (file["units"], file["processing/dynamic_input_conductances"]):
            for name, item in group.items():
                if isinstance(item, h5py.Dataset) and "description" in item.attrs:
                    described[name] = str(item.attrs["description"])
    ours = {name: text for name, text in described.items() if name.startswith("dic_")}
    assert len(ours) >= len(result.estimates.columns)
    for name, text in ours.items():
        if name.removeprefix("dic_") in ALL_COLUMNS:
            assert "Unit:" in text, (name, text)
        assert "not in the schema" not in text, (name, text)


def test_run_takes_weights_made_by_train(tmp_path, capsys):
    import shutil

    from spikeinterface_dic import cli
    from spikeinterface_dic.inference.predict import WEIGHTS_DIR

    mine = tmp_path / "my_weights"
    mine.mkdir()
    for name in ("stg.pt", "stg.json", "stg_reference.npz"):
        shutil.copy(WEIGHTS_DIR / name, mine / name)
    argv = ["run", str(cli.example_path()), "--no-simulate", "--population-size", "2", "--weights", str(mine)]
    assert cli.main([*argv, "--out", str(tmp_path / "a.csv")]) == 0
    units = pd.read_csv(tmp_path / "a_units.csv")
    assert len(units) and units["g_s"].notna().any()
    corrupt = tmp_path / "corrupt_weights"
    shutil.copytree(mine, corrupt)
    (corrupt / "stg.pt").write_bytes(b"not weights")  # a corrupt file is refused with its name, not used
    argv[-1] = str(corrupt)
    assert cli.main([*argv, "--out", str(tmp_path / "b.csv")]) == 1
    assert "stg.pt" in capsys.readouterr().err
