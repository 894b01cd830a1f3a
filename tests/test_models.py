"""Tests of the model declarations against the method spec (sections 1 and 2; reference values marked [run]).

The declarations in :mod:`spikeinterface_dic.models` are the single source of the DICs, the numba kernel and the scipy
reference, so an error here would propagate everywhere unnoticed by kernel-versus-reference tests. The initial states
and the right-hand sides are therefore also checked against an independent transcription of the spec's formulas.
"""

import numpy as np
import pytest

from spikeinterface_dic.models import DA, STG, get_model
from spikeinterface_dic.simulate.reference import make_rhs

RTOL = 1e-5


def _sigmoid(v, a, b, c, d):
    return a + b / (1.0 + np.exp((v + d) / c))


def _tolerance(printed: str) -> float:
    """Relative tolerance for a value printed in the spec: 1e-5, or half a unit of its last printed digit if larger."""
    mantissa = printed.lower().split("e")[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    exponent = int(printed.lower().split("e")[1]) if "e" in printed.lower() else 0
    half_unit = 0.5 * 10.0 ** (exponent - decimals)
    return max(RTOL, half_unit / abs(float(printed)))


def _check(name, computed, printed):
    expected = float(printed)
    rtol = _tolerance(printed)
    assert np.isclose(computed, expected, rtol=rtol, atol=0.0), (
        f"{name}: computed {computed!r}, spec {printed} (rtol {rtol:.1e})"
    )


# ------------------------------------------------------------------------------------------------------------- STG
# Spec 1.2, reference values at V = -51 mV [run]: (quantity, kind, gate, printed value).
STG_AT_MINUS_51 = [
    ("m_Na", "inf", "0.0079989"),
    ("h_Na", "inf", "0.599986"),
    ("m_Na", "tau", "0.135001"),
    ("h_Na", "tau", "1.278490"),
    ("m_Kd", "inf", "0.0362756"),
    ("m_Kd", "tau", "5.698301"),
    ("m_CaT", "inf", "0.0349101"),
    ("h_CaT", "inf", "0.968822"),
    ("m_CaT", "tau", "6.848981"),
    ("h_CaT", "tau", "54.811058"),
    ("m_CaS", "inf", "0.0977726"),
    ("h_CaS", "inf", "0.189753"),
    ("m_CaS", "tau", "23.098885"),
    ("h_CaS", "tau", "135.892284"),
    ("m_KCa", "tau", "56.868823"),
    ("m_A", "inf", "0.0609032"),
    ("h_A", "inf", "0.230750"),
    ("m_A", "tau", "9.175575"),
    ("h_A", "tau", "27.276479"),
    ("m_H", "inf", "0.0404396"),
    ("m_H", "tau", "672.784402"),
]


@pytest.mark.parametrize(("gate", "kind", "printed"), STG_AT_MINUS_51, ids=[f"{g}-{k}" for g, k, _ in STG_AT_MINUS_51])
def test_stg_gating_at_minus_51(gate, kind, printed):
    declaration = STG.gate_by_name[gate]
    if kind == "inf":
        value = STG.steady_state_gates(-51.0, {"Ca": 0.5})[gate]
    else:
        value = STG.function(declaration.tau_ms)(-51.0)
    _check(f"STG {gate} {kind}", float(value), printed)


def test_stg_kca_steady_state_depends_on_calcium():
    _check("m_KCa_inf(-51, Ca=0.5)", float(STG.steady_state_gates(-51.0, {"Ca": 0.5})["m_KCa"]), "0.0202369")
    # m_KCa_inf = Ca/(Ca + 3) * sigma(V; 0, 1, -12.6, 28.3): check the calcium factor at other concentrations.
    for ca in (0.05, 1.0, 10.0):
        expected = ca / (ca + 3.0) * _sigmoid(-51.0, 0, 1, -12.6, 28.3)
        assert np.isclose(STG.steady_state_gates(-51.0, {"Ca": ca})["m_KCa"], expected, rtol=1e-13)


def test_stg_reference_time_constants_are_tau_mna_mkd_mh():
    v = np.linspace(-90.0, 30.0, 25)
    for reference, gate in ((STG.tau_fast_ms, "m_Na"), (STG.tau_slow_ms, "m_Kd"), (STG.tau_ultraslow_ms, "m_H")):
        np.testing.assert_allclose(STG.function(reference)(v), STG.function(STG.gate_by_name[gate].tau_ms)(v), rtol=0)
    assert STG.v_th_mV == -51.0


# Spec 1.2 steady states as (A, B, C, D) of the generic sigmoid, in the simulator's state order.
STG_INF = {
    "m_Na": (0, 1, -5.29, 25.5),
    "h_Na": (0, 1, 5.18, 48.9),
    "m_Kd": (0, 1, -11.8, 12.3),
    "m_CaT": (0, 1, -7.2, 27.1),
    "h_CaT": (0, 1, 5.5, 32.1),
    "m_CaS": (0, 1, -8.1, 33),
    "h_CaS": (0, 1, 6.2, 60),
    "m_KCa": None,  # Ca/(Ca + 3) * sigma(V; 0, 1, -12.6, 28.3)
    "m_A": (0, 1, -8.7, 27.2),
    "h_A": (0, 1, 4.9, 56.9),
    "m_H": (0, 1, 6, 70),
}


def test_stg_state_order_and_initial_state():
    assert STG.state_names == ("V",) + tuple(STG_INF) + ("Ca",)
    assert STG.conductance_names == ("Na", "Kd", "CaT", "CaS", "KCa", "A", "H", "leak")
    v0, ca0 = -70.0, 0.5
    expected = [v0]
    for gate, parameters in STG_INF.items():
        if gate == "m_KCa":
            expected.append(ca0 / (ca0 + 3.0) * _sigmoid(v0, 0, 1, -12.6, 28.3))
        else:
            expected.append(_sigmoid(v0, *parameters))
    expected.append(ca0)
    np.testing.assert_allclose(STG.initial_state(), expected, rtol=1e-13, atol=0)


def _stg_rhs_from_spec(y, gbar):
    """dy/dt of the STG model transcribed independently from spec 1.1-1.2."""
    v, m_na, h_na, m_kd, m_cat, h_cat, m_cas, h_cas, m_kca, m_a, h_a, m_h, ca = y
    g_na, g_kd, g_cat, g_cas, g_kca, g_a, g_h, g_leak = gbar
    i_cat = g_cat * m_cat**3 * h_cat * (v - 80.0)
    i_cas = g_cas * m_cas**3 * h_cas * (v - 80.0)
    currents = (
        g_na * m_na**3 * h_na * (v - 50.0)
        + g_kd * m_kd**4 * (v + 80.0)
        + i_cat
        + i_cas
        + g_kca * m_kca**4 * (v + 80.0)
        + g_a * m_a**3 * h_a * (v + 80.0)
        + g_h * m_h * (v + 20.0)
        + g_leak * (v + 50.0)
    )
    tau_h_na = _sigmoid(v, 0, 0.67, -10, 62.9) * _sigmoid(v, 1.5, 1, 3.6, 34.9)
    tau_m_cas = 1.4 + 7.0 / (np.exp((v + 27.0) / 10.0) + np.exp((v + 70.0) / -13.0))
    tau_h_cas = 60.0 + 150.0 / (np.exp((v + 55.0) / 9.0) + np.exp((v + 65.0) / -16.0))
    taus = [
        _sigmoid(v, 1.32, -1.26, -25, 120),
        tau_h_na,
        _sigmoid(v, 7.2, -6.4, -19.2, 28.3),
        _sigmoid(v, 21.7, -21.3, -20.5, 68.1),
        _sigmoid(v, 105, -89.8, -16.9, 55),
        tau_m_cas,
        tau_h_cas,
        _sigmoid(v, 90.3, -75.1, -22.7, 46),
        _sigmoid(v, 11.6, -10.4, -15.2, 32.9),
        _sigmoid(v, 38.6, -29.2, -26.5, 38.9),
        _sigmoid(v, 272, 1499, -8.73, 42.2),
    ]
    gates = [m_na, h_na, m_kd, m_cat, h_cat, m_cas, h_cas, m_kca, m_a, h_a, m_h]
    infs = [
        ca / (ca + 3.0) * _sigmoid(v, 0, 1, -12.6, 28.3) if p is None else _sigmoid(v, *p) for p in STG_INF.values()
    ]
    d_gates = [(x_inf - x) / tau for x_inf, x, tau in zip(infs, gates, taus, strict=True)]
    d_ca = (-0.94 * (i_cat + i_cas) - ca + 0.05) / 20.0
    return np.array([-currents, *d_gates, d_ca])


def test_stg_rhs_matches_spec_equations():
    rng = np.random.default_rng(1)
    gbar = np.array([4759.33, 263.88, 4.386, 26.83, 93.11, 494.87, 0.3729, 0.012])
    rhs = make_rhs(STG, gbar)
    for v in (-70.0, -51.0, -20.0, 30.0):
        y = np.concatenate(([v], rng.uniform(0.01, 0.99, 11), [rng.uniform(0.05, 3.0)]))
        np.testing.assert_allclose(rhs(0.0, y), _stg_rhs_from_spec(y, gbar), rtol=1e-11, atol=1e-12)
    # The time scale k divides every derivative by k (capacitance and every time constant multiplied by k).
    np.testing.assert_allclose(make_rhs(STG, gbar, time_scale=2.0)(0.0, y), 0.5 * rhs(0.0, y), rtol=1e-14)


# -------------------------------------------------------------------------------------------------------------- DA
DA_AT_MINUS_55_5 = [
    ("m_Na", "inf", "0.0683443"),
    ("h_Na", "inf", "0.534106"),
    ("m_Na", "tau", "0.228677"),
    ("h_Na", "tau", "44.725377"),
    ("n_Kd", "inf", "0.0729883"),
    ("n_Kd", "tau", "17.335150"),
    ("m_CaL", "inf", "0.0600867"),
    ("m_CaL", "tau", "29.179258"),
    ("m_CaN", "inf", "0.0255097"),
    ("m_CaN", "tau", "18.020532"),
    ("o_ERG", "inf", "0.0931760"),
    ("i_ERG", "inf", "7.236e-5"),  # 4 significant digits in the spec: compared to half a unit of the last one
    ("B_NMDA", "inf", "0.0777092"),
]


@pytest.mark.parametrize(
    ("gate", "kind", "printed"), DA_AT_MINUS_55_5, ids=[f"{g}-{k}" for g, k, _ in DA_AT_MINUS_55_5]
)
def test_da_gating_at_minus_55_5(gate, kind, printed):
    if kind == "inf":
        value = DA.steady_state_gates(-55.5)[gate]
    else:
        value = DA.function(DA.gate_by_name[gate].tau_ms)(-55.5)
    _check(f"DA {gate} {kind}", float(value), printed)


def _erg_rates(v):
    a0 = 0.0036 * np.exp(0.0759 * v)
    b0 = 1.2523e-5 * np.exp(-0.0671 * v)
    ai = 0.1 * np.exp(0.1189 * v)
    bi = 0.003 * np.exp(-0.0733 * v)
    return a0, b0, ai, bi


def test_da_erg_steady_state_is_that_of_the_three_state_scheme():
    v = np.linspace(-100.0, 40.0, 29)
    a0, b0, ai, bi = _erg_rates(v)
    denominator = a0 * (ai + bi) + b0 * bi
    steady = DA.steady_state_gates(v)
    np.testing.assert_allclose(steady["o_ERG"], a0 * bi / denominator, rtol=1e-12)
    np.testing.assert_allclose(steady["i_ERG"], a0 * ai / denominator, rtol=1e-12)
    # ... and a fixed point of the kinetics do/dt = a0(1-o-i) + bi i - o(ai+b0), di/dt = ai o - bi i.
    o, i = steady["o_ERG"], steady["i_ERG"]
    np.testing.assert_allclose(a0 * (1 - o - i) + bi * i - o * (ai + b0), 0.0, atol=1e-15)
    np.testing.assert_allclose(ai * o - bi * i, 0.0, atol=1e-15)


def test_da_initial_state_starts_erg_at_steady_state():
    """u0 of spec 2.1, except o_ERG = o_inf(-90) and i_ERG = i_inf(-90) (the original used the rate a0(-90) and 0)."""
    assert DA.state_names == ("V", "m_Na", "h_Na", "n_Kd", "m_CaL", "m_CaN", "o_ERG", "i_ERG")
    assert DA.conductance_names == ("Na", "Kd", "CaL", "CaN", "ERG", "NMDA", "leak")
    u0 = DA.initial_state()
    # Spec's numeric u0 for the first six states (printed to 5 significant digits).
    for value, printed in zip(
        u0[:6], ["-90", "2.1090e-3", "0.965810", "4.4223e-3", "2.0612e-9", "1.8941e-4"], strict=True
    ):
        _check("DA u0", float(value), printed)
    a0, b0, ai, bi = _erg_rates(-90.0)
    o_inf = a0 * bi / (a0 * (ai + bi) + b0 * bi)
    i_inf = a0 * ai / (a0 * (ai + bi) + b0 * bi)
    assert np.isclose(u0[6], o_inf, rtol=1e-12)
    assert np.isclose(u0[7], i_inf, rtol=1e-12)
    assert not np.isclose(u0[6], 3.8872e-6, rtol=1e-2)  # not the original's a0(-90)
    assert np.isclose(a0, 3.8872e-6, rtol=1e-4)  # (which is what the original used)
    assert 7.0e-4 < u0[6] < 7.5e-4


V_POLE = -19.565 / 0.5052


def _raw_tau_m_na(v):
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return 0.01 + 1.0 / (
            -(15.6504 + 0.4043 * v) / (np.exp(-19.565 - 0.5052 * v) - 1.0) + 3.0212 * np.exp(-0.007463 * v)
        )


def test_da_tau_mna_pole_is_guarded():
    """Spec 11: the raw tau_mNa is singular at V_p = -38.7272 mV and <= 0 just above it.

    (The spec says for 1.3e-4 < V - V_p < 3.5e-3 mV; the formula gives 1.326e-4 to 2.877e-3 mV.)
    """
    assert np.isclose(V_POLE, -38.7272, atol=1e-4)
    tau = DA.function(DA.gate_by_name["m_Na"].tau_ms)
    offsets = np.concatenate((np.linspace(-0.2, 0.2, 4001), [0.0, 1.3e-4, 2e-4, 1e-3, 2.8e-3, 3.4e-3, -1e-9, 1e-9]))
    v = V_POLE + offsets
    raw, guarded = _raw_tau_m_na(v), tau(v)
    assert (raw[(offsets >= 1.4e-4) & (offsets <= 2.8e-3)] <= 0).all()  # the trap exists in the raw formula ...
    assert np.isfinite(guarded).all() and (guarded > 0).all()  # ... and not in the declared one
    # Inside the band: the straight line between the values at V_p -/+ 0.05 mV (about 0.206 and 0.229 ms).
    band = np.abs(offsets) < 0.05
    assert guarded[band].min() >= 0.206 and guarded[band].max() <= 0.2293
    assert np.all(np.diff(guarded[band][np.argsort(offsets[band])]) >= 0)
    # Outside the band: the raw formula itself (so within 0.03 ms of it, in fact to rounding).
    outside = ~band
    np.testing.assert_allclose(guarded[outside], raw[outside], rtol=1e-10)
    # Where the raw formula is still smooth (0.02 <= |V - V_p| < 0.05 mV) the line stays within 0.03 ms of it.
    smooth = band & (np.abs(offsets) >= 0.02)
    assert np.abs(guarded[smooth] - raw[smooth]).max() < 0.03
    # Far from the pole (the whole physiological range) nothing changes.
    v_far = np.concatenate((np.linspace(-120.0, V_POLE - 0.05, 500), np.linspace(V_POLE + 0.05, 60.0, 500)))
    np.testing.assert_allclose(tau(v_far), _raw_tau_m_na(v_far), rtol=1e-10)
    assert DA.tau_fast_ms == DA.gate_by_name["m_Na"].tau_ms


def _da_rhs_from_spec(y, gbar):
    """dy/dt of the DA model transcribed independently from spec 2.1 (3-state ERG written with its rates)."""
    v, m, h, n, m_cal, m_can, o, i = y
    g_na, g_kd, g_cal, g_can, g_erg, g_nmda, g_leak = gbar
    block = 1.0 / (1.0 + 1.4 * np.exp(-0.08 * v) / 10.0)
    currents = (
        g_na * m**3 * h * (v - 60.0)
        + g_kd * n**3 * (v + 85.0)
        + g_cal * m_cal**2 * (v - 60.0)
        + g_can * m_can * (v - 60.0)
        + g_erg * o * (v + 85.0)
        + g_nmda * (v - 0.0) * block
        + g_leak * (v + 50.0)
    )
    tau_m = _raw_tau_m_na(v)
    tau_h = 0.4 + 1.0 / (0.00050754 * np.exp(-0.063213 * v) + 9.7529 * np.exp(0.13442 * v))
    a0, b0, ai, bi = _erg_rates(v)
    return np.array(
        [
            -currents,
            (_sigmoid(v, 0, 1, -9.7264, 30.0907) - m) / tau_m,
            (_sigmoid(v, 0, 1, 10.7665, 54.0289) - h) / tau_h,
            (_sigmoid(v, 0, 1, -12, 25) - n) / _sigmoid(v, 20, -18, -10, 38),
            (_sigmoid(v, 0, 1, -2, 50) - m_cal) / _sigmoid(v, 30, -28, -3, 45),
            (_sigmoid(v, 0, 1, -7, 30) - m_can) / _sigmoid(v, 30, -25, -6, 55),
            a0 * (1 - o - i) + bi * i - o * (ai + b0),
            ai * o - bi * i,
        ]
    )


def test_da_rhs_matches_spec_equations():
    rng = np.random.default_rng(2)
    gbar = np.array([34.12, 13.23, 0.02157, 0.05603, 0.2095, 0.01155, 0.01237])
    rhs = make_rhs(DA, gbar)
    for v in (-90.0, -55.5, -20.0, 30.0):  # away from the tau_mNa guard band
        y = np.concatenate(([v], rng.uniform(0.01, 0.99, 5), rng.uniform(0.0, 0.4, 2)))
        np.testing.assert_allclose(rhs(0.0, y), _da_rhs_from_spec(y, gbar), rtol=1e-10, atol=1e-13)


# ---------------------------------------------------------------------------------------------------------- common
def test_get_model():
    assert get_model("STG") is STG and get_model("da") is DA and get_model(DA) is DA
    with pytest.raises(ValueError, match="unknown model 'hh'.*da.*stg"):
        get_model("hh")
    with pytest.raises(ValueError, match="has no channel 'Nap'.*Na, Kd"):
        STG.channel_index("Nap")


def test_leak_is_last_and_gateless():
    for model in (STG, DA):
        assert model.conductance_names[-1] == "leak" and model.channels[-1].gates == ()
        assert model.leak_index == model.n_channels - 1
