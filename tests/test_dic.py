"""Tests of the Dynamic Input Conductances against the method spec (sections 3 and 9; values marked [run])."""

import numpy as np
import pytest

from spikeinterface_dic.dic import (
    compute_dics,
    compute_threshold,
    sensitivity_matrix,
    timescale_weight,
    total_input_conductance,
)
from spikeinterface_dic.models import DA, STG

# Example conductance sets (spec 9), STG columns [Na, Kd, CaT, CaS, KCa, A, H, leak], with their DICs at V_th = -51
# mV (g_f, g_s, g_u, g_t) and their own threshold (mV).
STG_SETS = {
    "S1": (
        [6600.82471, 125.961075, 4.14918208, 18.3416405, 159.677516, 413.833466, 0.321589451, 0.00957712096],
        (-6.1617, 3.9441, 4.9724, 2.7548),
        -50.550,
    ),
    "S2": (
        [2817.51002, 145.852520, 8.42704420, 14.5818832, 106.575443, 151.625062, 0.367655917, 0.00947267955],
        (-1.0725, -3.5217, 6.8653, 2.2710),
        -50.531,
    ),
    "S3": (
        [4759.32851, 263.884496, 4.38604312, 26.8271507, 93.1089184, 494.869664, 0.372942945, 0.0120014004],
        (-1.5591, 1.8380, 4.4575, 4.7364),
        -49.923,
    ),
    "S4": (
        [4459.32851, 215.422644, 12.6581051, 53.1943005, 116.558824, 415.288208, 0.575437208, 0.0142445689],
        (-0.1619, -9.2132, 6.4348, -2.9403),
        -51.576,
    ),
}
# DA columns [Na, Kd, CaL, CaN, ERG, NMDA, leak], DICs at -55.5 mV.
DA_SETS = {
    "fast": (
        [29.3362923, 5.55357599, 0.187373564, 0.0328792632, 0.0888513699, 0.00997158885, 0.0106779095],
        (-13.1842, -3.6116, 2.1600, -14.6357),
    ),
    "tonic": (
        [34.1175957, 13.2286701, 0.0215680320, 0.0560283847, 0.209517032, 0.0115521662, 0.0123704448],
        (-12.2461, 1.6249, 7.0628, -3.5584),
    ),
    "bursting": (
        [25.1758766, 7.03265238, 0.112492353, 0.0482002124, 0.0777861327, 0.00848305039, 0.00908393320],
        (-13.1569, -2.3973, 2.8386, -12.7156),
    ),
}


# ------------------------------------------------------------------------------------------------ timescale weights
def _weights(model, gate_name, v, tau=None):
    """(w_fs, w_su) of a gate (or of a constant time constant tau) from the model's reference time constants."""
    if tau is None:
        tau = model.function(model.gate_by_name[gate_name].tau_ms)(v)
    tau_f, tau_s, tau_u = (model.function(e)(v) for e in (model.tau_fast_ms, model.tau_slow_ms, model.tau_ultraslow_ms))
    return float(timescale_weight(tau, tau_f, tau_s)), float(timescale_weight(tau, tau_s, tau_u))


# Spec 3.2 [run]: (w_fs, w_su) at V_th.
STG_WEIGHTS = {
    "m_Na": (1, 1),
    "h_Na": (0.399314, 1),
    "m_Kd": (0, 1),
    "m_CaT": (0, 0.961450),
    "h_CaT": (0, 0.525550),
    "m_CaS": (0, 0.706657),
    "h_CaS": (0, 0.335250),
    "m_KCa": (0, 0.517825),
    "m_A": (0, 0.900157),
    "h_A": (0, 0.671815),
    "m_H": (0, 0),
}
DA_WEIGHTS = {"m_Na": (1, 1), "h_Na": (0, 0.459149), "n_Kd": (0, 1), "m_CaL": (0, 0.702858), "m_CaN": (0, 0.977873)}


@pytest.mark.parametrize("gate", list(STG_WEIGHTS))
def test_stg_weights_at_threshold(gate):
    np.testing.assert_allclose(_weights(STG, gate, -51.0), STG_WEIGHTS[gate], rtol=0, atol=6e-7)


def test_stg_kca_calcium_path_weight_uses_tau_ca_20():
    np.testing.assert_allclose(_weights(STG, None, -51.0, tau=20.0), (0, 0.736848), rtol=0, atol=6e-7)
    assert STG.concentrations[0].tau_ms == 20.0


@pytest.mark.parametrize("gate", list(DA_WEIGHTS))
def test_da_weights_at_threshold(gate):
    np.testing.assert_allclose(_weights(DA, gate, -55.5), DA_WEIGHTS[gate], rtol=0, atol=6e-7)


def test_da_forced_weights():
    """ERG is entirely ultraslow (w_fs = w_su = 0), the instantaneous NMDA block entirely fast (w_fs = w_su = 1)."""
    assert DA.gate_by_name["o_ERG"].dic_timescale == "ultraslow"
    assert DA.gate_by_name["B_NMDA"].dic_timescale == "fast" and DA.gate_by_name["B_NMDA"].tau_ms is None
    matrix = sensitivity_matrix("da", DA_SETS["tonic"][0], -55.5)
    erg, nmda = DA.channel_index("ERG"), DA.channel_index("NMDA")
    # Fast row of ERG is only its static term o_inf; slow row zero. NMDA has no slow or ultraslow part.
    assert np.isclose(matrix[0, erg], DA.steady_state_gates(-55.5)["o_ERG"] / DA_SETS["tonic"][0][-1], rtol=1e-12)
    assert matrix[1, erg] == 0.0 and matrix[1, nmda] == 0.0 and matrix[2, nmda] == 0.0


def test_timescale_weight_formula_and_scale_invariance():
    tau_low, tau_high = 2.0, 50.0
    tau = np.array([0.5, 2.0, 2.0000001, 10.0, 50.0, 50.0001, 500.0])
    expected = np.where(
        tau <= tau_low, 1.0, np.where(tau > tau_high, 0.0, np.log(tau_high / tau) / np.log(tau_high / tau_low))
    )
    np.testing.assert_allclose(timescale_weight(tau, tau_low, tau_high), expected, rtol=1e-14, atol=0)
    # Multiplying every time constant by k (simulate's time_scale) leaves every weight, hence every DIC, unchanged.
    for k in (0.5, 2.0, 7.3):
        np.testing.assert_allclose(
            timescale_weight(k * tau, k * tau_low, k * tau_high), expected, rtol=1e-12, atol=1e-15
        )


# --------------------------------------------------------------------------------------------- identity with dI/dV
def _steady_state_current(model, gbar, v):
    """I_inf(V) (uA/cm2) written from the declaration: gates at x_inf(V), STG calcium at Ca_inf(V)."""
    gbar = np.asarray(gbar, dtype=float)
    v = np.asarray(v, dtype=float)

    def current(channel, index, steady):
        factor = 1.0
        for gate, power in channel.gates:
            factor = factor * steady[gate] ** power
        return gbar[index] * factor * (v - model.constants[channel.reversal])

    concentrations = {}
    steady = model.steady_state_gates(v, {c.name: np.ones_like(v) for c in model.concentrations})
    for c in model.concentrations:  # the source channels' gates do not depend on the concentration
        sources = sum(
            current(model.channels[model.channel_index(s)], model.channel_index(s), steady) for s in c.source_channels
        )
        concentrations[c.name] = c.beta - c.alpha * sources
    steady = model.steady_state_gates(v, concentrations)
    return sum(current(channel, index, steady) for index, channel in enumerate(model.channels))


def _finite_difference_slope(model, gbar, v, h=1e-4):
    slope = (_steady_state_current(model, gbar, v + h) - _steady_state_current(model, gbar, v - h)) / (2 * h)
    return slope / gbar[model.leak_index]


def test_steady_state_calcium_of_the_spec_matrix_conductances():
    gbar = np.array([1.0, 1.0, 5.0, 14.0, 1.0, 1.0, 1.0, 0.01])
    i_ca = _steady_state_current(STG, np.where(np.isin(np.arange(8), [2, 3]), gbar, 0.0), -51.0)
    ca_inf = 0.05 - 0.94 * i_ca
    assert np.isclose(ca_inf, 0.38113, atol=5e-6)


@pytest.mark.parametrize("name", list(STG_SETS))
def test_identity_total_dic_equals_normalised_iv_slope_stg(name):
    gbar = np.array(STG_SETS[name][0])
    v = np.array([-75.0, -70.0, -60.0, -51.0, -45.0, -40.0, -30.0, -10.0])
    g_t = compute_dics("stg", gbar[None, :], v).sum(axis=-1)
    np.testing.assert_allclose(g_t, _finite_difference_slope(STG, gbar, v), rtol=1e-7, atol=1e-6)
    np.testing.assert_allclose(total_input_conductance("stg", gbar, v), g_t, rtol=1e-14)


@pytest.mark.parametrize("name", list(DA_SETS))
def test_identity_total_dic_equals_normalised_iv_slope_da(name):
    gbar = np.array(DA_SETS[name][0])
    v = np.array([-80.0, -65.0, -55.5, -45.0, -38.0, -30.0, -10.0])
    g_t = compute_dics("da", gbar[None, :], v).sum(axis=-1)
    np.testing.assert_allclose(g_t, _finite_difference_slope(DA, gbar, v), rtol=1e-7, atol=1e-6)


@pytest.mark.parametrize(
    ("model", "gbar", "v", "expected"),
    [
        ("stg", STG_SETS["S1"][0], -51.0, 2.754826),
        ("stg", STG_SETS["S1"][0], -70.0, 87.724381),
        ("stg", STG_SETS["S1"][0], -40.0, -584.433510),
        ("da", DA_SETS["tonic"][0], -55.5, -3.558350),
    ],
)
def test_total_input_conductance_reference_values(model, gbar, v, expected):
    model_object = STG if model == "stg" else DA
    finite_difference = float(_finite_difference_slope(model_object, np.array(gbar), v))
    assert abs(finite_difference - expected) < 1e-6
    assert abs(float(total_input_conductance(model, gbar, v)) - expected) < 1e-6


def test_total_input_conductance_does_not_depend_on_weights():
    """Every gate's contribution is split f/s/u with weights that sum to one, so g_t is the plain I-V slope."""
    gbar = np.array(STG_SETS["S2"][0])
    matrix = sensitivity_matrix("stg", gbar, np.linspace(-80, 0, 9))
    unsplit = np.einsum("vrc,c->v", matrix, gbar)
    np.testing.assert_allclose(
        unsplit, _finite_difference_slope(STG, gbar, np.linspace(-80, 0, 9)), rtol=1e-7, atol=1e-6
    )


# ------------------------------------------------------------------------------------------------------ S matrices
STG_MATRIX = np.array(
    [
        [-1.618420e-03, 1.731637e-04, 4.121905e-03, 1.773541e-02, 6.501426e-06, 5.212699e-03, 4.043956e00, 1.000000e02],
        [1.438640e-04, 1.640535e-03, -2.071538e-01, -4.468317e-01, 1.168333e-04, 2.812132e-02, 0, 0],
        [0, 0, -6.918197e-03, -2.590582e-02, 5.699587e-05, -2.900909e-03, 2.004884e01, 0],
    ]
)
DA_MATRIX = np.array(
    [
        [-5.488510e-01, 3.888304e-02, 3.610406e-01, 2.550967e00, 9.317605e00, -2.405077e01, 1.000000e02],
        [3.912755e-02, 2.658321e-01, -2.754821e01, -4.010965e01, 0, 0, 0],
        [4.608991e-02, 0, -1.164635e01, -9.075745e-01, 3.563724e01, 0, 0],
    ]
)


def test_stg_sensitivity_matrix_reference():
    # Only g_leak, g_CaT and g_CaS enter S (the latter two through Ca_inf); the other columns are arbitrary.
    for filler in (1.0, 123.0):
        gbar = np.array([filler, filler, 5.0, 14.0, filler, filler, filler, 0.01])
        matrix = sensitivity_matrix("stg", gbar, -51.0)
        assert matrix.shape == (3, 8)
        np.testing.assert_allclose(matrix, STG_MATRIX, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(
            sensitivity_matrix("stg", gbar, -51.0, normalize=False), 0.01 * STG_MATRIX, rtol=1e-6
        )
    # Default voltage is the model's fixed threshold.
    np.testing.assert_array_equal(sensitivity_matrix("stg", gbar), matrix)


def test_da_sensitivity_matrix_reference():
    gbar = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.01])
    matrix = sensitivity_matrix("da", gbar, -55.5)
    np.testing.assert_allclose(matrix, DA_MATRIX, rtol=1e-6, atol=1e-12)
    # The DA matrix does not depend on the conductances (linear system) other than through the leak.
    other = sensitivity_matrix("da", [50.0, 3.0, 0.2, 0.1, 0.3, 0.02, 0.02], -55.5)
    np.testing.assert_allclose(other, DA_MATRIX / 2.0, rtol=1e-6, atol=1e-12)


def test_stg_sensitivity_depends_on_calcium_conductances_only_through_kca():
    base = np.array([1.0, 1.0, 5.0, 14.0, 1.0, 1.0, 1.0, 0.01])
    changed = base.copy()
    changed[[2, 3]] = [8.0, 30.0]
    difference = sensitivity_matrix("stg", changed) - sensitivity_matrix("stg", base)
    kca = STG.channel_index("KCa")
    assert np.abs(difference[:, kca]).max() > 1e-6
    assert np.abs(np.delete(difference, kca, axis=1)).max() == 0.0


# ------------------------------------------------------------------------------------------- DICs and thresholds
@pytest.mark.parametrize("name", list(STG_SETS))
def test_stg_example_dics(name):
    gbar, expected, _ = STG_SETS[name]
    dics = compute_dics("stg", gbar)
    np.testing.assert_allclose(dics, expected[:3], rtol=0, atol=1e-4)
    assert abs(dics.sum() - expected[3]) < 1e-4


@pytest.mark.parametrize("name", list(DA_SETS))
def test_da_example_dics(name):
    gbar, expected = DA_SETS[name]
    dics = compute_dics("da", gbar)
    np.testing.assert_allclose(dics, expected[:3], rtol=0, atol=1e-4)
    assert abs(dics.sum() - expected[3]) < 1e-4


def test_stg_example_thresholds():
    gbar = np.array([STG_SETS[name][0] for name in STG_SETS])
    expected = np.array([STG_SETS[name][2] for name in STG_SETS])
    thresholds = compute_threshold("stg", gbar)
    np.testing.assert_allclose(thresholds, expected, rtol=0, atol=1e-3)
    # g_t crosses zero downwards there.
    g_t_below = total_input_conductance("stg", gbar, thresholds - 0.01)
    g_t_above = total_input_conductance("stg", gbar, thresholds + 0.01)
    assert (g_t_below > 0).all() and (g_t_above < 0).all()
    np.testing.assert_allclose(total_input_conductance("stg", gbar, thresholds), 0.0, atol=1e-5)


def test_threshold_is_nan_without_a_crossing():
    # Leak only (plus negligible other conductances): g_t = 1 everywhere, no decreasing zero.
    gbar = np.zeros(8)
    gbar[-1] = 0.01
    assert np.isnan(compute_threshold("stg", gbar))


# -------------------------------------------------------------------------------------------------------- batching
def test_batched_conductances_shape_and_values():
    rng = np.random.default_rng(0)
    base = np.array([STG_SETS[name][0] for name in STG_SETS])  # (4, 8)
    gbar = base[None, :, :] * rng.uniform(0.8, 1.2, size=(5, 4, 8))
    dics = compute_dics("stg", gbar)
    assert dics.shape == (5, 4, 3)
    for i in range(5):
        for j in range(4):
            np.testing.assert_allclose(dics[i, j], compute_dics("stg", gbar[i, j]), rtol=1e-13, atol=1e-13)
    assert sensitivity_matrix("stg", gbar).shape == (5, 4, 3, 8)
    thresholds = compute_threshold("stg", gbar)
    assert thresholds.shape == (5, 4)
    np.testing.assert_allclose(thresholds[2, 1], compute_threshold("stg", gbar[2, 1]), atol=1e-9)


def test_voltage_array_broadcasts_against_neurons():
    gbar = np.array([STG_SETS[name][0] for name in STG_SETS])  # (4, 8)
    v = np.array([-70.0, -60.0, -51.0, -45.0, -40.0])
    dics = compute_dics("stg", gbar[:, None, :], v[None, :])
    assert dics.shape == (4, 5, 3)
    for i in range(4):
        for j in range(5):
            np.testing.assert_allclose(dics[i, j], compute_dics("stg", gbar[i], v[j]), rtol=1e-13, atol=1e-13)
    # One neuron at many voltages, and many neurons at one voltage per neuron.
    assert compute_dics("stg", gbar[0], v).shape == (5, 3)
    per_neuron = compute_dics("stg", gbar, v[:4])
    np.testing.assert_allclose(per_neuron[3], compute_dics("stg", gbar[3], v[3]), rtol=1e-13)
    da = np.array([DA_SETS[name][0] for name in DA_SETS])
    assert compute_dics("da", da[:, None, :], np.linspace(-70, -40, 7)).shape == (3, 7, 3)


# ------------------------------------------------------------------------------------------------------ bad inputs
S1 = STG_SETS["S1"][0]


@pytest.mark.parametrize(
    ("gbar", "message"),
    [
        (S1[:7], r"shape \(\.\.\., 8\) with columns Na, Kd, CaT, CaS, KCa, A, H, leak.*got shape \(7,\)"),
        (np.ones((3, 7)), r"shape \(\.\.\., 8\).*got shape \(3, 7\)"),
        (5.0, r"shape \(\.\.\., 8\).*got shape \(\)"),
        ([S1[:2] + [np.nan] + S1[3:]], r"NaN conductances \(rows \[\[0\]\]\)"),
        (S1[:1] + [-1.0] + S1[2:], "negative conductances.*must be >= 0"),
        (S1[:7] + [0.0], "g_leak <= 0.*normalised by the leak"),
    ],
    ids=["short", "wrong-columns", "scalar", "nan", "negative", "zero-leak"],
)
@pytest.mark.parametrize("function", [compute_dics, compute_threshold])
def test_bad_conductances_raise(function, gbar, message):
    with pytest.raises(ValueError, match=message):
        function("stg", gbar)


def test_da_wrong_number_of_columns_names_the_da_channels():
    with pytest.raises(ValueError, match="shape \\(\\.\\.\\., 7\\) with columns Na, Kd, CaL, CaN, ERG, NMDA, leak"):
        compute_dics("da", S1)


def test_unknown_model_raises():
    with pytest.raises(ValueError, match="unknown model 'hh'; choose one of \\['da', 'stg'\\]"):
        compute_dics("hh", S1)
    with pytest.raises(ValueError, match="unknown model"):
        sensitivity_matrix("xx", S1)
