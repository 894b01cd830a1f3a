"""Input checks on real users' files: no confident result from a train that cannot support it.

One test (or group) per observed defect: seconds in a Spike2Pop CSV, milliseconds in NWB / long CSV, three spikes,
irregular trains labelled bursting, duplicated spike times accepted silently.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

import spikeinterface_dic as sdic
from spikeinterface_dic.features import spike_train_features
from spikeinterface_dic.inference.predict import MIN_INFORMATIVE_SPIKES
from spikeinterface_dic.io import read_spike_trains
from spikeinterface_dic.spikeinterface.trains import unit_spike_trains
from spikeinterface_dic.train_checks import check_time_unit, clean_spike_train

DATA = Path(__file__).parent / "data"


def _tonic_burster_ms(n_bursts: int = 20, spikes_per_burst: int = 5, seed: int = 0) -> np.ndarray:
    """A jittered burster (8 ms intra-burst ISIs, 400 ms period) in ms."""
    rng = np.random.default_rng(seed)
    burst = 8.0 * np.arange(spikes_per_burst)
    times = np.concatenate([burst + 400.0 * k for k in range(n_bursts)]) + 3000.0
    return np.sort(times + rng.normal(0, 0.3, times.size))


def _write_spike2pop(path: Path, trains: dict) -> Path:
    lines = ["id,spiking_times"] + [
        f'{unit},"[{", ".join(repr(float(t)) for t in times)}]"' for unit, times in trains.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _write_nwb(path: Path, spikes: dict) -> Path:
    from pynwb import NWBHDF5IO, NWBFile

    nwbfile = NWBFile(
        session_description="input checks",
        identifier="input-checks",
        session_start_time=datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
    )
    for unit_id, times in spikes.items():
        nwbfile.add_unit(id=unit_id, spike_times=np.asarray(times, dtype=np.float64))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path


# ----------------------------------------------------------------------------- 1. seconds in a Spike2Pop CSV (ms)
def test_seconds_in_a_spike2pop_csv_stop_with_the_unit_to_pass(tmp_path):
    seconds = _tonic_burster_ms(n_bursts=48)[:237] / 1000.0  # 237 spikes written in seconds
    path = _write_spike2pop(tmp_path / "seconds.csv", {"unit_a": seconds})
    with pytest.raises(ValueError) as error:
        read_spike_trains(path)
    message = str(error.value)
    assert "seconds.csv" in message and "\n" not in message
    assert "look like seconds, not milliseconds" in message and "time_unit='s'" in message
    assert "236 of 236" in message
    trains = read_spike_trains(path, time_unit="s")  # said right, it reads
    np.testing.assert_allclose(trains["unit_a"], seconds)


def test_most_spikes_refractory_gives_no_estimate_and_names_the_unit_problem():
    seconds_as_ms = _tonic_burster_ms(n_bursts=48)[:237] / 1e6  # seconds read as milliseconds, in memory
    good = _tonic_burster_ms() / 1000.0
    estimates = sdic.infer_dics({"wrong_unit": seconds_as_ms, "good": good})
    row = estimates.loc["wrong_unit"]
    assert not row["in_distribution"] and np.isnan(row["g_s"]) and row["n_windows"] == 0
    assert "seconds read as milliseconds" in row["ood_reason"] and "236 of 237" in row["ood_reason"]
    assert np.isfinite(estimates.loc["good", "g_s"])  # one bad unit does not stop the others


# ----------------------------------------------------------------------------- 2. milliseconds where seconds are due
def test_milliseconds_in_nwb_stop_with_a_unit_hint(tmp_path):
    in_ms = {0: _tonic_burster_ms(), 1: _tonic_burster_ms(seed=1)}  # NWB requires seconds
    path = _write_nwb(tmp_path / "ms.nwb", in_ms)
    with pytest.raises(ValueError, match=r"ms\.nwb: spike times read as seconds look like milliseconds") as error:
        read_spike_trains(path)
    assert "convert its spike_times from ms to seconds" in str(error.value)
    good = _write_nwb(tmp_path / "s.nwb", {unit: times / 1000 for unit, times in in_ms.items()})
    assert read_spike_trains(good).problems == []


def test_milliseconds_in_a_long_csv_stop_with_a_unit_hint(tmp_path):
    times = _tonic_burster_ms()
    path = tmp_path / "long.csv"
    path.write_text("unit_id,spike_time_s\n" + "".join(f"7,{float(t)!r}\n" for t in times))
    with pytest.raises(ValueError, match="look like milliseconds, not seconds.*spike_time_ms"):
        read_spike_trains(path)


def test_one_sparse_unit_is_flagged_not_refused():
    trains = {"sparse": np.array([0.0, 200.0, 500.0, 900.0]), "a": np.arange(50) * 0.1, "b": np.arange(30) * 0.2}
    issues = check_time_unit(trains, "file.csv", "s")
    assert len(issues) == 1 and issues[0].startswith("unit 'sparse': no two spikes within 1 s")
    stated = check_time_unit({"sparse": trains["sparse"]}, "file.csv", "s", stated=True)  # the user's word wins
    assert len(stated) == 1


# ----------------------------------------------------------------------------- 3. three spikes
def test_three_spikes_are_read_but_never_a_confident_estimate(tmp_path):
    path = tmp_path / "three.csv"
    path.write_text('id,spiking_times\nthree,"[7.65, 2813.0, 2929.25]"\n')
    trains = read_spike_trains(path)
    assert trains.problems == [] and trains["three"].size == 3
    row = sdic.infer_dics(trains).loc["three"]
    assert row["label"] == "irregular"
    assert not row["in_distribution"]
    assert "3 spikes: too few to estimate" in row["ood_reason"]
    assert "irregular firing" in row["ood_reason"]
    assert np.isfinite(row["g_s"])  # the estimate stays visible, flagged


def test_short_tonic_train_is_below_the_measured_threshold():
    n = MIN_INFORMATIVE_SPIKES["stg"]
    estimates = sdic.infer_dics({"short": 0.1 * np.arange(n - 1), "enough": 0.1 * np.arange(n)})
    assert estimates.loc["short", "label"] == "spiking" and not estimates.loc["short", "in_distribution"]
    assert f"{n - 1} spikes: too few to estimate" in estimates.loc["short", "ood_reason"]
    assert "too few" not in estimates.loc["enough", "ood_reason"]


# ----------------------------------------------------------------------------- 4. irregular trains are not bursters
def test_irregular_trains_are_labelled_irregular_not_bursting():
    rng = np.random.default_rng(3)
    poisson = np.cumsum(rng.exponential(0.05, 300))  # 20 Hz Poisson: CV ~1, unimodal log-ISIs
    adapting = np.cumsum(0.005 * 1.08 ** np.arange(40))  # a current step: ISIs lengthen, no gap
    one_pause = np.concatenate([0.1 * np.arange(20), 5.0 + 0.1 * np.arange(20)])  # tonic, one long pause
    features = spike_train_features({"poisson": poisson, "adapting": adapting, "one_pause": one_pause})
    assert features["label"].tolist() == ["irregular"] * 3
    assert (features["label_code"] == 3).all()
    original = spike_train_features([poisson, adapting, one_pause], mode="original")
    assert original["label"].tolist() == ["bursting"] * 3  # the spec's rule, kept for comparison
    estimates = sdic.infer_dics({"poisson": poisson})
    assert not estimates.loc["poisson", "in_distribution"]
    assert "irregular firing (CV" in estimates.loc["poisson", "ood_reason"]
    assert "a deterministic model twin cannot reproduce a noise-driven train" in estimates.loc["poisson", "ood_reason"]


def test_real_irregular_trains_and_bursters():
    receptor = spike_train_features(read_spike_trains(DATA / "grasshopper_receptor.csv"))
    assert set(receptor["label"]) == {"irregular"}
    stg = spike_train_features(read_spike_trains(DATA / "spike2pop_stg_set.csv"))
    assert stg["label"].tolist() == ["spiking", "bursting", "bursting", "bursting", "bursting"]


@pytest.mark.parametrize("set_name", ["S2", "S4"])
def test_model_bursters_stay_bursting_with_jitter_and_deletions(set_name):
    gbar = np.asarray(sdic.get_model("stg").extra["example_sets"][set_name], dtype=float)[None]
    train = sdic.simulate("stg", gbar, duration_s=12, transient_s=3)[0]
    rng = np.random.default_rng(0)
    perturbed = []
    for _ in range(5):
        jittered = np.sort(train + rng.normal(0, 0.002, train.size))
        perturbed.append(jittered[rng.random(train.size) >= 0.05])
    assert spike_train_features([train, *perturbed])["label"].tolist() == ["bursting"] * 6


def test_tonic_train_with_missed_spikes_stays_tonic():
    train = 0.1 * np.arange(100)
    missed = np.delete(train, np.arange(5, 100, 12))  # 9 of 100 spikes missed: 9 ISIs twice as long
    features = spike_train_features([missed], cv_threshold=0.15).iloc[0]
    assert features["cv_isi"] > 0.15 and features["label"] == "spiking"


# ----------------------------------------------------------------------------- 5. duplicated spike times
def test_duplicated_times_are_removed_counted_and_visible_in_every_reader(tmp_path):
    unique = _tonic_burster_ms()
    doubled = np.sort(np.concatenate([unique, unique[:79]]))
    trains = read_spike_trains(_write_spike2pop(tmp_path / "dup.csv", {"u": doubled}))
    np.testing.assert_allclose(trains["u"], unique / 1000)
    assert trains.problems == ["line 2: unit 'u': 79 duplicated spike times removed"]

    nwb = read_spike_trains(_write_nwb(tmp_path / "dup.nwb", {4: doubled / 1000}))
    np.testing.assert_allclose(nwb[4], unique / 1000)
    assert nwb.problems == ["units: unit 4: 79 duplicated spike times removed"]

    long = tmp_path / "dup_long.csv"
    long.write_text("unit_id,spike_time_ms\n" + "".join(f"u,{float(t)!r}\n" for t in doubled))
    assert read_spike_trains(long).problems == ["unit 'u': 79 duplicated spike times removed"]


def test_sorting_trains_get_the_same_policy():
    from spikeinterface.core import NumpySorting

    frames = np.array([100, 200, 200, 300, 400], dtype=np.int64)
    sorting = NumpySorting.from_times_and_labels([frames / 10000.0], [np.zeros(frames.size, int)], 10000.0)
    issues = []
    with pytest.warns(UserWarning, match="duplicated"):
        trains = unit_spike_trains(sorting, issues=issues)
    np.testing.assert_allclose(trains[0][0], [0.01, 0.02, 0.03, 0.04])
    assert issues == ["segment 0: unit 0: 1 duplicated spike times removed"]


def test_unsorted_and_non_finite_times_are_cleaned_with_a_reason(tmp_path):
    times, issues = clean_spike_train([3.0, np.nan, 1.0, 2.0, np.inf, -1.0], "x")
    np.testing.assert_array_equal(times, [-1.0, 1.0, 2.0, 3.0])  # negative times are kept
    assert issues == [
        "unit 'x': 2 non-finite spike times (NaN or inf) dropped",
        "unit 'x': spike times not in increasing order (2 decreases); sorted",
    ]
    nwb = read_spike_trains(_write_nwb(tmp_path / "nan.nwb", {1: [0.3, np.nan, 0.1, 0.2], 2: [0.1, 0.2, 0.3]}))
    np.testing.assert_array_equal(nwb[1], [0.1, 0.2, 0.3])
    assert any("non-finite" in problem for problem in nwb.problems)
    assert any("sorted" in problem for problem in nwb.problems)
