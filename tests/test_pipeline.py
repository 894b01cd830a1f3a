"""The composed pipeline on reference and real trains."""

from pathlib import Path

import numpy as np
import pytest

import spikeinterface_dic as sdic

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def result():
    trains = sdic.read_spike_trains(DATA / "spike2pop_stg_set.csv")
    return trains, sdic.run_pipeline(trains, model="stg", population_size=8, simulate=True, seed=3)


def test_result_shapes(result):
    trains, res = result
    assert list(res.estimates.index) == list(trains)
    for unit_id, gbar in res.populations.items():
        assert gbar.shape == (8, 8) and (gbar >= 0).all()
        assert len(res.twin_spike_trains[unit_id]) == 8
    assert set(res.fidelity.columns) >= {"fraction_matching", "twin_label_fraction", "median_isi_distance"}
    assert res.provenance["weights_sha256"] and res.parameters["seed"] == 3


def test_twins_reproduce_reference_trains(result):
    _, res = result
    # Units 1, 3 and 4 (tonic, 3- and 5-spike bursts): most twins fire in the recorded pattern.
    assert res.fidelity.loc[[1, 3, 4], "fraction_matching"].mean() >= 0.7


def test_determinism_and_order_independence(result):
    trains, res = result
    reordered = {k: trains[k] for k in reversed(list(trains))}
    again = sdic.run_pipeline(reordered, model="stg", population_size=8, simulate=False, seed=3)
    for unit_id in trains:
        # Estimates differ in the last float32 digits when batch padding changes; populations follow smoothly.
        np.testing.assert_allclose(again.populations[unit_id], res.populations[unit_id], rtol=1e-3)


def test_real_trains_run_end_to_end():
    trains = sdic.read_spike_trains(DATA / "current_clamp_steps.csv")
    res = sdic.run_pipeline(trains, model="stg", population_size=4, simulate=True, seed=0, duration_s=1.0)
    assert len(res.estimates) == len(trains)
    silent = res.estimates["label"] == "silent"
    assert silent.any() and not set(res.populations) & set(res.estimates.index[silent])
    assert res.estimates.loc[~silent, "ood_reason"].notna().all()


def test_bad_population_size():
    with pytest.raises(ValueError, match="population_size"):
        sdic.run_pipeline({0: np.arange(0, 1, 0.1)}, population_size=0)


S4 = list(sdic.get_model("stg").extra["example_sets"]["S4"])  # spec section 9


@pytest.mark.parametrize("time_scale", [0.5, 3.0])
def test_twins_reproduce_a_slowed_burster(time_scale):
    """A known burster slowed or sped up by k: twins simulated at the adapted k reproduce its pattern."""
    train = sdic.simulate("stg", [S4], duration_s=6.0, transient_s=3.0)[0] * time_scale
    res = sdic.run_pipeline({"u": train}, model="stg", population_size=16, seed=0)
    assert res.fidelity.loc["u", "fraction_matching"] >= 0.9
    # k and g_s are partly degenerate for the burst period: the network overestimates |g_s| on S4, so the adapted k
    # is 10-15 % high while the twins still match (fidelity is the criterion that matters).
    assert res.estimates.loc["u", "time_scale"] == pytest.approx(time_scale, rel=0.2)
    assert res.estimates.loc["u", "time_scale_network"] == pytest.approx(time_scale, rel=0.3)
