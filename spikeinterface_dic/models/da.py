"""The midbrain dopaminergic neuron model (Qian et al. 2014) as implemented by Brandoit et al. (method spec section 2).

Deviations from the released code, both fixes of documented bugs:
- o_ERG starts at its steady state o_inf(V0) (the original used the rate constant a0(V0));
- tau_mNa has a spurious pole at V = -38.7272 mV (rounded coefficients, spec section 11). On |V - V_p| < 0.05 mV it is
  replaced by the straight line between its values at V_p -/+ 0.05 mV, which leaves spike trains unchanged.
"""

import numpy as np

from .base import Channel, CompensationCase, CompensationRule, Gate, Model, sigmoid

_V_POLE = -19.565 / 0.5052


def _raw_tau_m_na(v: str) -> str:
    return f"(0.01 + 1.0/(-(15.6504 + 0.4043*{v})/(exp(-19.565 - 0.5052*{v}) - 1.0) + 3.0212*exp(-0.007463*{v})))"


def _guarded_tau_m_na() -> str:
    raw = eval("lambda V: " + _raw_tau_m_na("V"), {"exp": np.exp})  # noqa: S307
    low, high = float(raw(_V_POLE - 0.05)), float(raw(_V_POLE + 0.05))
    inside = f"(1.0*(abs(V - ({_V_POLE!r})) < 0.05))"
    line = f"({low!r} + ({high - low!r})*(V - ({_V_POLE - 0.05!r}))/0.1)"
    # Outside the guard band the raw formula is evaluated at V; inside, at a shifted V (so that it stays finite)
    # and discarded.
    return f"({inside}*{line} + (1.0 - {inside})*{_raw_tau_m_na(f'(V + 0.2*{inside})')})"


_A0 = "(0.0036*exp(0.0759*V))"
_B0 = "(1.2523e-05*exp(-0.0671*V))"
_AI = "(0.1*exp(0.1189*V))"
_BI = "(0.003*exp(-0.0733*V))"
_ERG_DENOMINATOR = f"({_A0}*({_AI} + {_BI}) + {_B0}*{_BI})"

DA = Model(
    name="da",
    description="Midbrain dopaminergic neuron (Qian et al. 2014), 7 conductances, 3-state ERG, instant NMDA block",
    gates=(
        Gate("m_Na", sigmoid(0, 1, -9.7264, 30.0907), _guarded_tau_m_na()),
        Gate(
            "h_Na", sigmoid(0, 1, 10.7665, 54.0289), "(0.4 + 1.0/(0.00050754*exp(-0.063213*V) + 9.7529*exp(0.13442*V)))"
        ),
        Gate("n_Kd", sigmoid(0, 1, -12, 25), sigmoid(20, -18, -10, 38)),
        Gate("m_CaL", sigmoid(0, 1, -2, 50), sigmoid(30, -28, -3, 45)),
        Gate("m_CaN", sigmoid(0, 1, -7, 30), sigmoid(30, -25, -6, 55)),
        # 3-state ERG (closed, open, inactivated): do/dt = a0(1-o-i) + bi i - o(ai+b0), di/dt = ai o - bi i, written as
        # relaxations with V-only time constants so that the simulator can use exact exponential updates.
        Gate(
            "o_ERG",
            f"({_A0}*{_BI}/{_ERG_DENOMINATOR})",
            f"(1.0/({_A0} + {_AI} + {_B0}))",
            dynamic_inf=f"(({_A0} + ({_BI} - {_A0})*i_ERG)/({_A0} + {_AI} + {_B0}))",
            dic_timescale="ultraslow",
        ),
        Gate("i_ERG", f"({_A0}*{_AI}/{_ERG_DENOMINATOR})", f"(1.0/{_BI})", dynamic_inf=f"({_AI}*o_ERG/{_BI})"),
        Gate("B_NMDA", "(1.0/(1.0 + Mg*exp(-0.08*V)/10.0))", None, dic_timescale="fast"),
    ),
    channels=(
        Channel("Na", (("m_Na", 3), ("h_Na", 1)), "E_Na"),
        Channel("Kd", (("n_Kd", 3),), "E_K"),
        Channel("CaL", (("m_CaL", 2),), "E_Ca"),
        Channel("CaN", (("m_CaN", 1),), "E_Ca"),
        Channel("ERG", (("o_ERG", 1),), "E_K"),
        Channel("NMDA", (("B_NMDA", 1),), "E_NMDA"),
        Channel("leak", (), "E_leak"),
    ),
    constants={"E_Na": 60.0, "E_K": -85.0, "E_Ca": 60.0, "E_leak": -50.0, "E_NMDA": 0.0, "Mg": 1.4},
    v_th_mV=-55.5,
    v_init_mV=-90.0,
    tau_fast_ms=_guarded_tau_m_na(),
    tau_slow_ms=sigmoid(20, -18, -10, 38),  # tau_nKd
    tau_ultraslow_ms="(100.0 + 0.0*V)",
    default_dt_ms=0.0125,
    default_duration_ms=12000.0,
    default_transient_ms=3000.0,
    references="Qian K et al. (2014) PLoS ONE 9:e104722; Brandoit et al. (2025) arXiv 2509.12783",
    # The channel choice of the authors' app: ERG carries g_u; CaL reaches negative g_s, Kd positive g_s.
    compensation=CompensationRule(
        cases=(CompensationCase("g_s", "<", 0.0, ("ERG", "CaL")),), otherwise=("ERG", "Kd"), fast_channel="Na"
    ),
    extra={
        "spiking_ranges": {"leak": (0.0087, 0.017), "Kd": (6.0, 10.0), "CaL": (0.015, 0.075)},
        "spiking_solved": ("Na", "CaN", "ERG"),
        "spiking_targets": (-12.95, 0.5, 5.0),
        "fixed": {"NMDA": 0.012},
        "mc_ranges": {
            "Na": (0, 60),
            "Kd": (0, 20),
            "CaL": (0, 0.1),
            "CaN": (0, 0.12),
            "ERG": (0, 0.25),
            "NMDA": (0, 0.1846),
            "leak": (0, 0.02),
        },
        "training_g_s": (-10.0, 15.0),
        # Published example conductance sets (method spec section 9), columns in conductance_names order.
        "example_sets": {
            "fast": (29.3362923, 5.55357599, 0.187373564, 0.0328792632, 0.0888513699, 0.00997158885, 0.0106779095),
            "tonic": (34.1175957, 13.2286701, 0.0215680320, 0.0560283847, 0.209517032, 0.0115521662, 0.0123704448),
            "bursting": (25.1758766, 7.03265238, 0.112492353, 0.0482002124, 0.0777861327, 0.00848305039, 0.00908393320),
        },
        "training_g_u": (0.0, 20.0),
    },
)
