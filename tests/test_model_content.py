"""Models are identified by their content: a variant never reuses another model's caches, and everything
model-specific (compensation channels, solver priors) is declared on the model rather than looked up by name.
"""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from spikeinterface_dic.dic import compute_dics
from spikeinterface_dic.models import (
    DA,
    STG,
    Channel,
    CompensationCase,
    CompensationRule,
    Gate,
    Model,
    get_model,
    sigmoid,
)
from spikeinterface_dic.population import CALCIUM_PRIORS, default_compensation_channels, generate_population
from spikeinterface_dic.simulate import simulate
from spikeinterface_dic.simulate.codegen import kernel_source

TARGET = (-4.0, 5.0)  # (g_s, g_u): compensates CaS, which feeds calcium, so the solve is the nonlinear one


def _potassium_variant(name: str) -> Model:
    """STG with E_K = -90 mV instead of -80 mV, under the given name."""
    return dataclasses.replace(STG, name=name, constants={**STG.constants, "E_K": -90.0})


def _true_dic_error(model: Model, gbar: np.ndarray, g_s: float, g_u: float) -> float:
    """Largest |DIC - target| of the members, from the uncached sensitivity matrix of ``model``."""
    return float(np.abs(compute_dics(model, gbar)[:, 1:] - [g_s, g_u]).max())


# ---------------------------------------------------------------------------------------------- identity
def test_equal_content_is_equal_model():
    copy = dataclasses.replace(STG)
    assert copy is not STG and copy == STG and hash(copy) == hash(STG) and copy.digest == STG.digest
    assert get_model("stg") == STG and STG != DA
    restored = pickle.loads(pickle.dumps(STG))
    assert restored == STG and restored.digest == STG.digest


@pytest.mark.parametrize("name", ["stg", "stg_ek90"])
def test_variant_is_another_model(name):
    variant = _potassium_variant(name)
    assert variant != STG and STG != variant
    assert variant.digest != STG.digest and len(variant.digest) == 64
    assert len({variant, STG}) == 2
    # The name is part of the content: a renamed copy is another model too.
    assert dataclasses.replace(STG, name="renamed") != STG


def test_digest_sees_every_part_of_the_declaration():
    changed = [
        dataclasses.replace(STG, v_th_mV=-50.0),
        dataclasses.replace(STG, default_dt_ms=0.025),
        dataclasses.replace(STG, default_scheme=2),
        dataclasses.replace(STG, tau_slow_ms=STG.tau_fast_ms),
        dataclasses.replace(
            STG, gates=STG.gates[:-1] + (dataclasses.replace(STG.gates[-1], tau_ms="(100.0 + 0.0*V)"),)
        ),
        dataclasses.replace(STG, extra={**STG.extra, "spiking_targets": (-6.2, 4.0, 5.5)}),
        dataclasses.replace(STG, compensation=None),
        dataclasses.replace(STG, constants={**STG.constants, "E_K": -80}),  # an int, not the float -80.0
    ]
    digests = {model.digest for model in changed}
    assert len(digests) == len(changed) and STG.digest not in digests


# ---------------------------------------------------------------------------------------------- caches
@pytest.mark.parametrize("name", ["stg", "stg_ek90"])
def test_variant_population_reaches_its_own_target(name):
    g_s, g_u = TARGET
    stock = generate_population(STG, g_s, g_u, n=10, seed=0)  # warms the stock model's caches first
    assert _true_dic_error(STG, stock.gbar, g_s, g_u) < 1e-6
    variant = _potassium_variant(name)
    population = generate_population(variant, g_s, g_u, n=10, seed=0)
    assert population.report.channels == ("CaS", "H")
    assert _true_dic_error(variant, population.gbar, g_s, g_u) < 1e-6
    np.testing.assert_allclose(population.dics, compute_dics(variant, population.gbar), atol=1e-9)
    # The check is sensitive: the stock model's sensitivity would put these members far from the target.
    assert _true_dic_error(STG, population.gbar, g_s, g_u) > 0.1


def test_variant_simulation_uses_its_own_kernel_and_table():
    gbar = np.array([STG.extra["example_sets"]["S1"]])
    stock = simulate(STG, gbar, duration_s=2.0, transient_s=1.0)  # warms the stock kernel and table first
    variant = _potassium_variant("stg")
    assert kernel_source(variant) != kernel_source(STG)
    shifted = simulate(variant, gbar, duration_s=2.0, transient_s=1.0)
    assert len(stock[0]) > 0 and len(shifted[0]) > 0
    assert len(stock[0]) != len(shifted[0]) or not np.allclose(stock[0], shifted[0], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(simulate(STG, gbar, duration_s=2.0, transient_s=1.0)[0], stock[0])


# ---------------------------------------------------------------------------------------------- declarations
def test_stock_compensation_is_declared():
    assert CALCIUM_PRIORS == {"stg": STG.compensation.prior_by_channel}
    assert STG.compensation.prior_by_channel["CaS"] == (34.12021074772369, -2.3296612301271464)
    assert default_compensation_channels(_potassium_variant("stg_ek90"), -4, 5) == ("CaS", "H")
    assert default_compensation_channels(DA, -2, 5, g_f=-10.0) == ("ERG", "CaL", "Na")


def test_model_without_rule_needs_channels():
    bare = dataclasses.replace(STG, name="bare", compensation=None)
    with pytest.raises(ValueError, match="channels="):
        default_compensation_channels(bare, -4, 5)
    with pytest.raises(ValueError, match="channels="):
        generate_population(bare, -4, 5, n=2)
    population = generate_population(bare, -4, 5, n=5, channels=("CaS", "H"))
    assert _true_dic_error(bare, population.gbar, -4, 5) < 1e-6


def test_rule_is_checked_against_the_channels():
    rule = CompensationRule(cases=(), otherwise=("CaS", "M"))
    with pytest.raises(ValueError, match="M"):
        dataclasses.replace(STG, compensation=rule)
    with pytest.raises(ValueError, match="'g_s' or 'g_u'"):
        CompensationCase("g_f", "<", 0.0, ("CaS", "H"))


# ---------------------------------------------------------------------------------------------- a third model
def _third_model() -> Model:
    """Five channels, no concentration: fast Na, delayed-rectifier K, a persistent Ca current with slow activation
    (tau ~13 ms at threshold: negative slow feedback), an H current (ultraslow, restorative) and a leak."""
    return Model(
        name="five_channel",
        description="Test model: Na, Kd, slow persistent Ca, H, leak",
        gates=(
            Gate("m_Na", sigmoid(0, 1, -5.29, 25.5), sigmoid(1.32, -1.26, -25, 120)),
            Gate("h_Na", sigmoid(0, 1, 5.18, 48.9), f"({sigmoid(0, 0.67, -10, 62.9)}*{sigmoid(1.5, 1, 3.6, 34.9)})"),
            Gate("n_Kd", sigmoid(0, 1, -11.8, 12.3), sigmoid(7.2, -6.4, -19.2, 28.3)),
            Gate("m_Ca", sigmoid(0, 1, -8.1, 33), sigmoid(5.0, 15.0, 10.0, 50.0)),
            Gate("m_H", sigmoid(0, 1, 6, 70), sigmoid(272, 1499, -8.73, 42.2)),
        ),
        channels=(
            Channel("Na", (("m_Na", 3), ("h_Na", 1)), "E_Na"),
            Channel("Kd", (("n_Kd", 4),), "E_K"),
            Channel("Ca", (("m_Ca", 3),), "E_Ca"),
            Channel("H", (("m_H", 1),), "E_H"),
            Channel("leak", (), "E_leak"),
        ),
        constants={"E_Na": 50.0, "E_K": -80.0, "E_Ca": 80.0, "E_H": -20.0, "E_leak": -50.0},
        v_th_mV=-51.0,
        v_init_mV=-70.0,
        tau_fast_ms=sigmoid(1.32, -1.26, -25, 120),  # tau_mNa
        tau_slow_ms=sigmoid(7.2, -6.4, -19.2, 28.3),  # tau_nKd
        tau_ultraslow_ms=sigmoid(272, 1499, -8.73, 42.2),  # tau_mH
        default_dt_ms=0.025,
        default_duration_ms=4000.0,
        default_transient_ms=2000.0,
        # Ca is the only source of negative g_s; Kd (slow activation) raises it; H carries g_u.
        compensation=CompensationRule(
            cases=(CompensationCase("g_s", "<", 0.0, ("Ca", "H")),), otherwise=("Kd", "H"), fast_channel="Na"
        ),
        extra={
            "spiking_ranges": {"leak": (0.007, 0.014), "Kd": (70.0, 140.0)},
            "spiking_solved": ("Na", "Ca", "H"),
            "spiking_targets": (-6.2, -2.0, 5.0),
            "fixed": {},
        },
    )


@pytest.mark.parametrize(("g_s", "g_u", "channels"), [(-4.0, 5.0, ("Ca", "H")), (0.5, 5.0, ("Kd", "H"))])
def test_third_model_end_to_end(g_s, g_u, channels):
    model = _third_model()
    population = generate_population(model, g_s, g_u, n=10, seed=0)
    assert population.report.channels == channels and population.model_name == "five_channel"
    assert (population.gbar >= 0).all()
    assert _true_dic_error(model, population.gbar, g_s, g_u) < 1e-6
    trains = simulate(model, population.gbar, duration_s=2.0, transient_s=1.0)
    assert sum(len(train) > 0 for train in trains) >= 1


def test_third_model_fast_target():
    model = _third_model()
    population = generate_population(model, -4.0, 5.0, n=10, seed=1, g_f=-8.0)
    assert population.report.channels == ("Ca", "H", "Na")
    np.testing.assert_allclose(compute_dics(model, population.gbar), np.tile([-8.0, -4.0, 5.0], (10, 1)), atol=1e-6)


def test_third_model_through_the_pipeline():
    """A user-declared model with its own estimates: populations, twins and fidelity with no name lookup."""
    import pandas as pd

    import spikeinterface_dic as sdic

    model = _third_model()
    recorded = simulate(model, generate_population(model, -4.0, 5.0, n=3, seed=2).gbar, duration_s=4.0, transient_s=2.0)
    trains = {f"cell{i}": t for i, t in enumerate(recorded) if len(t) >= 5}
    assert trains, "the third model's members should fire"
    estimates = pd.DataFrame(
        {
            "g_s": -4.0,
            "g_u": 5.0,
            "time_scale": 1.0,
            "time_scale_std": 0.0,
            "time_scale_low": 1.0,
            "time_scale_high": 1.0,
            "label": "",
            "in_distribution": True,
            "ood_reason": "",
        },
        index=pd.Index(list(trains), name="unit_id"),
    )
    config = sdic.RunConfig(model=model, duration_s=1.0, seed=1)
    result = sdic.run_pipeline(trains, config, estimates=estimates, population_size=4)  # keywords on top of a config
    assert result.model_name == "five_channel" and result.parameters["model_digest"] == model.digest
    assert result.provenance["weights_sha256"] is None
    for unit_id in trains:
        assert _true_dic_error(model, result.populations[unit_id], -4.0, 5.0) < 1e-6
        assert len(result.twin_spike_trains[unit_id]) == 4
    assert set(result.fidelity.index) == set(trains)
