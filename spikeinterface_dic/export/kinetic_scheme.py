"""Kinetic schemes recovered from coupled gates of a declaration (DA's 3-state ERG channel), for exporters that
need transition rates (NeuroML2's ``ionChannelKS``) rather than relaxations.

The declaration writes a channel's coupled gates x (their targets read each other) as relaxations
x' = (x_inf_dyn - x) / tau_x, which must be affine in the gates: x' = c0_x + sum_g c_xg g. Read as a kinetic
scheme over the states {gates} + {rest} (rest = 1 - sum of gates), with transition rates k_a->b(V) >= 0:

    x' = k_rest->x (1 - sum g) + sum_{g != x} k_g->x g - (sum_b k_x->b) x

so, matching coefficients: k_rest->x = c0_x; k_g->x = c_xg + c0_x (g != x); and the rate back to rest is what
remains of x's total outflow: k_x->rest = -c_xx - c0_x - sum_{g != x} k_x->g. The rates are derived symbolically
(sympy) from the declaration's expressions and checked to be >= 0 on -120 ... 60 mV. DA's ERG gives
k_rest->o = a0, k_o->rest = b0, k_o->i = a_i, k_i->o = b_i and no rest <-> i transition: Qian et al.'s scheme.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..models import Model
from .expressions import expression_names

REST_STATE = "rest"


@dataclass(frozen=True)
class KineticScheme:
    """States and transitions of a channel's coupled gates.

    Attributes
    ----------
    states : tuple of str
        The gates, then ``REST_STATE``.
    open_states : tuple of str
        The states the channel's current is proportional to (its gates of power 1).
    rates : dict
        {(from, to): expression in V (1/ms, model time)}; absent pairs have rate 0 both ways.
    """

    states: tuple
    open_states: tuple
    rates: dict


def coupled_gates(model: Model, channel) -> list:
    """The channel's gates whose relaxation targets read other gates, with the gates they read (closure)."""
    gate_names = {gate.name for gate in model.gates}
    group = []
    pending = [name for name, _ in channel.gates]
    while pending:
        name = pending.pop(0)
        if name in group:
            continue
        gate = model.gate_by_name[name]
        reads = expression_names(gate.dynamic_inf or gate.inf) & gate_names
        if reads or group:
            group.append(name)
        pending.extend(sorted(reads - set(group)))
    return group


def kinetic_scheme(model: Model, channel) -> KineticScheme:
    """The kinetic scheme of a channel's coupled gates; ValueError (with the reason) when the gates are not an
    affine system with non-negative transition rates, or the current is not one open state to the first power."""
    import sympy as sp

    group = coupled_gates(model, channel)
    if not group:
        raise ValueError(f"channel {channel.name} has no coupled gates")
    powers = dict(channel.gates)
    opened = tuple(name for name in group if name in powers)
    if len(channel.gates) != 1 or powers.get(opened[0] if opened else None) != 1:
        raise ValueError(f"channel {channel.name}: a kinetic-scheme export needs a current g * open_state (power 1)")
    symbols = {name: sp.Symbol(name) for name in ["V", *group]}
    namespace = {**symbols, "exp": sp.exp, "abs": sp.Abs}
    namespace.update({name: sp.Float(value) for name, value in model.constants.items()})
    right_hand_sides = {}
    for name in group:
        gate = model.gate_by_name[name]
        if gate.tau_ms is None:
            raise ValueError(f"gate {name} of channel {channel.name} is instantaneous: no kinetic scheme")
        target = sp.sympify(gate.dynamic_inf or gate.inf, locals=namespace)
        tau = sp.sympify(gate.tau_ms, locals=namespace)
        right_hand_sides[name] = (target - symbols[name]) / tau
    constant, linear = {}, {}
    for x, rhs in right_hand_sides.items():
        constant[x] = sp.simplify(rhs.subs({symbols[g]: 0 for g in group}))
        for g in group:
            coefficient = sp.simplify(sp.diff(rhs, symbols[g]))
            if coefficient.free_symbols & {symbols[h] for h in group}:
                raise ValueError(f"gate {x} of channel {channel.name}: its rate is not affine in the gates")
            linear[x, g] = coefficient
    rates = {}
    for x in group:
        rates[REST_STATE, x] = constant[x]
        for g in group:
            if g != x:
                rates[g, x] = sp.simplify(linear[x, g] + constant[x])
    for x in group:
        outflow = -linear[x, x] - constant[x] - sum(rates[x, g] for g in group if g != x)
        rates[x, REST_STATE] = sp.simplify(outflow)
    grid = np.linspace(-120.0, 60.0, 361)
    kept = {}
    for pair, expression in rates.items():
        if expression == 0:
            continue
        values = sp.lambdify(symbols["V"], expression, "numpy")(grid) * np.ones_like(grid)
        if not np.all(values >= -1e-12 * np.max(np.abs(values))):
            raise ValueError(f"channel {channel.name}: transition {pair[0]} -> {pair[1]} has a negative rate")
        kept[pair] = str(expression)
    return KineticScheme(states=(*group, REST_STATE), open_states=opened, rates=kept)


__all__ = ["KineticScheme", "REST_STATE", "coupled_gates", "kinetic_scheme"]
