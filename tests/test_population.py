"""Degenerate-population generator (method spec section 4 and the "Population generator" checks of section 9).

The spec's reference means come from N = 1000, seed 1 with the authors' RNG; we use N = 10,000 and a few % tolerance.
"""

import numpy as np
import pytest

import spikeinterface_dic as sdic
from spikeinterface_dic import population as pop
from spikeinterface_dic.population import (
    Population,
    default_compensation_channels,
    generate_population,
    generate_spiking_population,
)

STG = sdic.get_model("stg")
DA = sdic.get_model("da")


def relative_error(value, reference):
    return abs(value - reference) / abs(reference)


def assert_valid(population: Population, n: int, tolerance: float = 1e-9):
    assert population.gbar.shape == (n, len(population.conductance_names))
    assert np.isfinite(population.gbar).all() and (population.gbar >= 0).all()
    target = np.asarray(population.target)
    rows = np.isfinite(target)
    # independent check of the achieved DICs with the general DIC code
    achieved = sdic.compute_dics(population.model_name, population.gbar)
    np.testing.assert_allclose(population.dics, achieved, rtol=1e-10, atol=1e-12)
    residual = np.linalg.norm(achieved[:, rows] - target[rows], axis=1)
    assert residual.max() <= tolerance * 1.01
    assert population.report.max_residual <= tolerance and population.report.converged


# ------------------------------------------------------------------------------------------- building blocks
@pytest.mark.parametrize("model", [STG, DA])
@pytest.mark.parametrize("v_mV", [None, -60.0])
def test_fast_sensitivity_matches_dic(model, v_mV):
    rng = np.random.default_rng(3)
    low, high = np.array([model.extra["mc_ranges"][name] for name in model.conductance_names]).T
    gbar = rng.uniform(low, high, size=(50, model.n_channels))
    gbar[:, model.leak_index] = rng.uniform(0.005, 0.02, size=50)
    v = model.v_th_mV if v_mV is None else v_mV
    fast = pop._sensitivity_at(model, float(v))
    reference = sdic.sensitivity_matrix(model, gbar, v_mV)
    np.testing.assert_allclose(fast(gbar), reference, rtol=1e-12, atol=1e-12 * np.abs(reference).max())
    np.testing.assert_allclose(fast(gbar, [1, 2]), reference[:, 1:], rtol=1e-12, atol=1e-12 * np.abs(reference).max())


@pytest.mark.parametrize("k", [1, 2, 3])
def test_closed_form_solve_matches_linalg_and_flags_singular(k):
    rng = np.random.default_rng(k)
    matrix = rng.normal(size=(200, k, k)) + 3 * np.eye(k)
    rhs = rng.normal(size=(200, k))
    matrix[5] = 0.0  # singular
    matrix[7, 0, 0] = np.nan  # non-finite
    solution = pop._solve_batch(matrix, rhs)
    good = np.ones(200, bool)
    good[[5, 7]] = False
    np.testing.assert_allclose(solution[good], np.linalg.solve(matrix[good], rhs[good][..., None])[..., 0], rtol=1e-12)
    assert np.isnan(solution[~good]).all()


def test_default_compensation_channels():
    assert default_compensation_channels("stg", 4, 5) == ("A", "H")
    assert default_compensation_channels("stg", 0, 5) == ("A", "H")
    assert default_compensation_channels("stg", -4, 5) == ("CaS", "H")
    assert default_compensation_channels("stg", 2, -1) == ("CaS", "A")
    assert default_compensation_channels("da", -2, 5) == ("ERG", "CaL")
    assert default_compensation_channels("da", 2, 5) == ("ERG", "Kd")
    assert default_compensation_channels("stg", -4, 5, g_f=-6.0) == ("CaS", "H", "Na")


# ------------------------------------------------------------------------------------------- step A
def test_stg_spiking_population_statistics():
    population = generate_spiking_population("stg", n=10_000, seed=0)
    assert_valid(population, 10_000, tolerance=1e-12)
    np.testing.assert_allclose(population.dics, np.broadcast_to([-6.2, 4.0, 5.0], (10_000, 3)), atol=1e-12)
    mean = population.to_dataframe().mean()
    for name, reference in (("g_Na", 6864), ("g_A", 366), ("g_H", 0.334), ("g_leak", 0.0105), ("g_Kd", 104.7)):
        assert relative_error(mean[name], reference) < 0.02, (name, mean[name])
    assert population.report.channels == ("Na", "A", "H") and population.report.iterations == 1


def test_da_spiking_population_statistics():
    population = generate_spiking_population("da", n=10_000, seed=0)
    assert_valid(population, 10_000, tolerance=1e-12)
    mean = population.to_dataframe().mean()
    for name, reference in (("g_Na", 35.6), ("g_ERG", 0.150), ("g_NMDA", 0.01203), ("g_CaN", 0.0410)):
        assert relative_error(mean[name], reference) < 0.03, (name, mean[name])


# ------------------------------------------------------------------------------------------- steps B-D
def test_stg_a_h_target_is_exact_after_one_solve():
    population = generate_population("stg", g_s=4.0, g_u=5.0, n=1000, seed=1)
    assert_valid(population, 1000, tolerance=1e-12)
    assert population.report.channels == ("A", "H") and population.report.iterations == 1
    np.testing.assert_allclose(population.dics[:, 1:], np.broadcast_to([4.0, 5.0], (1000, 2)), atol=1e-12)


@pytest.mark.parametrize(
    "g_s, g_u, references",
    [
        (-4.0, 5.0, {"g_CaS": 33.1, "g_H": 0.352}),
        (-10.0, 10.0, {"g_CaS": 48.2, "g_H": 0.623}),
        (10.0, 10.0, {"g_A": 587.0, "g_H": 0.628}),
    ],
)
def test_stg_population_means_match_reference(g_s, g_u, references):
    population = generate_population("stg", g_s=g_s, g_u=g_u, n=10_000, seed=1)
    assert_valid(population, 10_000)
    mean = population.to_dataframe().mean()
    for name, reference in references.items():
        assert relative_error(mean[name], reference) < 0.02, (name, mean[name])


def test_stg_cas_h_converges_and_g_f_drifts():
    population = generate_population("stg", g_s=-4.0, g_u=5.0, n=10_000, seed=1)
    assert population.report.channels == ("CaS", "H")
    assert 1 < population.report.iterations <= 10  # accelerated: plain Picard needs ~15 solves for 1e-9
    assert relative_error(population.dics[:, 0].mean(), -5.79) < 0.02
    assert np.isnan(population.target[0]) and population.target[1:] == (-4.0, 5.0)


def test_first_solve_reproduces_the_original_single_solve_residual():
    # One solve with the calcium prior (no convergence required) leaves the spec's ~0.24 mean residual at (-4, 5).
    population = generate_population("stg", g_s=-4.0, g_u=5.0, n=2000, seed=1, max_iterations=1, tolerance=10.0)
    assert population.report.iterations == 1
    assert 0.2 < population.report.mean_residual < 0.3


def test_acceleration_reaches_the_same_fixed_point_as_picard():
    sensitivity = pop._sensitivity_at(STG, STG.v_th_mV)
    base = generate_spiking_population("stg", n=300, seed=2).gbar
    unknown = [STG.channel_index("CaS"), STG.channel_index("H")]
    targets = np.array([np.nan, -6.0, 8.0])
    prior = np.full((300, 2), 30.0)
    picard, picard_residual, picard_solves = pop._compensate(
        sensitivity, base, unknown, targets, prior, 1e-12, 200, accelerate=False
    )
    anderson, anderson_residual, anderson_solves = pop._compensate(
        sensitivity, base, unknown, targets, prior, 1e-12, 200
    )
    assert picard_residual.max() < 1e-11 and anderson_residual.max() < 1e-11
    assert anderson_solves < picard_solves
    np.testing.assert_allclose(anderson, picard, rtol=1e-9)


def test_stg_grid_always_returns_exactly_n_valid_members():
    for g_s in np.arange(-20.0, 20.1, 5.0):
        for g_u in np.arange(0.0, 20.1, 5.0):
            population = generate_population("stg", g_s=g_s, g_u=g_u, n=200, seed=0)
            assert_valid(population, 200)
            report = population.report
            assert report.n_resampled >= 0 and report.n_drawn >= 200 + report.n_resampled


def test_g_f_target_uses_three_channels():
    population = generate_population("stg", g_s=-4.0, g_u=5.0, g_f=-6.0, n=500, seed=0)
    assert population.report.channels == ("CaS", "H", "Na")
    assert_valid(population, 500)
    np.testing.assert_allclose(population.dics, np.broadcast_to([-6.0, -4.0, 5.0], (500, 3)), atol=1e-9)
    da = generate_population("da", g_s=-2.0, g_u=5.0, g_f=-12.0, n=500, seed=0)
    assert da.report.channels == ("ERG", "CaL", "Na")
    assert_valid(da, 500, tolerance=1e-12)


def test_channels_override():
    population = generate_population("stg", g_s=5.0, g_u=5.0, n=300, seed=0, channels=("CaS", "A"))
    assert population.report.channels == ("CaS", "A")
    assert_valid(population, 300)


def test_da_population_is_exact():
    population = generate_population("da", g_s=-2.0, g_u=5.0, n=1000, seed=0)
    assert population.report.channels == ("ERG", "CaL") and population.report.iterations == 1
    assert_valid(population, 1000, tolerance=1e-12)


# ------------------------------------------------------------------------------------------- step E, determinism
def test_rejected_members_are_redrawn():
    # DA at g_u = 1 (g_s >= 0, [ERG, Kd]): about 1 draw in 6 needs a negative conductance.
    population = generate_population("da", g_s=0.0, g_u=1.0, n=1000, seed=0)
    assert_valid(population, 1000, tolerance=1e-12)
    report = population.report
    assert report.n_resampled > 50 and report.n_rejected_negative >= report.n_resampled
    assert report.n_drawn > 1000 and report.n_rounds >= 2


def test_unreachable_target_raises_with_the_target_in_the_message():
    with pytest.raises(ValueError, match=r"g_s=5\.0, g_u=0\.0.*ERG, Kd.*0\.0%"):
        generate_population("da", g_s=5.0, g_u=0.0, n=100, seed=0)


def test_same_seed_same_population_and_different_seeds_differ():
    first = generate_population("stg", g_s=-4.0, g_u=5.0, n=200, seed=7)
    again = generate_population("stg", g_s=-4.0, g_u=5.0, n=200, seed=7)
    other = generate_population("stg", g_s=-4.0, g_u=5.0, n=200, seed=8)
    np.testing.assert_array_equal(first.gbar, again.gbar)
    assert not np.allclose(first.gbar, other.gbar)
    resampled = [generate_population("da", g_s=0.0, g_u=1.0, n=100, seed=3).gbar for _ in range(2)]
    np.testing.assert_array_equal(*resampled)
    sequence = np.random.SeedSequence(7)
    np.testing.assert_array_equal(generate_population("stg", g_s=-4.0, g_u=5.0, n=200, seed=sequence).gbar, first.gbar)


def test_compensation_keeps_the_base_population():
    base = generate_spiking_population("stg", n=300, seed=4)
    population = generate_population("stg", g_s=4.0, g_u=8.0, n=300, seed=4)
    kept = [STG.channel_index(name) for name in ("Na", "Kd", "CaT", "CaS", "KCa", "leak")]
    np.testing.assert_array_equal(population.gbar[:, kept], base.gbar[:, kept])


def test_to_dataframe_columns():
    population = generate_population("da", g_s=-2.0, g_u=5.0, n=10, seed=0)
    frame = population.to_dataframe(include_dics=True)
    assert list(frame.columns) == [f"g_{name}" for name in DA.conductance_names] + ["g_f", "g_s", "g_u"]
    assert len(frame) == len(population) == 10
    assert "da" in repr(population)
    assert population.report.to_dict()["channels"] == ("ERG", "CaL")


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(model="hh"), "unknown model"),
        (dict(n=0), "n must be an integer"),
        (dict(n=2.5), "n must be an integer"),
        (dict(g_s=np.nan), "g_s must be finite"),
        (dict(g_u=np.inf), "g_u must be finite"),
        (dict(g_f=np.nan), "g_f must be finite"),
        (dict(channels=("CaS",)), "2 targets need 2"),
        (dict(channels="CaS"), "sequence of channel names"),
        (dict(channels=("CaS", "leak")), "non-leak"),
        (dict(channels=("CaS", "Foo")), "no channel 'Foo'"),
        (dict(tolerance=0.0), "tolerance"),
        (dict(max_iterations=0), "max_iterations"),
    ],
)
def test_bad_inputs_raise_clear_errors(arguments, message):
    call = dict(model="stg", g_s=-4.0, g_u=5.0, n=10)
    call.update(arguments)
    with pytest.raises(ValueError, match=message):
        generate_population(**call)
