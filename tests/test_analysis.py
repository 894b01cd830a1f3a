"""Multi-unit analyses: DICs along a probe, putative classes, condition comparison, time courses, plots.

Ground truth comes from the package's own model: twins of two known DIC groups (tonic and bursting STG neurons)
are simulated, placed at known depths of a generated SpikeInterface recording, and must be recovered.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import spikeinterface_dic as sdic  # noqa: E402
from spikeinterface_dic.analysis import (  # noqa: E402
    class_conductance_summary,
    classify_units,
    compare_conditions,
    dics_along_probe,
    dics_over_time,
    fit_mixture,
    plot_class_conductances,
    plot_condition_comparison,
    plot_dics_along_probe,
    plot_dics_over_time,
    plot_unit_classes,
    read_result,
    split_by_intervals,
    with_classes,
    write_comparison,
)
from spikeinterface_dic.analysis._common import adjust_p_values  # noqa: E402

FS = 25_000.0
DURATION_S = 10.0
N_PER_GROUP = 6
TONIC, BURSTING = (4.0, 5.0), (-8.0, 8.0)  # (g_s, g_u) of group A (shallow) and group B (deep)
DEPTHS_UM = np.concatenate([np.linspace(5.0, 45.0, N_PER_GROUP), np.linspace(85.0, 165.0, N_PER_GROUP)])
GROUP = np.repeat([0, 1], N_PER_GROUP)  # 0: tonic (depth < 50 um), 1: bursting
N_CONDITION_UNITS, N_CHANGED = 8, 4
CAS_FACTOR = 1.5  # g_CaS of the changed units in condition b: g_s moves from -8 to about -16


@pytest.fixture(scope="module")
def simulated():
    """One kernel call: the 12 probe units, and 8 bursting units before and after g_CaS of 4 of them is scaled."""
    model = sdic.get_model("stg")
    probe_gbar = np.concatenate(
        [
            sdic.generate_population(model, *TONIC, n=N_PER_GROUP, seed=1).gbar,
            sdic.generate_population(model, *BURSTING, n=N_PER_GROUP, seed=2).gbar,
        ]
    )
    before = sdic.generate_population(model, *BURSTING, n=N_CONDITION_UNITS, seed=3).gbar
    after = before.copy()
    after[:N_CHANGED, model.channel_index("CaS")] *= CAS_FACTOR
    gbar = np.concatenate([probe_gbar, before, after])
    trains = sdic.simulate(
        model, gbar, duration_s=3.0 + DURATION_S, transient_s=3.0, noise_std=1.0, seed=np.arange(len(gbar))
    )
    trains = [np.round(t[t < DURATION_S - 0.01] * FS) / FS for t in trains]  # on the sampling grid
    n = 2 * N_PER_GROUP
    return {
        "probe": dict(enumerate(trains[:n])),
        "before": dict(enumerate(trains[n : n + N_CONDITION_UNITS])),
        "after": dict(enumerate(trains[n + N_CONDITION_UNITS :])),
        "gbar_before": before,
        "gbar_after": after,
    }


@pytest.fixture(scope="module")
def analyzer(simulated):
    """A generated multi-channel recording whose units fire the simulated trains, at known depths."""
    from probeinterface import generate_multi_columns_probe
    from spikeinterface.core import NumpySorting, create_sorting_analyzer, generate_ground_truth_recording
    from spikeinterface.core.generate import generate_templates

    trains = simulated["probe"]
    times = np.concatenate(list(trains.values()))
    labels = np.concatenate([[u] * len(t) for u, t in trains.items()])
    order = np.argsort(times, kind="stable")
    samples = np.round(times[order] * FS).astype(np.int64)
    sorting = NumpySorting.from_samples_and_labels([samples], [labels[order]], FS, unit_ids=list(trains))
    probe = generate_multi_columns_probe(num_columns=1, num_contact_per_column=10, ypitch=20.0)
    probe.set_device_channel_indices(np.arange(10))
    positions = np.column_stack([np.zeros(len(trains)), DEPTHS_UM, np.full(len(trains), 15.0)])
    templates = generate_templates(probe.contact_positions, positions, FS, 1.0, 3.0, seed=0)
    recording, sorting = generate_ground_truth_recording(
        durations=[DURATION_S], sampling_frequency=FS, sorting=sorting, probe=probe, templates=templates, seed=0
    )
    analyzer = create_sorting_analyzer(sorting, recording, sparse=False)
    analyzer.compute(["random_spikes", "templates"], progress_bar=False)
    analyzer.compute("unit_locations", method="monopolar_triangulation")
    # k known (= 1: the units were simulated at the model's kinetics, as a recording's temperature can tell): these
    # tests are of the analysis, not of reading k; with k unknown the noisy 10 s tonic units' k is read 1.0-1.5 (2.1
    # with the flows before cropping), which moves their g_u to ~20 and blurs the two groups.
    analyzer.compute("dynamic_input_conductances", model="stg", time_scale=1.0)
    analyzer.compute("twin_populations", population_size=40, simulate=False)
    return analyzer


@pytest.fixture(scope="module")
def along_probe(analyzer):
    return dics_along_probe(analyzer)


@pytest.fixture(scope="module")
def classes(along_probe):
    return classify_units(along_probe, seed=0)


@pytest.fixture(scope="module")
def condition_results(simulated):
    before = sdic.run_pipeline(simulated["before"], population_size=40, simulate=False, seed=0)
    after = sdic.run_pipeline(simulated["after"], population_size=40, simulate=False, seed=0)
    return before, after


@pytest.fixture(scope="module")
def comparison(condition_results):
    return compare_conditions(*condition_results)


# ---------------------------------------------------------------------------------------------------- along probe
def test_dics_along_probe_positions_and_estimates(along_probe):
    assert list(along_probe.index) == list(range(2 * N_PER_GROUP))
    assert along_probe["has_location"].all()
    # monopolar triangulation on a 20 um pitch column: within 10 um of the true depth
    assert np.abs(along_probe["depth_um"].to_numpy() - DEPTHS_UM).max() < 10.0
    assert (along_probe.loc[GROUP == 0, "label"] == "spiking").all()
    assert (along_probe.loc[GROUP == 1, "label"] == "bursting").all()
    for column in ("g_s_std", "g_u_std", "log_time_scale_std", "in_distribution", "time_scale"):
        assert column in along_probe.columns


def test_dics_along_probe_explicit_locations_keep_units_without_position(analyzer):
    locations = {unit_id: (0.0, depth) for unit_id, depth in zip(analyzer.unit_ids, DEPTHS_UM, strict=True)}
    del locations[3]
    table = dics_along_probe(analyzer, unit_locations=locations)
    assert len(table) == 2 * N_PER_GROUP
    assert not table.loc[3, "has_location"] and np.isnan(table.loc[3, "depth_um"])
    assert table.loc[4, "depth_um"] == DEPTHS_UM[4]
    # a PipelineResult with string ids and NWB-like electrode columns
    result = analyzer.get_extension("twin_populations").to_pipeline_result()
    result.estimates.index = [str(u) for u in result.estimates.index]
    electrodes = pd.DataFrame({"rel_x": 0.0, "rel_y": DEPTHS_UM}, index=list(analyzer.unit_ids))
    table = dics_along_probe(result, unit_locations=electrodes)
    assert table["has_location"].all() and table.loc["5", "depth_um"] == DEPTHS_UM[5]


def test_dics_along_probe_computes_missing_locations_only_when_asked(analyzer):
    copy = analyzer.select_units(analyzer.unit_ids)
    copy.delete_extension("unit_locations")
    with pytest.raises(ValueError, match="compute_missing_locations=True"):
        dics_along_probe(copy)
    table = dics_along_probe(copy, compute_missing_locations=True)
    assert copy.has_extension("unit_locations") and table["has_location"].all()
    assert np.abs(table["depth_um"].to_numpy() - DEPTHS_UM).max() < 25.0  # center of mass: biased at the ends


def test_dics_along_probe_errors_say_what_to_do(simulated):
    estimates = sdic.infer_dics({0: simulated["probe"][0]})
    with pytest.raises(ValueError, match="unit_locations="):
        dics_along_probe(estimates)
    with pytest.raises(ValueError, match=r"shape \(1, 2 or 3\)"):
        dics_along_probe(estimates, unit_locations=np.zeros((2, 2)))


# ---------------------------------------------------------------------------------------------------- classes
def test_classify_units_recovers_the_two_groups_and_their_depths(classes):
    assert classes.n_classes == 2
    assigned = classes.units["dic_class"].to_numpy()
    # each class is exactly one group (classes are numbered by increasing g_s: bursting first)
    assert set(assigned[GROUP == 1]) == {0} and set(assigned[GROUP == 0]) == {1}
    table = classes.classes
    assert table.loc[0, "label"] == "bursting" and table.loc[1, "label"] == "spiking"
    assert table.loc[1, "depth_max_um"] < 60.0 and table.loc[0, "depth_min_um"] > 70.0
    assert table.loc[0, "g_s_mean"] < 0 < table.loc[1, "g_s_mean"]
    assert (classes.units["class_probability"] > 0.9).all()
    assert classes.bic.idxmin() == 2


def test_classify_units_is_deterministic_and_handles_missing_estimates(along_probe, classes):
    again = classify_units(along_probe, seed=0)
    pd.testing.assert_series_equal(again.dic_class, classes.dic_class)
    with_silent = along_probe.copy()
    with_silent.loc[99] = with_silent.iloc[0]
    with_silent.loc[99, ["g_s", "g_u", "time_scale"]] = np.nan
    result = classify_units(with_silent)
    assert result.units.loc[99, "dic_class"] == -1 and np.isnan(result.units.loc[99, "class_probability"])
    forced = classify_units(along_probe, n_classes=1)
    assert forced.n_classes == 1 and (forced.dic_class == 0).all()


def test_classes_round_trip_through_nwb_as_dic_class(tmp_path, simulated, analyzer, classes):
    pynwb = pytest.importorskip("pynwb")
    from datetime import datetime, timezone

    path = tmp_path / "probe.nwb"
    nwbfile = pynwb.NWBFile(
        session_description="probe units", identifier="analysis", session_start_time=datetime.now(timezone.utc)
    )
    for unit_id, times in simulated["probe"].items():
        nwbfile.add_unit(spike_times=times, id=unit_id)
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    result = with_classes(analyzer, classes)
    assert result.estimates["class"].tolist() == classes.dic_class.tolist()
    sdic.write_nwb(result, path)
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        np.testing.assert_array_equal(io.read().units["dic_class"].data[:], classes.dic_class.to_numpy())
    assert sdic.read_nwb_results(path).estimates["class"].tolist() == classes.dic_class.tolist()


def test_fit_mixture_deconvolves_noisy_points():
    rng = np.random.default_rng(0)
    centers = np.array([[-3.0, 0.0], [3.0, 0.0]])
    truth = np.repeat([0, 1], 40)
    noise_sd = np.where(np.arange(80) % 2 == 0, 0.2, 1.0)[:, None] * np.ones((1, 2))
    points = centers[truth] + 0.3 * rng.standard_normal((80, 2)) + noise_sd * rng.standard_normal((80, 2))
    fit = fit_mixture(points, 2, noise=noise_sd**2, seed=1)
    assert fit.converged
    order = np.argsort(fit.means[:, 0])
    np.testing.assert_allclose(fit.means[order], centers, atol=0.4)
    # the intrinsic spread (0.3) is recovered, not the noisy one (up to ~0.75)
    assert np.all(np.sqrt(np.diagonal(fit.covariances, axis1=1, axis2=2)) < 0.6)
    assert fit.bic(80) < fit_mixture(points, 1, noise=noise_sd**2).bic(80)
    same = fit_mixture(points, 2, noise=noise_sd**2, seed=1)
    np.testing.assert_array_equal(same.means, fit.means)


def test_class_conductance_summary_names_the_compensated_channels(analyzer, classes):
    summary = class_conductance_summary(analyzer, classes)
    assert list(summary.index) == list(sdic.get_model("stg").conductance_names)
    # bursting twins (class 0) carry more CaS than tonic ones (class 1): the regenerative slow channel
    assert summary.loc["CaS", "median_class_0"] > summary.loc["CaS", "median_class_1"]
    assert summary.loc["CaS", "highest_class"] == 0
    assert summary.loc["CaS", "differs"]
    # channels drawn from the same base distribution in both classes do not differ
    assert not summary.loc[["Kd", "KCa", "leak"], "differs"].any()
    assert summary.loc["CaS", "kruskal_pvalue"] < 0.05


# ---------------------------------------------------------------------------------------------------- conditions
def test_true_dics_of_the_condition_change(simulated):
    before = sdic.compute_dics("stg", simulated["gbar_before"])[:, 1]
    after = sdic.compute_dics("stg", simulated["gbar_after"])[:, 1]
    assert np.all(after[:N_CHANGED] < before[:N_CHANGED] - 5.0)
    np.testing.assert_allclose(after[N_CHANGED:], before[N_CHANGED:])


def test_compare_conditions_detects_the_changed_units(comparison):
    units = comparison.units
    changed, control = units.iloc[:N_CHANGED], units.iloc[N_CHANGED:]
    assert changed["significant_g_s"].all() and (changed["direction_g_s"] == "decrease").all()
    assert changed["significant"].all()
    assert (changed["delta_g_s"] < 0).all()
    assert control["significant_g_s"].sum() <= 1 and control["significant"].sum() <= 1
    assert comparison.missing_units == []


def test_compare_conditions_from_csv_outputs(tmp_path, condition_results, comparison):
    for name, result in zip(("before", "after"), condition_results, strict=True):
        sdic.write_csv(result, tmp_path / name)
    before, after = read_result(tmp_path / "before_units.csv"), read_result(tmp_path / "after.csv")
    assert before.model_name == "stg" and len(before.populations) == N_CONDITION_UNITS
    again = compare_conditions(before, after)
    pd.testing.assert_frame_equal(again.units, comparison.units, check_dtype=False)
    units_path, channels_path = write_comparison(again, tmp_path / "comparison.csv")
    assert pd.read_csv(units_path)["significant"].sum() == comparison.units["significant"].sum()
    assert len(pd.read_csv(channels_path)) == len(comparison.channels)
    with pytest.raises(FileNotFoundError, match="_units.csv"):
        read_result(tmp_path / "nothing.csv")


def test_cli_compare_when_available(tmp_path, condition_results, capsys):
    from spikeinterface_dic import cli

    if "_command_compare" not in vars(cli):
        pytest.skip("the `compare` subcommand is not in spikeinterface_dic.cli yet")
    for name, result in zip(("before", "after"), condition_results, strict=True):
        sdic.write_csv(result, tmp_path / name)
    out = tmp_path / "shift.csv"
    code = cli.main(["compare", str(tmp_path / "before.csv"), str(tmp_path / "after.csv"), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and f"{N_CHANGED} of {N_CONDITION_UNITS} unit(s) shifted significantly" in printed
    assert (tmp_path / "shift_units.csv").is_file() and (tmp_path / "shift_channels.csv").is_file()


def test_compare_conditions_z_test_on_estimate_tables():
    def table(g_s, g_s_std, index):
        frame = pd.DataFrame({"g_s": g_s, "g_s_std": g_s_std, "g_u": 5.0, "g_u_std": 1.0}, index=index)
        return frame.assign(time_scale=1.0, time_scale_std=0.1)

    a = table([0.0, 0.0, 0.0], [3.0, 3.0, 3.0], [1, 2, 3])
    b = table([-10.0, 1.0], [4.0, 4.0], ["1", "2"])  # ids read back as text still match
    comparison = compare_conditions(a, b, correction="bonferroni")
    units = comparison.units
    assert list(units.index) == [1, 2] and comparison.missing_units == [3]
    np.testing.assert_allclose(units["delta_g_s_std"], [5.0, 5.0])  # sqrt(3^2 + 4^2)
    np.testing.assert_allclose(units["z_g_s"], [-2.0, 0.2])
    np.testing.assert_allclose(units["p_g_s"], [0.04550026, 0.84148058], rtol=1e-6)
    np.testing.assert_allclose(units["p_g_s_adjusted"], [0.09100052, 1.0], rtol=1e-6)
    assert not units["significant_g_s"].any()  # 0.046 does not survive Bonferroni over 2 units
    assert not compare_conditions(a, b, correction="none").units["significant_g_s"].iloc[1]
    assert compare_conditions(a, b, correction="none").units["direction_g_s"].tolist() == ["decrease", ""]
    assert comparison.channels.empty and (units["channels_increase"] == "").all()


def test_compare_conditions_twin_populations_name_the_direction(comparison):
    units = comparison.units
    for unit_id in units.index[:N_CHANGED]:
        assert "CaS" in units.loc[unit_id, "channels_increase"].split(",")
    summary = comparison.channel_summary()
    assert summary.loc["CaS", "n_increase"] == N_CHANGED and summary.loc["CaS", "n_decrease"] == 0
    assert summary.loc["Kd", "n_increase"] == 0 and summary.loc["Kd", "n_decrease"] == 0
    controls = comparison.channels[comparison.channels["unit_id"].isin(units.index[N_CHANGED:])]
    assert controls["changes"].sum() <= 2


def test_adjust_p_values_matches_textbook_values():
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.005])
    np.testing.assert_allclose(adjust_p_values(p, "bonferroni")[[0, 1, 2, 4]], [0.04, 0.16, 0.12, 0.02])
    np.testing.assert_allclose(adjust_p_values(p, "bh")[[0, 1, 2, 4]], [0.02, 0.04, 0.04, 0.02])
    np.testing.assert_allclose(adjust_p_values(p, "holm")[[0, 1, 2, 4]], [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(adjust_p_values(p, "bh")[3])
    with pytest.raises(ValueError, match="correction"):
        adjust_p_values(p, "fdr")


def test_split_by_intervals():
    trains = {"a": [0.5, 1.5, 2.5, 3.5], "b": [3.2]}
    first, second = split_by_intervals(trains, [(0.0, 2.0), (2.0, 4.0)])
    np.testing.assert_array_equal(first["a"], [0.5, 1.5])
    assert first["b"].size == 0 and second["b"].tolist() == [3.2]
    named = split_by_intervals(trains, {"drug": (2.0, 4.0)}, relative=True)
    np.testing.assert_allclose(named["drug"]["a"], [0.5, 1.5])
    with pytest.raises(ValueError, match="stop > start"):
        split_by_intervals(trains, [(2.0, 1.0)])


# ---------------------------------------------------------------------------------------------------- time course
@pytest.fixture(scope="module")
def time_course(simulated):
    tonic, bursting = simulated["probe"][0], simulated["probe"][N_PER_GROUP]
    switching = np.concatenate([tonic, bursting + DURATION_S])  # tonic for 10 s, then bursting
    return dics_over_time({"switch": switching}, window_s=5.0, step_s=2.5, t_start_s=0.0, t_stop_s=2 * DURATION_S)


def test_dics_over_time_shows_the_change(time_course):
    assert len(time_course) == 7
    first = time_course[time_course["t_stop_s"] <= DURATION_S]
    last = time_course[time_course["t_start_s"] >= DURATION_S]
    assert len(first) == 3 and len(last) == 3
    assert (first["label"] == "spiking").all() and (last["label"] == "bursting").all()
    assert (first["g_s"] > 0).all() and (last["g_s"] < 0).all()
    gap = first["g_s"].min() - last["g_s"].max()
    assert gap > 2 * np.hypot(first["g_s_std"].max(), last["g_s_std"].max())


def test_dics_over_time_rejects_a_span_shorter_than_a_window():
    with pytest.raises(ValueError, match="shorter than one window"):
        dics_over_time({0: [0.1, 0.2, 0.3]}, window_s=5.0)


# ---------------------------------------------------------------------------------------------------- plots
def test_plots_draw(along_probe, classes, analyzer, comparison, time_course):
    figures = [
        plot_dics_along_probe(along_probe, classes=classes),
        plot_dics_along_probe(analyzer),
        plot_unit_classes(classes),
        plot_class_conductances(analyzer, classes),
        plot_condition_comparison(comparison),
        plot_dics_over_time(time_course),
    ]
    for figure in figures:
        assert len(figure.axes) >= 2
        plt.close(figure)
