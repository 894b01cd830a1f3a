"""Twins drawn from the unit's posterior, refined by sequential Monte Carlo ABC (spikeinterface_dic.twin_posterior)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import spikeinterface_dic as sdic
from spikeinterface_dic.config import RunConfig
from spikeinterface_dic.twin_posterior import _prepare_units, _proposals, _standardised, _weighted_quantile

DATA = Path(__file__).parent / "data"
SETTINGS = dict(model="stg", population_size=8, seed=3, duration_s=2.0)


@pytest.fixture(scope="module")
def trains():
    return sdic.read_spike_trains(DATA / "spike2pop_stg_set.csv")


@pytest.fixture(scope="module")
def result(trains):
    return sdic.run_pipeline(trains, **SETTINGS)


def test_each_twin_has_its_own_parameters_and_hits_its_dics(trains, result):
    model = sdic.get_model("stg")
    for unit_id, gbar in result.populations.items():
        parameters = result.twin_parameters[unit_id]
        assert parameters.shape == (8, 3)
        # Every twin is a member of the degenerate population of its own (g_s, g_u).
        dics = sdic.compute_dics(model, gbar)
        np.testing.assert_allclose(dics[:, 1], parameters[:, 0], atol=1e-5)
        np.testing.assert_allclose(dics[:, 2], parameters[:, 1], atol=1e-5)
        # k is estimated: the twins span the posterior of (g_s, g_u, k), not one point.
        assert np.ptp(parameters[:, 0]) > 0 and np.ptp(parameters[:, 2]) > 0
        # The twins' spike times are simulated at each twin's own k: the same member at k = 1 fires k times faster.
        twin = 0
        at_one = sdic.simulate(model, gbar[twin : twin + 1], duration_s=3.0 + 2.0 / parameters[twin, 2])
        assert len(at_one[0]) > 0
    fidelity = result.fidelity
    assert (fidelity["n_simulated"] == 8 + fidelity["n_candidates"]).all()
    assert (fidelity["fraction_matching"] >= fidelity["fraction_matching_before_selection"]).all()
    matched = fidelity["accepted_fraction"] > 0
    assert np.isfinite(fidelity.loc[matched, ["pattern_g_s", "pattern_g_u", "pattern_time_scale"]].to_numpy()).all()


def _first_twins_three_times_too_slow(monkeypatch):
    """Every unit of estimated k starts with first twins 3x slower than its posterior and no adaptation of k: none
    of them fires at the unit's frequency (time scaling is exact, so their pattern is otherwise the unit's). The
    scenario does not depend on how good the flows are."""
    import spikeinterface_dic.twin_posterior as twin_posterior

    original = twin_posterior._first_draws

    def slowed(unit, posterior):
        theta = original(unit, posterior).copy()
        if unit.flow == "joint":
            theta[:, 2] += np.log(3.0)
        return theta

    monkeypatch.setattr(twin_posterior, "_first_draws", slowed)
    monkeypatch.setattr(twin_posterior, "_adapt_time_scale", lambda config, unit, theta, trains: (theta, trains))
    monkeypatch.setattr(
        twin_posterior,
        "_adapt_twin_time_scales",
        lambda config, unit, theta, trains, built, posterior: (theta, trains, np.zeros(len(theta))),
    )


def test_refinement_goes_on_from_zero_accepted(trains, monkeypatch):
    """A unit none of whose first twins matches is refined from its closest twins instead of being abandoned."""
    _first_twins_three_times_too_slow(monkeypatch)
    fidelity = sdic.run_pipeline(trains, **SETTINGS).fidelity
    started_empty = fidelity.index[fidelity["fraction_matching_before_selection"] == 0]
    assert len(started_empty), "first twins 3x too slow must match nowhere"
    for unit_id in started_empty:
        assert fidelity.loc[unit_id, "n_candidates"] > 0
        assert fidelity.loc[unit_id, "fraction_matching"] > 0


def test_first_twins_get_the_k_of_their_frequency(trains, monkeypatch):
    """First twins 3x too slow, without the unit-wide adaptation: each twin that fires in the unit's pattern gets the
    k that gives the recorded frequency (exact time scaling), so the first population matches without refinement."""
    import spikeinterface_dic.twin_posterior as twin_posterior

    original = twin_posterior._first_draws
    monkeypatch.setattr(
        twin_posterior, "_first_draws", lambda unit, posterior: original(unit, posterior) + [0.0, 0.0, np.log(3.0)]
    )
    monkeypatch.setattr(twin_posterior, "_adapt_time_scale", lambda config, unit, theta, trains: (theta, trains))
    settings = dict(SETTINGS, twin_selection=False)
    fidelity = sdic.run_pipeline(trains, **settings).fidelity
    assert (fidelity["fraction_matching_network_time_scale"] == 0).all()
    assert fidelity["fraction_matching_before_selection"].mean() > 0.5
    # Without the per-twin adaptation, nothing matches.
    monkeypatch.setattr(
        twin_posterior,
        "_adapt_twin_time_scales",
        lambda config, unit, theta, trains, built, posterior: (theta, trains, np.zeros(len(theta))),
    )
    assert (sdic.run_pipeline(trains, **settings).fidelity["fraction_matching_before_selection"] == 0).all()


def test_frequency_weights_estimate_the_conditional_probability_of_log_k():
    """The rescaled twins' weight, P(ln k in an interval | g_s, g_u), estimated from joint draws: on a Gaussian
    whose conditional is known (ln k | g ~ N(0.6 g_s, 0.8^2)), and with a point mass (half the draws at ln k = 0,
    as the flows' prior has at k = 1), the estimate from as many draws as a unit uses is within 0.07 of the exact
    probability (the kernel estimate's sd there is ~0.04, its smoothing bias ~0.03), closer than q0's marginal of
    ln k, which ignores g (up to 0.12 off)."""
    from scipy.stats import norm

    from spikeinterface_dic.twin_posterior import FREQUENCY_WEIGHT_DRAWS, _probability_given_dics

    n = FREQUENCY_WEIGHT_DRAWS
    rng = np.random.default_rng(0)
    g = rng.standard_normal((n, 2))
    log_k = 0.6 * g[:, 0] + 0.8 * rng.standard_normal(n)
    points = np.array([[-1.0, 0.0], [0.0, 0.5], [1.0, -0.5], [0.5, 1.0]])
    lower, upper = np.array([-1.0, -0.1, 0.2, 0.0]), np.array([0.0, 0.1, 1.0, 0.4])
    estimated = _probability_given_dics(np.column_stack([g, log_k]), points, lower, upper)
    mean = 0.6 * points[:, 0]
    exact = norm.cdf(upper, mean, 0.8) - norm.cdf(lower, mean, 0.8)
    np.testing.assert_allclose(estimated, exact, atol=0.07)
    marginal = norm.cdf(upper, 0.0, 1.0) - norm.cdf(lower, 0.0, 1.0)
    assert (np.abs(estimated - exact) < np.abs(marginal - exact)).all()
    spiked = np.where(rng.random(n) < 0.5, 0.0, log_k)
    estimated = _probability_given_dics(np.column_stack([g, spiked]), points, lower, upper)
    holds_zero = (lower <= 0.0) & (upper >= 0.0)
    np.testing.assert_allclose(estimated, 0.5 * exact + 0.5 * holds_zero, atol=0.07)


def test_known_time_scale_and_range_are_kept(trains):
    known = sdic.run_pipeline(trains, **SETTINGS, time_scale=1.0)
    for parameters in known.twin_parameters.values():
        np.testing.assert_array_equal(parameters[:, 2], 1.0)
    ranged = sdic.run_pipeline(trains, **SETTINGS, time_scale_range=(0.9, 1.2))
    for parameters in ranged.twin_parameters.values():
        assert ((parameters[:, 2] >= 0.9) & (parameters[:, 2] <= 1.2)).all()


def test_same_seed_same_twins_and_point_sampling_is_the_old_stage(trains, result):
    again = sdic.run_pipeline(trains, **SETTINGS)
    for unit_id in result.populations:
        np.testing.assert_array_equal(again.populations[unit_id], result.populations[unit_id])
        for ours, theirs in zip(again.twin_spike_trains[unit_id], result.twin_spike_trains[unit_id], strict=True):
            np.testing.assert_array_equal(ours, theirs)
    point = sdic.run_pipeline(trains, **SETTINGS, twin_sampling="point")
    for unit_id, parameters in point.twin_parameters.items():
        # Point sampling: every twin has the unit's target and time scale.
        assert np.ptp(parameters, axis=0).max() == 0
        assert parameters[0, 0] == point.estimates.loc[unit_id, "target_g_s"]
    assert point.fidelity["n_simulated"].eq(0).all() and point.fidelity["accepted_fraction"].isna().all()


def test_proposal_weights_correct_for_the_kernel(trains):
    """Importance weights q0 / (kernel mixture) make weighted proposals estimate q0's moments, whatever the kernel:
    proposals built around 200 draws of the posterior, weighted, give the posterior's own mean."""
    config = RunConfig(**SETTINGS)
    unit_id = 4
    units, posterior = _prepare_units(config, None, {unit_id: np.asarray(trains[unit_id])}, [unit_id])
    unit = units[unit_id]
    draws = posterior.sample(unit.context, 4000, unit.flow, 1, calibrated=False)[0]
    reference = np.quantile(draws, [0.16, 0.5, 0.84], axis=0)
    width = reference[2] - reference[0]
    parents = draws[:200]
    unit.theta, unit.distance = [parents], [np.zeros(len(parents))]
    unit.matches, unit.log_weight = [np.ones(len(parents), dtype=bool)], [np.zeros(len(parents))]
    unit.low, unit.high = np.full(3, -np.inf), np.full(3, np.inf)
    unit.round0_cov = np.cov(_standardised(parents, unit, posterior).T)
    candidates, log_weight = _proposals(unit, posterior, 20000, np.random.default_rng(0))
    weight = np.exp(log_weight - log_weight.max())
    # Unweighted, the kernel (twice the parents' covariance) inflates the spread by about sqrt(3); weighted, the
    # 16/50/84 % quantiles are the posterior's again.
    unweighted = np.quantile(candidates, [0.16, 0.84], axis=0)
    assert (unweighted[1] - unweighted[0] > 1.3 * width).all()
    for j in range(3):
        weighted = [_weighted_quantile(candidates[:, j], weight, q) for q in (0.16, 0.5, 0.84)]
        np.testing.assert_allclose(weighted, reference[:, j], atol=0.1 * width[j])


def test_twin_parameters_are_stored_in_csv_and_nwb(tmp_path, trains, result):
    from datetime import datetime, timezone

    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.misc import Units

    from spikeinterface_dic.analysis.results_io import read_result

    sdic.write_csv(result, tmp_path / "run")
    back = read_result(tmp_path / "run")
    for unit_id, parameters in result.twin_parameters.items():
        np.testing.assert_allclose(back.twin_parameters[unit_id], parameters, rtol=1e-12)
    nwbfile = NWBFile(
        session_description="posterior twins",
        identifier="twins",
        session_start_time=datetime(2024, 1, 2, tzinfo=timezone.utc),
    )
    nwbfile.units = Units(name="units", description="sorted units")
    for unit_id, train in trains.items():
        nwbfile.add_unit(spike_times=np.asarray(train), id=int(unit_id))
    path = tmp_path / "run.nwb"
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    sdic.write_nwb(result, path)
    back = read_result(path)
    for unit_id, parameters in result.twin_parameters.items():
        np.testing.assert_array_equal(back.twin_parameters[unit_id], parameters)


def test_unmatched_unit_gets_twins_whose_k_is_set_by_their_frequency(trains, monkeypatch):
    """With no refinement budget, a unit none of whose first twins matches falls back to time scaling: twins in the
    unit's pattern (label, spikes per burst) at another frequency get the k that gives the recorded frequency."""
    import spikeinterface_dic.twin_posterior as twin_posterior

    monkeypatch.setattr(twin_posterior, "MAX_CANDIDATES_PER_TWIN", 0.0)
    _first_twins_three_times_too_slow(monkeypatch)
    result = sdic.run_pipeline(trains, **SETTINGS)
    fidelity = result.fidelity
    rescued = fidelity.index[fidelity["selection_note"].str.contains("set by their frequency")]
    assert len(rescued), "first twins 3x too slow and no refinement budget: the fallback must rescue units"
    for unit_id in rescued:
        assert fidelity.loc[unit_id, "fraction_matching_before_selection"] == 0
        assert fidelity.loc[unit_id, "fraction_matching"] > 0 and fidelity.loc[unit_id, "n_candidates"] == 0
        # Time scaling is exact: each rescued twin simulated again at its new k fires like its stored train.
        parameters, twins = result.twin_parameters[unit_id], result.twin_spike_trains[unit_id]
        model = sdic.get_model("stg")
        again = sdic.simulate(model, result.populations[unit_id][:1], duration_s=3.0 + 2.0, transient_s=3.0)[0]
        scaled = again * parameters[0, 2]
        window = min(scaled[-1], twins[0][-1]) if len(scaled) and len(twins[0]) else 0.0
        np.testing.assert_allclose(twins[0][twins[0] <= window * 0.9], scaled[scaled <= window * 0.9], atol=1e-6)
