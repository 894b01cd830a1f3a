"""Probe ground truth: recording of model neurons, a real spike sorter, and the sorting-quality gate of the DICs."""

import numpy as np
import pandas as pd
import pytest

import spikeinterface_dic as sdic  # registers the analyzer extensions
from spikeinterface_dic.schema import ALL_COLUMNS, SORTING_QUALITY_COLUMNS, data_dictionary
from spikeinterface_dic.spikeinterface.ground_truth import (
    GroundTruthNeuron,
    build_recording,
    burst_amplitude_factors,
    compute_quality_metrics,
    evaluate_sorting,
    simulate_neurons,
    write_ground_truth_nwb,
)
from spikeinterface_dic.spikeinterface.quality_gate import (
    COMPUTE_HINT,
    DIC_ERROR_FLOOR,
    SortingQualityThresholds,
    sorting_quality_flags,
)

DIC = "dynamic_input_conductances"


def test_burst_attenuation_decays_within_bursts_only():
    burst = np.array([0.0, 0.01, 0.02, 0.03])
    bursting = np.concatenate([burst + 0.5 * i for i in range(8)])
    factors = burst_amplitude_factors(bursting, burst_attenuation=0.6)
    np.testing.assert_allclose(factors[:4], [1.0, 0.8667, 0.7333, 0.6], atol=1e-3)
    np.testing.assert_allclose(factors[4:8], factors[:4])
    tonic = np.arange(40) * 0.1
    np.testing.assert_array_equal(burst_amplitude_factors(tonic, 0.6), np.ones(40))


def test_build_recording_injects_every_spike_with_its_factor():
    trains = [np.arange(0.1, 1.9, 0.05), np.concatenate([[0.2, 0.21, 0.22], [1.2, 1.21, 1.22], [1.6, 1.61, 1.62]])]
    truth = build_recording(trains, 2.0, num_channels=8, noise_level_uv=0.0, drift_fraction=0.0, seed=3)
    assert truth.recording.get_num_channels() == 8 and truth.recording.get_probe() is not None
    for unit, train in enumerate(trains):
        np.testing.assert_array_equal(
            truth.sorting.get_unit_spike_train(unit, return_times=True), np.round(train * 25e3) / 25e3
        )
    np.testing.assert_allclose(truth.burst_factors[1][:3], [1.0, 0.8, 0.6])
    # Without noise, a unit's peak on its best channel is its template peak times the spike's factor.
    traces = truth.recording.get_traces(return_in_uV=False)
    best = int(np.argmax(np.abs(truth.templates[1]).max(axis=0)))
    peak = float(np.abs(truth.templates[1][:, best]).max())
    for time, factor in zip(trains[1][:3], truth.amplitude_factors[1][:3], strict=True):
        frame = int(round(time * 25e3))
        assert np.abs(traces[frame - 10 : frame + 40, best]).max() == pytest.approx(peak * factor, rel=0.05)
    with pytest.raises(ValueError, match="closer than"):
        build_recording([np.array([0.1, 0.1005])], 1.0, num_channels=8)


def test_gate_flags_with_reasons_and_never_drops():
    metrics = pd.DataFrame(
        {
            "amplitude_cutoff": [0.01, 0.4, np.nan, 0.02],
            "rp_contamination": [0.0, 0.0, 0.0, 0.5],
            "presence_ratio": [1.0, 1.0, 1.0, 0.5],
        },
        index=["a", "b", "c", "d"],
    )
    ok, reasons = sorting_quality_flags(metrics, ["a", "b", "c", "d", "e"])
    assert ok.tolist() == [True, False, False, False, False]
    assert reasons[0] == ""
    assert "amplitude_cutoff" in reasons[1] and "0.40 above" in reasons[1]
    assert "could not be computed" in reasons[2]
    assert "rp_contamination" in reasons[3] and "presence_ratio 0.50 below" in reasons[3]
    assert "could not be computed" in reasons[4]  # a unit absent from the metrics is not silently ok
    # A check disabled by the user (None) is skipped; a missing metric says what to compute.
    ok, reasons = sorting_quality_flags(metrics[["rp_contamination"]], ["a"], {"max_amplitude_cutoff": None})
    assert not ok[0] and "presence_ratio" in reasons[0] and "compute" in reasons[0]
    ok, reasons = sorting_quality_flags(None, ["a", "b"])
    assert not ok.any() and all(r == f"not checked: {COMPUTE_HINT}" for r in reasons)
    with pytest.raises(ValueError, match="unknown sorting quality thresholds"):
        SortingQualityThresholds.from_dict({"max_snr": 3})


@pytest.fixture(scope="module")
def small_truth():
    neurons = [
        GroundTruthNeuron("stg", g_s=-6.0, g_u=5.0, time_scale=1.0, seed=1),
        GroundTruthNeuron("stg", g_s=4.0, g_u=5.0, time_scale=1.0, seed=2),
        GroundTruthNeuron("stg", g_s=-4.0, g_u=8.0, time_scale=2.0, seed=3),
        GroundTruthNeuron("da", g_s=-4.0, g_u=6.0, time_scale=1.0, seed=8),
    ]
    duration_s = 15.0
    trains = simulate_neurons(neurons, duration_s)
    truth = build_recording(
        trains,
        duration_s,
        num_channels=16,
        burst_attenuation=[0.5, 1.0, 0.6, 0.6],
        unit_depths_um=[20.0, 60.0, 100.0, 130.0],
        seed=0,
    )
    return neurons, duration_s, truth


def test_gate_in_the_dic_extension(small_truth, tmp_path):
    """Metrics from the analyzer reach the DIC table and its CSV / NWB-bound result; without them: 'not checked'."""
    from spikeinterface.core import create_sorting_analyzer

    neurons, duration_s, truth = small_truth
    analyzer = create_sorting_analyzer(truth.sorting, truth.recording, format="memory", sparse=True)
    analyzer.compute(DIC, model="stg")
    estimates = analyzer.get_extension(DIC).get_data()
    assert not estimates["sorting_quality_ok"].any()
    assert estimates["sorting_quality_reason"].str.startswith("not checked: compute the 'quality_metrics'").all()
    assert not analyzer.has_extension("quality_metrics")  # never computed behind the user's back

    metrics = compute_quality_metrics(analyzer)
    analyzer.compute(DIC, model="stg")
    estimates = analyzer.get_extension(DIC).get_data()
    assert estimates["sorting_quality_reason"].str.contains("not checked").sum() == 0
    expected_ok, expected_reasons = sorting_quality_flags(metrics, analyzer.unit_ids)
    assert estimates["sorting_quality_ok"].tolist() == expected_ok.tolist()
    assert estimates["sorting_quality_reason"].tolist() == expected_reasons
    assert len(estimates) == len(neurons)  # flagged units are kept

    analyzer.compute(DIC, model="stg", sorting_quality={"max_amplitude_cutoff": -1.0})
    estimates = analyzer.get_extension(DIC).get_data()
    assert not estimates["sorting_quality_ok"].any()
    assert estimates["sorting_quality_reason"].str.contains("above -1").all()
    # One schema entry per column: descriptions for CSV data dictionaries and NWB column descriptions.
    for column in SORTING_QUALITY_COLUMNS:
        assert ALL_COLUMNS[column.name] is column
        assert data_dictionary([column.name])["description"].iloc[0] == column.description
    # The columns reach every output through the estimates (CSV here; NWB writes every estimates column).
    analyzer.compute("twin_populations", population_size=2, simulate=False)
    result = analyzer.get_extension("twin_populations").to_pipeline_result()
    units_path, _, columns_path = sdic.write_csv(result, tmp_path / "gate")
    written = pd.read_csv(units_path, keep_default_na=False)
    assert written["sorting_quality_reason"].tolist() == estimates["sorting_quality_reason"].tolist()
    assert "sorting_quality_ok" in pd.read_csv(columns_path)["column"].tolist()
    # The selection keeps the gate's columns per unit.
    selected_analyzer = analyzer.select_units(analyzer.unit_ids[:2])  # held: an extension keeps a weak reference
    selected = selected_analyzer.get_extension(DIC).get_data()
    assert selected["sorting_quality_reason"].tolist() == estimates["sorting_quality_reason"].tolist()[:2]


def test_well_isolated_sorted_units_keep_their_dics(small_truth, tmp_path):
    """Reduced study: tridesclous2 on 15 s x 16 channels; units sorted with accuracy >= 0.9 get DICs within 1.5x of
    their true train's error. The error is floored at DIC_ERROR_FLOOR (0.5, leak-normalised units): below it, two
    estimates differ by less than the network's own spread on intact trains, so a ratio of two such errors is noise.
    """
    pytest.importorskip("hdbscan", reason="tridesclous2 needs hdbscan (pip install -e '.[sorting]')")
    from spikeinterface.sorters import run_sorter

    neurons, duration_s, truth = small_truth
    # Generated recordings are not serializable: sorters read a saved binary copy (as in the study script).
    recording = truth.recording.save(folder=tmp_path / "recording", n_jobs=1, progress_bar=False)
    sorting = run_sorter(
        "tridesclous2",
        recording,
        folder=tmp_path / "tdc2",
        verbose=False,
        seed=0,
        job_kwargs=dict(n_jobs=1, progress_bar=False),
    )
    truth.recording = recording
    table = evaluate_sorting(truth, neurons, sorting, duration_s)
    matched = table[table["gt_unit"] >= 0]
    assert len(matched) == len(neurons)
    well_isolated = matched[matched["accuracy"] >= 0.9]
    assert len(well_isolated) >= 2, table[["gt_unit", "sorted_unit", "accuracy"]]
    floor = well_isolated["dic_error_true"].clip(lower=DIC_ERROR_FLOOR)
    assert (well_isolated["dic_error_sorted"] <= 1.5 * floor).all(), table.to_string()
    assert table["sorting_quality_reason"].notna().all()


def test_ground_truth_units_to_nwb_and_gate_columns_round_trip(small_truth, tmp_path):
    neurons, duration_s, truth = small_truth
    path = write_ground_truth_nwb(tmp_path / "gt.nwb", truth, neurons, duration_s)
    trains = sdic.read_spike_trains(path)
    assert sorted(trains) == sorted(n.name for n in neurons)
    for unit, neuron in enumerate(neurons):
        np.testing.assert_array_equal(trains[neuron.name], truth.sorting.get_unit_spike_train(unit, return_times=True))
    # The gate's columns go into the NWB Units table (dic_sorting_quality_*) and come back with their dtypes.
    analyzer = sdic.create_sorting_analyzer_from_sorting(truth.sorting, [duration_s])
    analyzer.compute(DIC, model="stg")
    analyzer.compute("twin_populations", population_size=2, simulate=False)
    result = analyzer.get_extension("twin_populations").to_pipeline_result()
    sdic.write_nwb(result, path)
    back = sdic.read_nwb_results(path).estimates
    assert back["sorting_quality_ok"].dtype == bool and not back["sorting_quality_ok"].any()
    assert back["sorting_quality_reason"].tolist() == result.estimates["sorting_quality_reason"].tolist()
    with pytest.raises(ValueError, match="unknown sorting quality thresholds"):
        analyzer.compute(DIC, model="stg", sorting_quality={"min_snr": 5})
