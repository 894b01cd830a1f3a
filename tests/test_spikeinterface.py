"""SpikeInterface integration: the two analyzer extensions, analyzers without a recording, the widget."""

import numpy as np
import pandas as pd
import pytest
from spikeinterface.core import NumpySorting

import spikeinterface_dic as sdic
from spikeinterface_dic.spikeinterface import (
    ComputeTwinPopulations,
    compute_dynamic_input_conductances,
    compute_twin_populations,
)
from spikeinterface_dic.spikeinterface.trains import combine_segment_estimates

FS = 10_000.0
CONDUCTANCE_SETS = [(-4.0, 5.0), (4.0, 5.0), (-6.0, 4.0)]  # (g_s, g_u): tonic and bursting STG neurons
N_VIOLATIONS = 5
DIC = "dynamic_input_conductances"
TWINS = "twin_populations"
TWIN_PARAMS = dict(population_size=4, simulate=True, duration_s=1.0, seed=7)


def make_sorting(segments: list[dict]) -> NumpySorting:
    """A NumpySorting with one segment per dict {unit_id: times in s}."""
    times_list, labels_list = [], []
    for trains in segments:
        times = np.concatenate([np.asarray(t, float) for t in trains.values()])
        labels = np.concatenate([[u] * len(t) for u, t in trains.items()])
        order = np.argsort(times, kind="stable")
        times_list.append(times[order])
        labels_list.append(labels[order])
    return NumpySorting.from_times_and_labels(times_list, labels_list, FS, unit_ids=list(segments[0]))


@pytest.fixture(scope="module")
def trains():
    model = sdic.get_model("stg")
    gbar = np.concatenate(
        [sdic.generate_population(model, g_s, g_u, 1, seed=i).gbar for i, (g_s, g_u) in enumerate(CONDUCTANCE_SETS)]
    )
    simulated = sdic.simulate(model, gbar, duration_s=8.0, transient_s=2.0, seed=0)
    # Spike times on the sampling grid, as a sorting stores them.
    trains = {str(i): np.round(t * FS) / FS for i, t in enumerate(simulated)}
    trains["3"] = np.array([0.5, 1.2])  # too few spikes: no estimate, no population
    # A sorting error: 5 extra spikes 0.4 ms after spikes of unit 0.
    trains["4"] = np.sort(np.concatenate([trains["0"], trains["0"][10 : 10 + N_VIOLATIONS] + 4 / FS]))
    return trains


@pytest.fixture(scope="module")
def analyzer(trains):
    analyzer = sdic.create_sorting_analyzer_from_sorting(make_sorting([trains]))
    analyzer.compute(DIC, model="stg")
    analyzer.compute(TWINS, **TWIN_PARAMS, n_jobs=1, progress_bar=False)
    return analyzer


def assert_same_data(a, b):
    assert set(a.data) == set(b.data)
    for key in a.data:
        x, y = np.asarray(a.data[key]), np.asarray(b.data[key])
        assert x.dtype == y.dtype, key
        np.testing.assert_array_equal(x, y, err_msg=key)


def test_recordingless_analyzer(trains, analyzer):
    assert analyzer.has_recording() and analyzer.get_num_channels() == 1
    last = max(t.max() for t in trains.values())
    assert analyzer.get_num_samples(0) > round(last * FS)
    with pytest.raises(ValueError, match="cover"):
        sdic.create_sorting_analyzer_from_sorting(make_sorting([trains]), durations_s=[1.0])


def test_data_are_plain_arrays(trains, analyzer):
    for name in (DIC, TWINS):
        for key, value in analyzer.get_extension(name).data.items():
            assert isinstance(value, np.ndarray) and value.dtype.kind in "fiubU", (name, key, type(value))
    estimates = analyzer.get_extension(DIC).get_data()
    assert list(estimates.index) == list(analyzer.unit_ids) and estimates.index.name == "unit_id"
    assert np.isfinite(estimates.loc[["0", "1", "2"], ["g_s", "g_u", "g_s_std", "time_scale"]].to_numpy()).all()
    assert estimates["in_distribution"].dtype == bool
    assert np.isnan(estimates.loc["3", "g_s"]) and "3 are needed" in estimates.loc["3", "ood_reason"]

    ext = analyzer.get_extension(TWINS)
    summary = ext.get_data()
    assert summary.loc["3", "population_size"] == 0 and summary.loc["3", "population_error"].startswith("no DIC")
    assert (summary.loc[["0", "1", "2"], "n_twins"] == 4).all()
    assert {"fraction_matching", "median_isi_distance", "twin_time_scale"} <= set(summary.columns)
    population = ext.get_population("1")
    assert population.shape == (4, 8) and list(population.columns) == [f"g_{c}" for c in ext.conductance_names]
    assert (population.to_numpy() >= 0).all()
    twins = ext.get_twin_spike_trains("1")
    assert len(twins) == 4 and all(t.dtype == np.float64 for t in twins)
    assert ext.get_population("3").shape == (0, 8) and ext.get_twin_spike_trains("3") == []
    # Each twin is a member of the degenerate population of its own (g_s, g_u), drawn from the unit's posterior.
    model = sdic.get_model("stg")
    parameters = ext.get_twin_parameters("1")
    assert list(parameters.columns) == ["member_g_s", "member_g_u", "member_time_scale"]
    dics = sdic.compute_dics(model, population.to_numpy())
    np.testing.assert_allclose(dics[:, 1], parameters["member_g_s"], atol=1e-5)
    np.testing.assert_allclose(dics[:, 2], parameters["member_g_u"], atol=1e-5)
    assert summary.loc["1", "twin_time_scale"] == np.median(parameters["member_time_scale"])


def test_refractory_violations_reported(trains, analyzer):
    estimates = analyzer.get_extension(DIC).get_data()
    assert estimates.loc["4", "n_refractory_violations"] == N_VIOLATIONS
    assert estimates.loc["0", "n_refractory_violations"] == 0
    # The violations are removed, so unit 4 is unit 0 again.
    assert estimates.loc["4", "n_spikes"] == len(trains["0"])
    np.testing.assert_allclose(
        estimates.loc["4", ["g_s", "g_u"]].to_numpy(float),
        estimates.loc["0", ["g_s", "g_u"]].to_numpy(float),
        rtol=1e-5,
    )


@pytest.mark.parametrize("format", ["binary_folder", "zarr"])
def test_save_and_reload(analyzer, tmp_path, format):
    folder = tmp_path / ("analyzer.zarr" if format == "zarr" else "analyzer")
    analyzer.save_as(format=format, folder=folder)
    for lazy in (False, True):
        loaded = sdic.load_sorting_analyzer(folder, lazy=lazy)
        for name in (DIC, TWINS):
            assert_same_data(analyzer.get_extension(name), loaded.get_extension(name))
            pd.testing.assert_frame_equal(
                analyzer.get_extension(name).get_data(), loaded.get_extension(name).get_data()
            )
        twins = loaded.get_extension(TWINS)
        assert twins.params == analyzer.get_extension(TWINS).params
        for a, b in zip(
            twins.get_twin_spike_trains("2"), analyzer.get_extension(TWINS).get_twin_spike_trains("2"), strict=True
        ):
            np.testing.assert_array_equal(a, b)


def test_select_units(analyzer):
    selected = analyzer.select_units(["2", "0"])
    for name in (DIC, TWINS):
        pd.testing.assert_frame_equal(
            selected.get_extension(name).get_data(),
            analyzer.get_extension(name).get_data().loc[list(selected.unit_ids)],
        )
    for unit_id in ("0", "2"):
        pd.testing.assert_frame_equal(
            selected.get_extension(TWINS).get_population(unit_id), analyzer.get_extension(TWINS).get_population(unit_id)
        )
        for a, b in zip(
            selected.get_extension(TWINS).get_twin_spike_trains(unit_id),
            analyzer.get_extension(TWINS).get_twin_spike_trains(unit_id),
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)


def test_merge_reestimates_merged_units(trains, analyzer):
    merged = analyzer.merge_units([["0", "1"]])
    new_id = [u for u in merged.unit_ids if u not in analyzer.unit_ids]
    assert len(new_id) == 1
    new_id = new_id[0]
    estimates = merged.get_extension(DIC).get_data()
    direct = sdic.infer_dics({new_id: np.concatenate([trains["0"], trains["1"]])}).loc[new_id]
    assert estimates.loc[new_id, "n_spikes"] == direct["n_spikes"]
    assert estimates.loc[new_id, "n_refractory_violations"] == direct["n_refractory_violations"]
    np.testing.assert_allclose(
        estimates.loc[new_id, ["g_s", "g_u"]].to_numpy(float), direct[["g_s", "g_u"]].to_numpy(float), rtol=1e-4
    )
    old = analyzer.get_extension(DIC).get_data()
    pd.testing.assert_frame_equal(estimates.loc[["2", "3", "4"]], old.loc[["2", "3", "4"]])
    twins = merged.get_extension(TWINS)
    summary = twins.get_data().loc[new_id]
    if estimates.loc[new_id, "label"] == "irregular":  # two neurons merged: no deterministic twin stands for both
        assert summary["n_twins"] == 0 and "irregular" in summary["population_error"]
    else:
        assert summary["n_twins"] == 4
        np.testing.assert_allclose(summary["target_g_s"], estimates.loc[new_id, "g_s"])
    pd.testing.assert_frame_equal(twins.get_population("2"), analyzer.get_extension(TWINS).get_population("2"))


def test_split_reestimates_split_units(trains, analyzer):
    n = len(trains["2"])
    split = analyzer.split_units({"2": [np.arange(n // 2), np.arange(n // 2, n)]})
    new_ids = [u for u in split.unit_ids if u not in analyzer.unit_ids]
    estimates = split.get_extension(DIC).get_data()
    assert sorted(estimates.loc[new_ids, "n_spikes"]) == sorted([n // 2, n - n // 2])
    pd.testing.assert_frame_equal(estimates.loc[["0", "1"]], analyzer.get_extension(DIC).get_data().loc[["0", "1"]])
    assert (split.get_extension(TWINS).get_data().loc[new_ids, "population_size"] == 4).all()


def test_n_jobs_do_not_change_results(analyzer):
    copies = [analyzer.select_units(["0", "2"]) for _ in range(2)]
    for n_jobs, copy in zip((1, 2), copies, strict=True):
        copy.compute(TWINS, **{**TWIN_PARAMS, "noise_std": 1.0}, n_jobs=n_jobs, progress_bar=False)
    assert_same_data(copies[0].get_extension(TWINS), copies[1].get_extension(TWINS))


def test_multi_segment_sorting(trains):
    boundary = 3.0
    units = ["0", "1", "2"]
    segments = [
        {u: trains[u][trains[u] < boundary] for u in units} | {"5": np.array([0.2, 0.9])},
        {u: trains[u][trains[u] >= boundary] - boundary for u in units} | {"5": np.array([0.1, 0.4])},
    ]
    analyzer = sdic.create_sorting_analyzer_from_sorting(make_sorting(segments))
    assert analyzer.get_num_segments() == 2
    estimates = compute_dynamic_input_conductances(analyzer, model="stg")
    assert list(estimates.index) == units + ["5"]
    assert (estimates.loc[units, "n_spikes"].to_numpy() == [len(trains[u]) for u in units]).all()
    assert np.isfinite(estimates.loc[units, ["g_s", "g_u", "time_scale"]].to_numpy(float)).all()
    # 4 spikes in all, but never 3 in one segment: no ISI is made up across the boundary.
    assert np.isnan(estimates.loc["5", "g_s"]) and "segment" in estimates.loc["5", "ood_reason"]
    summary = compute_twin_populations(analyzer, population_size=2, simulate=False)
    assert list(summary["population_size"]) == [2, 2, 2, 0]
    # A known time scale is reported as given, also when segments are combined.
    known = compute_dynamic_input_conductances(analyzer, model="stg", time_scale=2.5)
    assert np.allclose(known.loc[units, "time_scale"], 2.5) and (known.loc[units, "time_scale_std"] == 0).all()
    assert analyzer.get_extension(DIC).params["time_scale"] == 2.5
    with pytest.raises(ValueError, match="time_scale"):
        compute_dynamic_input_conductances(analyzer, model="stg", time_scale=0.0)


def test_segment_combination():
    segments = pd.DataFrame(
        dict(
            g_s=[1.0, 3.0],
            g_u=[5.0, 5.0],
            g_s_std=[1.0, 1.0],
            g_u_std=[1.0, 1.0],
            time_scale=[1.0, 1.0],
            time_scale_std=[0.1, 0.1],
            time_scale_low=[0.9, 0.9],
            time_scale_high=[1.1, 1.1],
            label=["spiking", "bursting"],
            in_distribution=[True, False],
            ood_reason=["", "too novel"],
            n_spikes=[10, 30],
            n_windows=[1, 1],
            n_refractory_violations=[0, 2],
            novelty=[0.1, 0.3],
            p_bursting=[0.2, 0.6],
        )
    )
    row = combine_segment_estimates(segments)
    assert row["p_bursting"] == pytest.approx((10 * 0.2 + 30 * 0.6) / 40)  # weighted by spikes
    assert row["g_s"] == pytest.approx(2.0) and row["g_s_std"] == pytest.approx(np.sqrt(0.5 + 1.0))
    assert row["g_u"] == pytest.approx(5.0) and row["g_u_std"] == pytest.approx(np.sqrt(0.5))
    assert row["label"] == "bursting" and row["n_spikes"] == 40 and row["n_refractory_violations"] == 2
    assert not row["in_distribution"] and row["ood_reason"] == "segment 1: too novel" and row["novelty"] == 0.3


def test_parameters():
    defaults = ComputeTwinPopulations.get_default_params()
    assert defaults["population_size"] == 100 and defaults["seed"] == 0 and defaults["duration_s"] is None
    with pytest.raises(ValueError, match="population_size"):
        ComputeTwinPopulations._set_params(None, population_size=0)


def test_pipeline_result(analyzer):
    result = analyzer.get_extension(TWINS).to_pipeline_result()
    assert result.model_name == "stg" and set(result.populations) == {"0", "1", "2", "4"}
    assert all(len(t) == 4 for t in result.twin_spike_trains.values())
    assert list(result.fidelity.index) == ["0", "1", "2", "4"]


def test_widget(analyzer):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spikeinterface_dic.spikeinterface import plot_dynamic_input_conductances

    widget = plot_dynamic_input_conductances(analyzer, backend="matplotlib")
    assert widget.figure is not None and widget.ax.get_xlabel().startswith("g_s")
    assert "no estimate (1): 3" in [text.get_text() for text in widget.ax.texts]
    widget = plot_dynamic_input_conductances(analyzer, unit_ids=["0", "2"], annotate=False)
    plt.close("all")


def test_twin_traces_on_request_reproduce_the_extension_twins(analyzer):
    """Traces are not stored; regenerated from conductances, k and seed, their spikes are the extension's twins."""
    extension = analyzer.get_extension(TWINS)
    assert not any("trace" in key for key in extension.data)
    spikes, traces = extension.get_twin_traces("1", twins=[0, 1], record_every_ms=0.5)
    stored_trains = extension.get_twin_spike_trains("1")[:2]
    assert all(train.size > 3 for train in stored_trains)
    for regenerated, stored in zip(spikes, stored_trains, strict=True):
        np.testing.assert_allclose(regenerated[: stored.size], stored, rtol=1e-12, atol=1e-12)
    assert traces["V"].shape[0] == 2
