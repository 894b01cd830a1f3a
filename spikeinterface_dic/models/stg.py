"""The STG model (Liu et al. 1998) exactly as implemented by Brandoit et al. (method spec section 1).

Published quirks that define the model are kept: the calcium reversal is a constant E_Ca = 80 mV (no Nernst
equation), and the calcium equation is dCa/dt = (-0.94 (I_CaT + I_CaS) - Ca + 0.05) / 20.
"""

from .base import Channel, CompensationCase, CompensationRule, Concentration, Gate, Model, sigmoid

_TAU_M_CAS = "(1.4 + 7.0/(exp((V + 27.0)/10.0) + exp((V + 70.0)/(-13.0))))"
_TAU_H_CAS = "(60.0 + 150.0/(exp((V + 55.0)/9.0) + exp((V + 65.0)/(-16.0))))"

STG = Model(
    name="stg",
    description="Stomatogastric ganglion neuron (Liu et al. 1998), 8 conductances, 13 states, E_Ca = 80 mV",
    gates=(
        Gate("m_Na", sigmoid(0, 1, -5.29, 25.5), sigmoid(1.32, -1.26, -25, 120)),
        Gate("h_Na", sigmoid(0, 1, 5.18, 48.9), f"({sigmoid(0, 0.67, -10, 62.9)}*{sigmoid(1.5, 1, 3.6, 34.9)})"),
        Gate("m_Kd", sigmoid(0, 1, -11.8, 12.3), sigmoid(7.2, -6.4, -19.2, 28.3)),
        Gate("m_CaT", sigmoid(0, 1, -7.2, 27.1), sigmoid(21.7, -21.3, -20.5, 68.1)),
        Gate("h_CaT", sigmoid(0, 1, 5.5, 32.1), sigmoid(105, -89.8, -16.9, 55)),
        Gate("m_CaS", sigmoid(0, 1, -8.1, 33), _TAU_M_CAS),
        Gate("h_CaS", sigmoid(0, 1, 6.2, 60), _TAU_H_CAS),
        Gate("m_KCa", f"(Ca/(Ca + 3.0)*{sigmoid(0, 1, -12.6, 28.3)})", sigmoid(90.3, -75.1, -22.7, 46)),
        Gate("m_A", sigmoid(0, 1, -8.7, 27.2), sigmoid(11.6, -10.4, -15.2, 32.9)),
        Gate("h_A", sigmoid(0, 1, 4.9, 56.9), sigmoid(38.6, -29.2, -26.5, 38.9)),
        Gate("m_H", sigmoid(0, 1, 6, 70), sigmoid(272, 1499, -8.73, 42.2)),
    ),
    channels=(
        Channel("Na", (("m_Na", 3), ("h_Na", 1)), "E_Na"),
        Channel("Kd", (("m_Kd", 4),), "E_K"),
        Channel("CaT", (("m_CaT", 3), ("h_CaT", 1)), "E_Ca"),
        Channel("CaS", (("m_CaS", 3), ("h_CaS", 1)), "E_Ca"),
        Channel("KCa", (("m_KCa", 4),), "E_K"),
        Channel("A", (("m_A", 3), ("h_A", 1)), "E_K"),
        Channel("H", (("m_H", 1),), "E_H"),
        Channel("leak", (), "E_leak"),
    ),
    concentrations=(
        Concentration("Ca", tau_ms=20.0, alpha=0.94, beta=0.05, source_channels=("CaT", "CaS"), initial=0.5),
    ),
    constants={"E_Na": 50.0, "E_K": -80.0, "E_Ca": 80.0, "E_H": -20.0, "E_leak": -50.0},
    v_th_mV=-51.0,
    v_init_mV=-70.0,
    tau_fast_ms=sigmoid(1.32, -1.26, -25, 120),  # tau_mNa
    tau_slow_ms=sigmoid(7.2, -6.4, -19.2, 28.3),  # tau_mKd
    tau_ultraslow_ms=sigmoid(272, 1499, -8.73, 42.2),  # tau_mH
    default_dt_ms=0.05,
    default_scheme="staggered",  # second order with one table lookup per step; same accuracy as midpoint at 0.05 ms
    default_duration_ms=6000.0,
    default_transient_ms=3000.0,
    references="Liu et al. (1998) J Neurosci 18:2309; Brandoit et al. (2025) arXiv 2509.12783",
    # Spec 4.2 step B: A and H reach positive g_s; CaS is needed for negative g_s and, with A, for negative g_u.
    compensation=CompensationRule(
        cases=(CompensationCase("g_u", "<", 0.0, ("CaS", "A")), CompensationCase("g_s", ">=", 0.0, ("A", "H"))),
        otherwise=("CaS", "H"),
        fast_channel="Na",
        # Authors' linear fits (spec 4.2 step C) of the compensated g_CaS / g_CaT against the target g_s.
        priors=(("CaS", 34.12021074772369, -2.3296612301271464), ("CaT", 24.6, -5.14)),
    ),
    extra={
        # Ranges of the base 'spiking' population (Fyon et al. 2024), in mS/cm2.
        "spiking_ranges": {
            "leak": (0.007, 0.014),
            "Kd": (70.0, 140.0),
            "CaT": (3.0, 7.0),
            "CaS": (6.0, 22.0),
            "KCa": (140.0, 180.0),
        },
        "spiking_solved": ("Na", "A", "H"),
        "spiking_targets": (-6.2, 4.0, 5.0),
        "fixed": {},
        # Monte-Carlo ranges of the dataset generator (spec 1.6), in mS/cm2.
        "mc_ranges": {
            "Na": (0, 8000),
            "Kd": (0, 350),
            "CaT": (0, 12),
            "CaS": (0, 50),
            "KCa": (0, 250),
            "A": (0, 600),
            "H": (0, 0.7),
            "leak": (0, 0.02),
        },
        "training_g_s": (-20.0, 20.0),
        # Published example conductance sets (method spec section 9), columns in conductance_names order.
        "example_sets": {
            "S1": (6600.82471, 125.961075, 4.14918208, 18.3416405, 159.677516, 413.833466, 0.321589451, 0.00957712096),
            "S2": (2817.51002, 145.852520, 8.42704420, 14.5818832, 106.575443, 151.625062, 0.367655917, 0.00947267955),
            "S3": (4759.32851, 263.884496, 4.38604312, 26.8271507, 93.1089184, 494.869664, 0.372942945, 0.0120014004),
            "S4": (4459.32851, 215.422644, 12.6581051, 53.1943005, 116.558824, 415.288208, 0.575437208, 0.0142445689),
        },
        "training_g_u": (0.0, 20.0),
    },
)
