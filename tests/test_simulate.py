"""Tests of the population simulator (numba kernel) against converged references.

(a) The example sets of spec 9 against the converged reference values of spec 11 (facts from the spec).
(b) Random members of degenerate populations against our own scipy reference (``simulate_reference``, LSODA).
(c) Time scale, (d) noise, (e) voltage traces, (f) input validation.

Acceptance criterion (spec 9, last bullet, applied to the converged reference): same label; tonic: spike count within 1
and mean ISI within 1 %; bursting: the same mean number of spikes per burst and the inter-burst frequency within 1 %
(mixed-mode bursters, whose burst sequence is irregular and changes with the solver tolerance, get a documented looser
criterion; see MIXED_MODE_F_INTER_RTOL).

Cost: the default run takes ~40 s on 2 cores, ~25 s of it in the scipy reference of the three short-window members;
compilation of the STG and DA kernels adds ~5 s each. The slow test (``-m slow``) takes ~10 min.
"""

import time

import numpy as np
import pytest

from spikeinterface_dic.features import spike_train_features
from spikeinterface_dic.models import DA, STG, get_model
from spikeinterface_dic.population import generate_population
from spikeinterface_dic.simulate import simulate
from spikeinterface_dic.simulate.reference import simulate_reference
from spikeinterface_dic.simulate.spikes import detect_spikes

STG_SETS = {name: list(g) for name, g in get_model("stg").extra["example_sets"].items()}  # spec section 9
DA_SETS = {name: list(g) for name, g in get_model("da").extra["example_sets"].items()}
RATE_RTOL = 0.01


def features_of(trains):
    return spike_train_features(trains, mode="improved")


def _relative_error(value, reference):
    return abs(value / reference - 1.0)


# ---------------------------------------------------------------------------------- (a) spec 11 converged references
@pytest.fixture(scope="module")
def stg_examples():
    """S1-S4 at the model defaults (0-6 s, 3 s transient, dt 0.05 ms, second-order scheme)."""
    trains = simulate("stg", np.array(list(STG_SETS.values())))
    features = features_of(trains)
    features.index = list(STG_SETS)
    return trains, features


@pytest.fixture(scope="module")
def da_examples():
    """The three DA sets at the model defaults (0-12 s, 3 s transient, dt 0.0125 ms)."""
    trains = simulate("da", np.array(list(DA_SETS.values())))
    features = features_of(trains)
    features.index = list(DA_SETS)
    return trains, features


def test_defaults_are_the_spec_windows():
    assert (STG.default_duration_ms, STG.default_transient_ms) == (6000.0, 3000.0)
    assert (DA.default_duration_ms, DA.default_transient_ms) == (12000.0, 3000.0)


def test_s1_tonic(stg_examples):
    _, f = stg_examples
    assert f.loc["S1", "label"] == "spiking"
    assert abs(f.loc["S1", "n_spikes"] - 40) <= 1
    assert _relative_error(f.loc["S1", "f_spiking_hz"], 13.207) < RATE_RTOL


def test_s2_bursting(stg_examples):
    _, f = stg_examples
    assert f.loc["S2", "label"] == "bursting"
    assert f.loc["S2", "nbr_spikes_bursting"] == 4.0
    assert _relative_error(f.loc["S2", "f_inter_bursting_hz"], 7.3405) < RATE_RTOL


def test_s3_tonic(stg_examples):
    trains, f = stg_examples
    assert f.loc["S3", "label"] == "spiking"
    assert abs(f.loc["S3", "n_spikes"] - 46) <= 1
    mean_isi_ms = 1000.0 * np.diff(trains[2]).mean()
    assert _relative_error(mean_isi_ms, 65.3486) < RATE_RTOL
    assert _relative_error(f.loc["S3", "f_spiking_hz"], 15.3025) < RATE_RTOL


def test_s4_bursting(stg_examples):
    _, f = stg_examples
    assert f.loc["S4", "label"] == "bursting"
    assert f.loc["S4", "nbr_spikes_bursting"] == 8.0
    assert _relative_error(f.loc["S4", "f_inter_bursting_hz"], 5.7905) < RATE_RTOL


def test_da_fast_tonic(da_examples):
    _, f = da_examples
    assert f.loc["fast", "label"] == "spiking"
    assert abs(f.loc["fast", "n_spikes"] - 428) <= 1
    assert _relative_error(f.loc["fast", "f_spiking_hz"], 47.58) < RATE_RTOL


def test_da_tonic(da_examples):
    _, f = da_examples
    assert f.loc["tonic", "label"] == "spiking"
    assert f.loc["tonic", "n_spikes"] == 9
    assert _relative_error(f.loc["tonic", "f_spiking_hz"], 1.0102) < RATE_RTOL


def test_da_bursting(da_examples):
    _, f = da_examples
    assert f.loc["bursting", "label"] == "bursting"
    assert f.loc["bursting", "nbr_spikes_bursting"] == 10.0
    assert _relative_error(f.loc["bursting", "f_inter_bursting_hz"], 0.6763) < RATE_RTOL


# --------------------------------------------------------------------------- (b) population members vs scipy reference
# Mixed-mode bursters (bursts of 3, 4 and 5 spikes in an irregular sequence) exist near the 3/4-spike boundary of the
# (-4, 5) STG population. Their sequence depends on perturbations as small as the integration error: member 5 of the
# seed-2024 population has 3.44, 3.58, 4.0 and 4.0 spikes per burst with the scipy reference at rtol 1e-6, 1e-7, 1e-8
# and 1e-9 (f_inter 6.83, 6.75, 6.44, 6.45 Hz), and the kernel's own dt sweep moves such members non-monotonically.
# No integrator can be held to the exact mean for them, so they get a documented looser criterion (spikes per burst
# within 1, f_inter within 10 %), and at most MAX_MIXED_MODE_FRACTION of the members may be treated that way.
MIXED_MODE_F_INTER_RTOL = 0.10
MAX_MIXED_MODE_FRACTION = 0.15


def compare_patterns(fast_train, reference_train, name) -> bool:
    """Assert the criterion of the module docstring for one member; return True if it is a mixed-mode burster.

    A burster is "integer-stable" when both integrators give an integer mean number of spikes per burst (every kept
    burst has the same size); it must then be the same integer, with f_inter within 1 %. Otherwise it is mixed-mode.
    """
    fast, reference = features_of([fast_train, reference_train]).to_dict("records")
    message = f"{name}: kernel {fast} vs reference {reference}"
    assert fast["label"] == reference["label"], message
    if reference["label"] == "spiking":
        assert abs(fast["n_spikes"] - reference["n_spikes"]) <= 1, message
        assert _relative_error(np.diff(fast_train).mean(), np.diff(reference_train).mean()) < RATE_RTOL, message
        return False
    if reference["label"] != "bursting":
        return False
    per_burst_fast, per_burst_reference = fast["nbr_spikes_bursting"], reference["nbr_spikes_bursting"]
    integer_stable = per_burst_fast == round(per_burst_fast) and per_burst_reference == round(per_burst_reference)
    if integer_stable:
        assert per_burst_fast == per_burst_reference, message
        assert _relative_error(fast["f_inter_bursting_hz"], reference["f_inter_bursting_hz"]) < RATE_RTOL, message
        return False
    assert abs(per_burst_fast - per_burst_reference) <= 1.0, message
    assert _relative_error(fast["f_inter_bursting_hz"], reference["f_inter_bursting_hz"]) < MIXED_MODE_F_INTER_RTOL, (
        message
    )
    return True


def _reference_trains(model, gbar, duration_ms, transient_ms, **tolerances):
    """Spike trains (s) of every row with scipy; also returns the wall time per neuron."""
    trains, seconds = [], []
    for row in np.atleast_2d(gbar):
        start = time.perf_counter()
        trains.append(simulate_reference(model, row, duration_ms, transient_ms, **tolerances) / 1000.0)
        seconds.append(time.perf_counter() - start)
    return trains, seconds


def test_population_members_match_reference_short_window():
    """Three STG members over 2.5 s with a 1 s transient: one of a tonic population (4, 5) and the first two of a
    bursting one (-4, 5), regular 4-spike bursters.

    The reference here uses LSODA rtol 1e-6, atol 1e-8 (about 5-8 s per member instead of 8-12 s at rtol 1e-8); for
    these members its features agree with rtol 1e-8 to ~1e-5, far below the 1 % tolerance.
    """
    gbar = np.vstack(
        (
            generate_population("stg", 4.0, 5.0, n=1, seed=11).gbar,
            generate_population("stg", -4.0, 5.0, n=10, seed=2024).gbar[:2],
        )
    )
    fast = simulate("stg", gbar, duration_s=2.5, transient_s=1.0)
    reference, seconds = _reference_trains("stg", gbar, 2500.0, 1000.0, rtol=1e-6, atol=1e-8)
    print(f"reference: {np.round(seconds, 1)} s per member")
    assert features_of(reference)["label"].tolist() == ["spiking", "bursting", "bursting"]
    mixed = [compare_patterns(fast[i], reference[i], f"member {i}") for i in range(len(gbar))]
    assert sum(mixed) <= 1, "both bursting members are mixed-mode: the strict criterion was not exercised"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "targets"),
    [("stg", ((4.0, 5.0), (-4.0, 5.0))), ("da", ((0.5, 5.0), (-2.0, 5.0)))],
    ids=["stg", "da"],
)
def test_population_members_match_reference_full_window(model, targets):
    """20 members per model (10 at a tonic target, 10 at a bursting one) over the full windows (STG 0-6 s, DA 0-12 s,
    3 s transient) against the converged reference (LSODA rtol 1e-8, atol 1e-10). About 8 min (STG) and 2 min (DA)."""
    gbar = np.vstack([generate_population(model, g_s, g_u, n=10, seed=2024).gbar for g_s, g_u in targets])
    m = STG if model == "stg" else DA
    fast = simulate(model, gbar)
    reference, seconds = _reference_trains(model, gbar, m.default_duration_ms, m.default_transient_ms)
    print(f"{model}: reference {np.mean(seconds):.1f} s per member (total {np.sum(seconds):.0f} s)")
    labels = features_of(reference)["label"]
    assert (labels[:10] == "spiking").all() and (labels[10:] == "bursting").all(), labels.tolist()
    mixed = [compare_patterns(fast[i], reference[i], f"{model} member {i}") for i in range(len(gbar))]
    print(f"{model}: mixed-mode members {np.flatnonzero(mixed).tolist()}")
    assert sum(mixed) <= MAX_MIXED_MODE_FRACTION * len(gbar), f"{sum(mixed)} mixed-mode members: {mixed}"


# ----------------------------------------------------------------------------------------------------- (c) time scale
@pytest.mark.parametrize("name", ["S3", "S4"])
def test_time_scale_stretches_spike_times_exactly(name):
    """k = 2 with duration and transient doubled: spike times exactly twice those at k = 1.

    The kernel integrates the unscaled model over duration / k with the same step and multiplies the spike times by k,
    so the scaling is exact by construction. DICs are unchanged by construction as well: they depend on the time
    constants only through the log-interpolated weights w(tau; tau_1, tau_2), which are invariant when every time
    constant is multiplied by k (checked in tests/test_dic.py::test_timescale_weight_formula_and_scale_invariance),
    and ``compute_dics`` takes no time scale at all.
    """
    gbar = STG_SETS[name]
    base = simulate("stg", gbar, duration_s=4.0, transient_s=2.0)[0]
    slow = simulate("stg", gbar, duration_s=8.0, transient_s=4.0, time_scale=2.0)[0]
    assert base.size > 10
    np.testing.assert_allclose(slow, 2.0 * base, rtol=1e-12, atol=0)
    # The default window follows the time scale too.
    default_slow = simulate("stg", gbar, time_scale=2.0)[0]
    np.testing.assert_allclose(default_slow, 2.0 * simulate("stg", gbar)[0], rtol=1e-12, atol=0)


def test_time_scale_halves_rates_and_keeps_pattern(stg_examples):
    trains = simulate("stg", np.array(list(STG_SETS.values())), time_scale=2.0)
    f = features_of(trains)
    f.index = list(STG_SETS)
    reference = stg_examples[1]
    assert (f["label"] == reference["label"]).all()
    np.testing.assert_allclose(f["main_frequency_hz"], reference["main_frequency_hz"] / 2.0, rtol=1e-9)


# ---------------------------------------------------------------------------------------------------------- (d) noise
def test_noise_is_reproducible_and_seeded():
    gbar = np.array([STG_SETS["S3"], STG_SETS["S4"]])
    kwargs = dict(duration_s=2.0, transient_s=0.5, noise_std=2.0)
    first = simulate("stg", gbar, seed=3, **kwargs)
    again = simulate("stg", gbar, seed=3, **kwargs)
    other = simulate("stg", gbar, seed=4, **kwargs)
    quiet = simulate("stg", gbar, duration_s=2.0, transient_s=0.5)
    for a, b, c, q in zip(first, again, other, quiet, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.size != c.size or not np.allclose(a, c, rtol=0, atol=1e-6)
        assert a.size != q.size or not np.allclose(a, q, rtol=0, atol=1e-6)
    # Each neuron's noise depends on (seed, row index) only, not on the other rows or their number.
    np.testing.assert_array_equal(simulate("stg", gbar[0], seed=3, **kwargs)[0], first[0])
    swapped_first_row = simulate("stg", [STG_SETS["S1"], STG_SETS["S4"], STG_SETS["S2"]], seed=3, **kwargs)
    np.testing.assert_array_equal(swapped_first_row[1], first[1])


def test_zero_noise_is_no_noise():
    gbar = np.array([STG_SETS["S3"], STG_SETS["S2"]])
    quiet = simulate("stg", gbar, duration_s=2.0, transient_s=0.5)
    for seed in (0, 9):
        zero = simulate("stg", gbar, duration_s=2.0, transient_s=0.5, noise_std=0.0, seed=seed)
        for a, b in zip(quiet, zero, strict=True):
            np.testing.assert_array_equal(a, b)


def test_noisy_s4_keeps_bursting():
    """Spec 9: S4 stays bursting with the original's noise (sigma 5 filtered, sd ~2.1 uA/cm2)."""
    trains = simulate("stg", STG_SETS["S4"], noise_std=2.0, seed=7)
    f = features_of(trains).iloc[0]
    assert f["label"] == "bursting"
    assert 7.0 <= f["nbr_spikes_bursting"] <= 11.0
    assert abs(f["f_inter_bursting_hz"] / 5.7905 - 1.0) < 0.2


def test_noisy_da_tonic_runs():
    trains = simulate("da", DA_SETS["tonic"], duration_s=6.0, transient_s=1.0, noise_std=0.5, seed=1)
    assert trains[0].size >= 3


# -------------------------------------------------------------------------------------------------- (e) voltage trace
def simulate_with_trace(model, gbar, **kwargs):
    """(spike trains, (t_s, v_mV)) from one simulate call with return_voltage_of."""
    trains, trace = simulate(model, gbar, **kwargs)
    return trains, trace


def test_trace_is_returned_with_the_spike_trains():
    result = simulate("stg", [STG_SETS["S3"], STG_SETS["S1"]], duration_s=1.0, transient_s=0.5, return_voltage_of=1)
    trains, (t_s, v) = result
    assert len(trains) == 2 and t_s.shape == v.shape


def test_voltage_trace_of_s3():
    gbar = np.array([STG_SETS["S1"], STG_SETS["S3"]])
    trains, (t_s, v) = simulate_with_trace("stg", gbar, return_voltage_of=1, voltage_stride=1)
    assert trains[1].size == 46 or abs(trains[1].size - 46) <= 1
    # Samples are V at t = k * dt * stride from t = 0 (transient included). The last sample is left out: with
    # n_steps % stride == 0 it is never written (package bug, see test_voltage_trace_has_no_unwritten_sample).
    t_s, v = t_s[:-1], v[:-1]
    np.testing.assert_allclose(np.diff(t_s), STG.default_dt_ms / 1000.0, rtol=1e-9)
    assert v[0] == STG.v_init_mV
    recorded = t_s >= 3.0
    assert 48.0 < v[recorded].max() < 52.0  # converged reference: Vmax 49.83 mV
    assert -73.0 < v[recorded].min() < -69.0  # Vmin -70.83 mV
    onsets = detect_spikes(1000.0 * t_s, v) / 1000.0
    onsets = onsets[onsets >= 3.0] - 3.0
    assert onsets.size == trains[1].size
    # Same linear interpolation between the same samples as the kernel.
    np.testing.assert_allclose(onsets, trains[1], rtol=0, atol=1e-9)


def test_voltage_trace_with_stride():
    trains, (t_s, v) = simulate_with_trace(
        "stg", STG_SETS["S3"], duration_s=2.0, transient_s=1.0, return_voltage_of=0, voltage_stride=4
    )
    t_s, v = t_s[:-1], v[:-1]
    np.testing.assert_allclose(np.diff(t_s), 4 * STG.default_dt_ms / 1000.0, rtol=1e-9)
    onsets = detect_spikes(1000.0 * t_s, v) / 1000.0
    onsets = onsets[onsets >= 1.0] - 1.0
    assert onsets.size == trains[0].size
    np.testing.assert_allclose(onsets, trains[0], rtol=0, atol=4 * STG.default_dt_ms / 1000.0)


@pytest.mark.parametrize("stride", [1, 4])
def test_voltage_trace_has_no_unwritten_sample(stride):
    """Every returned sample is V at its time: a longer run has the same samples at the same times."""
    kwargs = dict(transient_s=0.5, return_voltage_of=0, voltage_stride=stride)
    _, (t_s, v) = simulate_with_trace("stg", STG_SETS["S3"], duration_s=1.0, **kwargs)
    _, (t_long, v_long) = simulate_with_trace("stg", STG_SETS["S3"], duration_s=1.5, **kwargs)
    np.testing.assert_array_equal(t_s, t_long[: t_s.size])
    np.testing.assert_array_equal(v, v_long[: v.size])


@pytest.mark.parametrize("row", [5, -1])
def test_voltage_trace_row_out_of_range_raises(row):
    with pytest.raises(ValueError):
        simulate("stg", STG_SETS["S3"], duration_s=0.2, transient_s=0.1, return_voltage_of=row)


# ----------------------------------------------------------------------------------------------------- (f) bad inputs
S3 = STG_SETS["S3"]


@pytest.mark.parametrize(
    ("gbar", "kwargs", "message"),
    [
        (S3[:1] + [-1.0] + S3[2:], {}, "negative conductances"),
        (S3[:1] + [np.nan] + S3[2:], {}, "NaN conductances"),
        (S3[:7], {}, r"shape \(\.\.\., 8\) with columns Na, Kd"),
        (np.ones((2, 7)), {}, r"got shape \(2, 7\)"),
        (np.ones((2, 2, 8)), {}, "must be 2-D"),
        (S3[:7] + [0.0], {}, "g_leak <= 0"),
        (S3, {"duration_s": 1.0, "transient_s": 1.0}, "transient_s < duration_s"),
        (S3, {"duration_s": 1.0, "transient_s": 2.0}, "transient_s < duration_s"),
        (S3, {"duration_s": 1.0, "transient_s": -0.1}, "transient_s < duration_s"),
        (S3, {"backend": "cuda"}, "unknown backend 'cuda'"),
        (S3, {"dt_ms": 0.0}, "dt_ms must be > 0"),
        (S3, {"time_scale": -1.0}, "time_scale must be a positive number"),
        (S3, {"time_scale": np.nan}, "time_scale must be a positive number"),
        (S3, {"noise_std": -1.0}, "noise_std must be >= 0"),
        (S3, {"noise_std": np.inf}, "noise_std must be >= 0"),
    ],
    ids=[
        "negative",
        "nan",
        "short-row",
        "wrong-columns",
        "3-d",
        "zero-leak",
        "transient-equal",
        "transient-longer",
        "transient-negative",
        "backend",
        "dt",
        "time-scale",
        "time-scale-nan",
        "noise",
        "noise-inf",
    ],
)
def test_bad_inputs_raise(gbar, kwargs, message):
    with pytest.raises(ValueError, match=message):
        simulate("stg", gbar, **kwargs)


def test_unknown_model_raises():
    with pytest.raises(ValueError, match="unknown model 'hh'"):
        simulate("hh", S3)


def test_spike_buffer_overflow_is_reported():
    with pytest.raises(RuntimeError, match="max_rate_hz"):
        simulate("da", DA_SETS["fast"], duration_s=2.0, transient_s=1.0, max_rate_hz=5.0)


def test_single_row_and_matrix_agree():
    gbar = np.array(list(STG_SETS.values()))
    together = simulate("stg", gbar, duration_s=2.0, transient_s=1.0)
    for index, row in enumerate(gbar):
        np.testing.assert_array_equal(simulate("stg", row, duration_s=2.0, transient_s=1.0)[0], together[index])


@pytest.mark.parametrize("model_name", ["stg", "da"])
def test_interleaved_lanes_give_the_same_spikes(model_name, monkeypatch):
    """Two neurons per parallel iteration (the default) is a scheduling change only: identical spike times, also for
    an odd number of rows (the last pair repeats the last neuron) and with noise."""
    import importlib

    codegen = importlib.import_module("spikeinterface_dic.simulate.codegen")
    model = get_model(model_name)
    gbar = np.array(list(model.extra["example_sets"].values()))[:3]
    kwargs = dict(duration_s=0.6, transient_s=0.1, noise_std=[0.0, 1.0, 2.0], seed=5)
    results = {}
    for lanes in (1, 2):
        monkeypatch.setattr(codegen, "LANES", lanes)
        results[lanes] = simulate(model, gbar, **kwargs)
    assert sum(t.size for t in results[1]) > 3
    for one, two in zip(results[1], results[2], strict=True):
        np.testing.assert_array_equal(one, two)
