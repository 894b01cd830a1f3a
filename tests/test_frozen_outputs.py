"""Frozen outputs: kernel spike times, a small run_pipeline result and the analyzer extensions' data, pinned for fixed
seeds, so that a refactor is checked number for number.

The point-sampling parts pin the twin stage as it was before posterior twin sampling (``twin_sampling="point"``);
the posterior part pins the default sampling since it exists. The snapshot (``tests/data/frozen_outputs.npz``) was
written by this file's ``__main__`` before the redesign of issue 15 and must not be regenerated to make a refactor
pass: a change of numbers is a change of behaviour, and is regenerated deliberately
(``python tests/test_frozen_outputs.py``) with the reason in the commit message.

Tolerances (why): spike counts and labels are exact. Kernel spike times: 1e-9 s (the same float64 operations in the
same order; the margin absorbs a different SIMD width of another CPU). Network outputs are float32 and their last
digits depend on the CPU's torch kernels, so estimates: rtol 1e-4; populations follow the estimates smoothly:
rtol 1e-4; twins of a fixed population: spike times within 1e-4 s of the frozen ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import spikeinterface_dic as sdic

DATA = Path(__file__).parent / "data"
SNAPSHOT = DATA / "frozen_outputs.npz"
PIPELINE_SETTINGS = dict(model="stg", population_size=4, simulate=True, seed=3, duration_s=1.0, twin_sampling="point")
ESTIMATE_NUMBERS = ("g_s", "g_u", "g_s_std", "g_u_std", "time_scale", "time_scale_std", "time_scale_network")
FIDELITY_NUMBERS = ("fraction_matching", "twin_label_fraction", "n_twins", "fraction_matching_before_selection")
EXTENSION_NUMBERS = ("g_s", "g_u", "time_scale", "target_g_s", "target_g_u", "twin_time_scale", "fraction_matching")


def _packed(trains) -> tuple[np.ndarray, np.ndarray]:
    trains = [np.asarray(t, dtype=float) for t in trains]
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in trains])]).astype(np.int64)
    return (np.concatenate(trains) if trains else np.empty(0)), offsets


def kernel_outputs() -> dict:
    """Spike times of the spec's example sets (STG S1-S4, DA fast/tonic/bursting), one noisy row, one slowed row."""
    out = {}
    for name in ("stg", "da"):
        model = sdic.get_model(name)
        gbar = np.array(list(model.extra["example_sets"].values()))
        trains = sdic.simulate(model, gbar, duration_s=4.0, transient_s=2.0, seed=0)
        out[f"kernel_{name}_times"], out[f"kernel_{name}_offsets"] = _packed(trains)
    stg = sdic.get_model("stg")
    s3 = np.array([stg.extra["example_sets"]["S3"]])
    noisy = sdic.simulate(stg, s3, duration_s=3.0, transient_s=1.0, noise_std=0.5, seed=11)
    slowed = sdic.simulate(stg, s3, duration_s=6.0, transient_s=2.0, time_scale=2.0, seed=0)
    out["kernel_extra_times"], out["kernel_extra_offsets"] = _packed([*noisy, *slowed])
    return out


def pipeline_outputs() -> dict:
    trains = sdic.read_spike_trains(DATA / "spike2pop_stg_set.csv")
    result = sdic.run_pipeline(trains, **PIPELINE_SETTINGS)
    units = list(result.estimates.index)
    out = {"pipeline_units": np.array([str(u) for u in units])}
    out["pipeline_labels"] = np.array(result.estimates["label"].astype(str).tolist())
    for column in ESTIMATE_NUMBERS:
        out[f"pipeline_{column}"] = result.estimates[column].to_numpy(float)
    simulated = [u for u in units if u in result.populations]
    out["pipeline_simulated"] = np.array([str(u) for u in simulated])
    out["pipeline_gbar"] = np.concatenate([result.populations[u] for u in simulated])
    out["pipeline_twin_times"], out["pipeline_twin_offsets"] = _packed(
        [t for u in simulated for t in result.twin_spike_trains[u]]
    )
    for column in FIDELITY_NUMBERS:
        out[f"pipeline_fidelity_{column}"] = result.fidelity.loc[simulated, column].to_numpy(float)
    return out


def posterior_twin_outputs() -> dict:
    """The default twin sampling (each twin's parameters drawn from its unit's posterior, refined by SMC-ABC)."""
    trains = sdic.read_spike_trains(DATA / "spike2pop_stg_set.csv")
    result = sdic.run_pipeline(trains, **{**PIPELINE_SETTINGS, "twin_sampling": "posterior"})
    simulated = [u for u in result.estimates.index if u in result.populations]
    out = {"posterior_simulated": np.array([str(u) for u in simulated])}
    out["posterior_gbar"] = np.concatenate([result.populations[u] for u in simulated])
    out["posterior_parameters"] = np.concatenate([result.twin_parameters[u] for u in simulated])
    out["posterior_twin_times"], out["posterior_twin_offsets"] = _packed(
        [t for u in simulated for t in result.twin_spike_trains[u]]
    )
    for column in (*FIDELITY_NUMBERS, "n_simulated", "accepted_fraction"):
        out[f"posterior_fidelity_{column}"] = result.fidelity.loc[simulated, column].to_numpy(float)
    out["posterior_time_scale"] = result.estimates.loc[simulated, "time_scale"].to_numpy(float)
    return out


def extension_outputs() -> dict:
    from spikeinterface.core import NumpySorting

    model = sdic.get_model("stg")
    gbar = np.concatenate(
        [sdic.generate_population(model, g_s, g_u, 1, seed=i).gbar for i, (g_s, g_u) in enumerate([(-4, 5), (4, 5)])]
    )
    fs = 10_000.0
    trains = {f"u{i}": np.round(t * fs) / fs for i, t in enumerate(sdic.simulate(model, gbar, 8.0, 2.0, seed=0))}
    times = np.concatenate(list(trains.values()))
    labels = np.concatenate([[u] * len(t) for u, t in trains.items()])
    order = np.argsort(times, kind="stable")
    sorting = NumpySorting.from_times_and_labels([times[order]], [labels[order]], fs, unit_ids=list(trains))
    analyzer = sdic.create_sorting_analyzer_from_sorting(sorting)
    analyzer.compute("dynamic_input_conductances", model="stg")
    analyzer.compute(
        "twin_populations",
        population_size=4,
        duration_s=1.0,
        seed=7,
        twin_sampling="point",
        n_jobs=1,
        progress_bar=False,
    )
    estimates = analyzer.get_extension("dynamic_input_conductances").get_data()
    twins = analyzer.get_extension("twin_populations")
    summary = twins.get_data()
    out = {"extension_labels": np.array(estimates["label"].astype(str).tolist())}
    for column in EXTENSION_NUMBERS:
        source = estimates if column in estimates.columns else summary
        out[f"extension_{column}"] = source[column].to_numpy(float)
    out["extension_gbar"] = np.concatenate([twins.get_population(u).to_numpy() for u in trains])
    out["extension_twin_times"], out["extension_twin_offsets"] = _packed(
        [t for u in trains for t in twins.get_twin_spike_trains(u)]
    )
    return out


@pytest.fixture(scope="module")
def frozen():
    with np.load(SNAPSHOT) as data:
        return {key: data[key] for key in data.files}


def _assert_trains(frozen, new, prefix: str, atol: float):
    np.testing.assert_array_equal(new[f"{prefix}_offsets"], frozen[f"{prefix}_offsets"], err_msg=f"{prefix} counts")
    np.testing.assert_allclose(new[f"{prefix}_times"], frozen[f"{prefix}_times"], rtol=0, atol=atol, err_msg=prefix)


def test_kernel_spike_times_frozen(frozen):
    new = kernel_outputs()
    for prefix in ("kernel_stg", "kernel_da", "kernel_extra"):
        _assert_trains(frozen, new, prefix, atol=1e-9)


def test_run_pipeline_frozen(frozen):
    new = pipeline_outputs()
    for key in ("pipeline_units", "pipeline_labels", "pipeline_simulated"):
        np.testing.assert_array_equal(new[key], frozen[key], err_msg=key)
    for column in ESTIMATE_NUMBERS:
        np.testing.assert_allclose(new[f"pipeline_{column}"], frozen[f"pipeline_{column}"], rtol=1e-4, err_msg=column)
    np.testing.assert_allclose(new["pipeline_gbar"], frozen["pipeline_gbar"], rtol=1e-4)
    _assert_trains(frozen, new, "pipeline_twin", atol=1e-4)
    for column in FIDELITY_NUMBERS:
        key = f"pipeline_fidelity_{column}"
        np.testing.assert_allclose(new[key], frozen[key], rtol=1e-6, err_msg=key)


def test_posterior_twins_frozen(frozen):
    new = posterior_twin_outputs()
    np.testing.assert_array_equal(new["posterior_simulated"], frozen["posterior_simulated"])
    for key in ("posterior_gbar", "posterior_parameters", "posterior_time_scale"):
        np.testing.assert_allclose(new[key], frozen[key], rtol=1e-4, err_msg=key)
    _assert_trains(frozen, new, "posterior_twin", atol=1e-4)
    for column in (*FIDELITY_NUMBERS, "n_simulated", "accepted_fraction"):
        key = f"posterior_fidelity_{column}"
        np.testing.assert_allclose(new[key], frozen[key], rtol=1e-6, err_msg=key)


def test_extension_data_frozen(frozen):
    new = extension_outputs()
    np.testing.assert_array_equal(new["extension_labels"], frozen["extension_labels"])
    for column in EXTENSION_NUMBERS:
        key = f"extension_{column}"
        np.testing.assert_allclose(new[key], frozen[key], rtol=1e-4, err_msg=key)
    np.testing.assert_allclose(new["extension_gbar"], frozen["extension_gbar"], rtol=1e-4)
    _assert_trains(frozen, new, "extension_twin", atol=1e-4)


if __name__ == "__main__":
    np.savez_compressed(
        SNAPSHOT, **kernel_outputs(), **pipeline_outputs(), **posterior_twin_outputs(), **extension_outputs()
    )
    print(f"wrote {SNAPSHOT}")
