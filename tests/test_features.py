"""Tests of the rule-based spike-train features (method spec 5.1; reference numbers of spec 9 and 11)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from spikeinterface_dic.features import (
    FEATURE_COLUMNS,
    isi_distance,
    pattern_distance,
    pattern_matches,
    spike_train_features,
    spikes_per_burst_tolerance_of,
)

DATA = Path(__file__).parent / "data"
MODES = ("original", "improved")

# S4 "thesis burster", converged reference (spec 11): 8 spikes per burst, f_intra 143.61 Hz (n/duration),
# f_inter 5.7905 Hz, burst duration 55.71 ms.
S4_SPIKES_PER_BURST = 8
S4_F_INTRA_ORIGINAL_HZ = 143.61
S4_F_INTER_HZ = 5.7905
S4_DURATION_MS = 1000.0 * S4_SPIKES_PER_BURST / S4_F_INTRA_ORIGINAL_HZ  # 55.706 ms


def burster(
    n_bursts=17,
    spikes_per_burst=S4_SPIKES_PER_BURST,
    duration_ms=S4_DURATION_MS,
    f_inter_hz=S4_F_INTER_HZ,
    truncated_edges=True,
    skip=(),
):
    """Spike times (s) of a periodic burster with adapting intra-burst ISIs that sum to duration_ms.

    With truncated_edges, a burst cut by the window start (its last 3 spikes) and one cut by the window end (its
    first 5 spikes) are added around the n_bursts complete ones. Bursts whose index is in skip are left out.
    """
    weights = np.linspace(1.0, 1.6, spikes_per_burst - 1)  # ISIs lengthen within the burst
    burst_ms = np.concatenate(([0.0], np.cumsum(weights / weights.sum() * duration_ms)))
    period_ms = 1000.0 / f_inter_hz
    bursts = [12.3 + k * period_ms + burst_ms for k in range(n_bursts) if k not in skip]
    if truncated_edges:
        bursts = [12.3 - period_ms + burst_ms[-3:], *bursts, 12.3 + n_bursts * period_ms + burst_ms[:5]]
    return np.concatenate(bursts) / 1000.0


def jittered_regular(cv, n_spikes=200, rate_hz=10.0, seed=0):
    """A regular train whose ISIs are jittered to a coefficient of variation of exactly cv (population std)."""
    noise = np.random.default_rng(seed).standard_normal(n_spikes - 1)
    isi = (1.0 + cv * (noise - noise.mean()) / noise.std()) / rate_hz
    return np.concatenate(([0.0], np.cumsum(isi)))


@pytest.fixture(scope="module")
def stg_set():
    table = pd.read_csv(DATA / "spike2pop_stg_set.csv")
    return {row.ID: np.array(json.loads(row.spiking_times)) / 1000.0 for row in table.itertuples()}


@pytest.mark.parametrize("mode", MODES)
def test_s4_like_burster(mode):
    row = spike_train_features([burster()], mode=mode).iloc[0]
    assert row["label"] == "bursting" and row["label_code"] == 2
    assert row["nbr_spikes_bursting"] == S4_SPIKES_PER_BURST
    assert row["n_bursts"] == 17  # both truncated edge bursts dropped
    assert row["f_inter_bursting_hz"] == pytest.approx(S4_F_INTER_HZ, rel=1e-6)
    assert row["main_frequency_hz"] == row["f_inter_bursting_hz"]
    assert row["duration_bursting_ms"] == pytest.approx(S4_DURATION_MS, rel=1e-9)
    assert row["duration_bursting_ms"] == pytest.approx(55.71, rel=0.01)
    intervals = S4_SPIKES_PER_BURST if mode == "original" else S4_SPIKES_PER_BURST - 1
    assert row["f_intra_bursting_hz"] == pytest.approx(1000.0 * intervals / S4_DURATION_MS, rel=1e-9)
    if mode == "original":
        assert row["f_intra_bursting_hz"] == pytest.approx(S4_F_INTRA_ORIGINAL_HZ, rel=1e-9)
        assert row["f_spiking_hz"] == 0.0
    else:
        assert np.isnan(row["f_spiking_hz"])


def test_slow_burster_gets_features_in_improved_mode_only():
    train = burster(n_bursts=3, truncated_edges=False)
    original, improved = (spike_train_features([train], mode=mode).iloc[0] for mode in MODES)
    assert original["n_bursts"] == 1 and np.isnan(original["f_inter_bursting_hz"])
    assert np.isnan(original["main_frequency_hz"])
    assert improved["n_bursts"] == 3
    assert improved["nbr_spikes_bursting"] == S4_SPIKES_PER_BURST
    assert improved["f_inter_bursting_hz"] == pytest.approx(S4_F_INTER_HZ, rel=1e-9)


def test_skipped_burst_does_not_merge_bursts_in_improved_mode():
    # A missing burst makes one pause longer than (max + min)/2 of the ISIs would tolerate: the original rule then
    # merges all bursts on either side of the pause into two, both then dropped as edge bursts; the
    # largest-log-gap threshold does not.
    train = burster(n_bursts=12, truncated_edges=False, skip=(6,))
    original, improved = (spike_train_features([train], mode=mode).iloc[0] for mode in MODES)
    assert original["n_bursts"] == 0 and np.isnan(original["nbr_spikes_bursting"])
    assert improved["nbr_spikes_bursting"] == S4_SPIKES_PER_BURST
    assert improved["n_bursts"] == 9  # 11 bursts, first and last dropped


@pytest.mark.parametrize("mode", MODES)
def test_regular_and_silent_trains(mode):
    trains = {"tonic": 0.1 * np.arange(30), "empty": [], "one": [0.5], "two": [0.1, 0.2]}
    features = spike_train_features(trains, mode=mode)
    assert list(features.columns) == list(FEATURE_COLUMNS)
    assert features.index.tolist() == list(trains)
    tonic = features.loc["tonic"]
    assert tonic["label"] == "spiking" and tonic["label_code"] == 1
    assert tonic["f_spiking_hz"] == pytest.approx(10.0, rel=1e-9)
    assert tonic["main_frequency_hz"] == tonic["f_spiking_hz"]
    assert tonic["mean_rate_hz"] == pytest.approx(10.0, rel=1e-9)
    burst_columns = ["f_intra_bursting_hz", "f_inter_bursting_hz", "duration_bursting_ms", "nbr_spikes_bursting"]
    if mode == "original":
        assert (tonic[burst_columns] == 0).all()
    else:
        assert tonic[burst_columns].isna().all()
    silent = features.loc[["empty", "one", "two"]]
    assert (silent["label"] == "silent").all() and (silent["label_code"] == 0).all()
    assert silent["n_spikes"].tolist() == [0, 1, 2]
    assert silent[["cv_isi", "main_frequency_hz"]].isna().all().all()
    assert silent["mean_rate_hz"].iloc[:2].isna().all()
    assert silent["mean_rate_hz"].iloc[2] == pytest.approx(10.0)


@pytest.mark.parametrize("mode", MODES)
def test_cv_threshold(mode):
    below, above = jittered_regular(0.149), jittered_regular(0.151)
    features = spike_train_features([below, above], mode=mode)
    assert features["cv_isi"].to_numpy() == pytest.approx([0.149, 0.151], rel=1e-9)
    # Above the threshold without repeated bursts: the spec's rule says "bursting", the improved rule "irregular".
    assert features["label"].tolist() == ["spiking", "bursting" if mode == "original" else "irregular"]
    assert features["f_spiking_hz"].iloc[0] == pytest.approx(10.0, rel=0.03)
    assert spike_train_features([above], mode=mode, cv_threshold=0.2)["label"].iloc[0] == "spiking"


@pytest.mark.parametrize("mode", MODES)
def test_spike2pop_example_trains(stg_set, mode):
    features = spike_train_features(stg_set, mode=mode)
    assert features.loc[1, "label"] == "spiking"
    assert features.loc[1, "f_spiking_hz"] == pytest.approx(10.0, rel=0.01)
    for unit_id, spikes_per_burst in {2: 2, 3: 3, 4: 5}.items():
        assert features.loc[unit_id, "label"] == "bursting"
        assert features.loc[unit_id, "nbr_spikes_bursting"] == spikes_per_burst
    assert features.loc[4, "f_inter_bursting_hz"] == pytest.approx(6.8, rel=0.01)  # spec 9: "5 spikes at 6.8 Hz"


def test_unsorted_train_is_sorted_without_modifying_the_input():
    train = burster()
    shuffled = np.random.default_rng(3).permutation(train)
    copy = shuffled.copy()
    pd.testing.assert_frame_equal(spike_train_features([shuffled]), spike_train_features([train]))
    np.testing.assert_array_equal(shuffled, copy)


def test_series_input_keeps_its_index(stg_set):
    series = pd.Series(stg_set)
    pd.testing.assert_frame_equal(spike_train_features(series), spike_train_features(stg_set))


def test_empty_input():
    features = spike_train_features([])
    assert features.empty and list(features.columns) == list(FEATURE_COLUMNS)


def test_bad_input():
    with pytest.raises(ValueError, match="train 1 contains non-finite"):
        spike_train_features([[0.1, 0.2, 0.3], [0.1, np.nan, 0.3]])
    with pytest.raises(ValueError, match="unit 'b' contains non-finite"):
        spike_train_features({"a": [0.1, 0.2], "b": [0.1, np.inf]})
    with pytest.raises(ValueError, match="train 0 has shape \\(2, 3\\).*1-D"):
        spike_train_features([np.zeros((2, 3))])
    with pytest.raises(ValueError, match="train 0 has shape \\(\\).*1-D"):
        spike_train_features([0.5])
    with pytest.raises(ValueError, match="single 1-D array"):
        spike_train_features(np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="unit 7 cannot be read"):
        spike_train_features({7: ["a", "b"]})
    with pytest.raises(TypeError, match="sequence of 1-D arrays"):
        spike_train_features(0.5)
    with pytest.raises(ValueError, match="same time"):
        spike_train_features([[0.2, 0.2, 0.2]])
    with pytest.raises(ValueError, match="mode"):
        spike_train_features([[0.1, 0.2, 0.3]], mode="fast")
    with pytest.raises(ValueError, match="cv_threshold"):
        spike_train_features([[0.1, 0.2, 0.3]], cv_threshold=np.nan)


def test_isi_distance():
    tonic, bursts = 0.1 * np.arange(30), burster()
    assert isi_distance(tonic, tonic) == 0.0
    assert isi_distance(bursts, np.random.default_rng(0).permutation(bursts)) == 0.0
    assert isi_distance(tonic, bursts) > 0.5
    assert isi_distance(tonic, bursts) == isi_distance(bursts, tonic)
    irregular = np.cumsum(np.random.default_rng(1).exponential(0.1, 50))
    expected = ks_2samp(np.diff(irregular), np.diff(bursts)).statistic
    assert isi_distance(irregular, bursts) == pytest.approx(expected, abs=1e-12)
    assert np.isnan(isi_distance([0.1, 0.2], bursts))
    with pytest.raises(ValueError, match="train_b contains non-finite"):
        isi_distance(tonic, [0.1, np.nan, 0.3])


def test_pattern_matches_bursting_reference():
    reference = spike_train_features([burster()]).iloc[0]
    twins = spike_train_features(
        [
            burster(),
            burster(spikes_per_burst=7),  # one spike fewer per burst: within tolerance
            burster(spikes_per_burst=6),
            burster(f_inter_hz=S4_F_INTER_HZ * 1.05),
            burster(f_inter_hz=S4_F_INTER_HZ * 1.2),
            0.1 * np.arange(30),
            [],
        ]
    )
    expected = [True, True, False, True, False, False, False]
    np.testing.assert_array_equal(pattern_matches(reference, twins), expected)
    strict = pattern_matches(reference, twins, frequency_tolerance=0.01, spikes_per_burst_tolerance=0.5)
    np.testing.assert_array_equal(strict, [True, False, False, False, False, False, False])


def test_spikes_per_burst_tolerance_scales_with_long_bursts():
    """Bursts of at most 10 spikes keep the 1-spike tolerance; a 60-spike burst tolerates 10 % (6 spikes), as the
    frequency does; the relative part can be switched off, and the distance ranks in the same units."""
    long_bursts = dict(duration_ms=600.0, f_inter_hz=0.5, n_bursts=5)
    reference = spike_train_features([burster(spikes_per_burst=60, **long_bursts)]).iloc[0]
    assert spikes_per_burst_tolerance_of(reference) == pytest.approx(6.0)
    assert spikes_per_burst_tolerance_of(spike_train_features([burster()]).iloc[0]) == 1.0  # 8 spikes per burst
    twins = spike_train_features([burster(spikes_per_burst=n, **long_bursts) for n in (60, 56, 64, 53, 67)])
    np.testing.assert_array_equal(pattern_matches(reference, twins), [True, True, True, False, False])
    absolute = pattern_matches(reference, twins, spikes_per_burst_relative_tolerance=0.0)
    np.testing.assert_array_equal(absolute, [True, False, False, False, False])
    distance = pattern_distance(reference, twins)
    np.testing.assert_allclose(distance[1:], [4 / 6, 4 / 6, 7 / 6, 7 / 6], atol=0.05)


def test_pattern_matches_spiking_and_silent_references():
    twins = spike_train_features([0.1 * np.arange(30), np.arange(30) / 10.5, np.arange(30) / 12.0, burster(), []])
    tonic, silent = spike_train_features([0.1 * np.arange(30), [0.3]]).iloc
    np.testing.assert_array_equal(pattern_matches(tonic, twins), [True, True, False, False, False])
    np.testing.assert_array_equal(pattern_matches(silent, twins), [False, False, False, False, True])
    assert pattern_matches(tonic, twins.iloc[:0]).shape == (0,)


def test_pattern_matches_bad_input():
    slow = spike_train_features([burster(n_bursts=3, truncated_edges=False)], mode="original").iloc[0]
    twins = spike_train_features([burster()], mode="original")
    with pytest.raises(ValueError, match="main_frequency_hz is nan"):
        pattern_matches(slow, twins)
    with pytest.raises(ValueError, match="lacks columns"):
        pattern_matches(twins.iloc[0], twins[["label"]])
    with pytest.raises(ValueError, match=">= 0"):
        pattern_matches(twins.iloc[0], twins, frequency_tolerance=-0.1)


def test_burst_shape_statistics_describe_how_bursts_unfold():
    """Bursts whose ISIs lengthen from 5 to 15 ms, 60 ms bursts every 200 ms: the first and last ISIs against the
    burst's mean, the range and trend of log ISIs, the duty cycle and a regular period; the same at another time
    scale; zeros for trains not labelled bursting."""
    from spikeinterface_dic.features import BURST_SHAPE_NAMES, burst_shape_statistics

    isi_ms = np.array([5.0, 10.0, 15.0, 15.0, 15.0])
    burst = np.concatenate([[0.0], np.cumsum(isi_ms)]) / 1000.0
    burster = np.concatenate([burst + 0.2 * k for k in range(12)])
    tonic = 0.1 * np.arange(30)
    stats = burst_shape_statistics([burster, 3.0 * burster, tonic, burster], [True, True, False, False])
    assert stats.shape == (4, len(BURST_SHAPE_NAMES))
    values = dict(zip(BURST_SHAPE_NAMES, stats[0], strict=True))
    assert values["burst_first_isi_log_ratio"] == pytest.approx(np.log(5.0 / 12.0))
    assert values["burst_last_isi_log_ratio"] == pytest.approx(np.log(15.0 / 12.0))
    assert values["burst_isi_log_range"] == pytest.approx(np.log(3.0))
    assert values["burst_isi_log_trend"] > 0.5  # ISIs lengthen through the burst
    assert values["burst_log_duty_cycle"] == pytest.approx(np.log(60.0 / 200.0))
    assert values["burst_period_log_sd"] == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(stats[1], stats[0], atol=1e-9)  # ratios of times: no time scale
    assert not stats[2:].any()
