"""Conductance-based models declared as data.

A model is a list of gating variables (each with a steady state and a time constant written as expression strings),
a list of channels (a product of gate powers times a driving force), optional concentrations (STG calcium), the
reversal potentials and the DIC reference time constants. The DIC code (:mod:`spikeinterface_dic.dic`), the population
generator, the numba kernel and the reference right-hand side are all generated from this one declaration.

Expressions are plain arithmetic strings in ``V`` (mV), state names and model constants, using ``exp`` and ``abs``
only, so that they evaluate unchanged with numpy (real or complex, for complex-step derivatives), inside generated numba
code, and in Brian2 equations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


def sigmoid(A: float, B: float, C: float, D: float, v: str = "V") -> str:
    """Expression for the generic sigmoid A + B / (1 + exp((v + D) / C)) of the method spec."""
    return f"({A!r} + {B!r}/(1.0 + exp(({v} + {D!r})/({C!r}))))"


@dataclass(frozen=True)
class Gate:
    """A gating variable obeying dx/dt = (x_inf_dynamic - x) / (k * tau(V)).

    Attributes
    ----------
    name : str
        State name (a valid identifier, unique in the model).
    inf : str
        Steady state x_inf(V) (may use concentrations such as ``Ca``). Used for DICs and initial conditions.
    tau_ms : str | None
        Time constant in ms as a function of V only. ``None`` marks an instantaneous gate (x = inf at all times,
        e.g. the NMDA magnesium block); it has no state in the simulator.
    dynamic_inf : str | None
        Relaxation target used in the simulator when it differs from ``inf`` (multi-state kinetic schemes such as
        the 3-state ERG channel, where the target depends on another state). ``None`` means ``inf``.
    dic_timescale : str
        "gate" (weights from ``tau_ms``), "fast" (forced w_fs = w_su = 1) or "ultraslow" (forced w_fs = w_su = 0).
    """

    name: str
    inf: str
    tau_ms: str | None
    dynamic_inf: str | None = None
    dic_timescale: str = "gate"


@dataclass(frozen=True)
class Channel:
    """An ionic current I = gbar * prod(gate ** power) * (V - E)."""

    name: str
    gates: tuple[tuple[str, int], ...]
    reversal: str  # name of a constant in Model.constants, e.g. "E_Na"


@dataclass(frozen=True)
class Concentration:
    """A concentration with dC/dt = (beta - alpha * sum(I_sources) - C) / tau (the STG calcium equation)."""

    name: str
    tau_ms: float
    alpha: float
    beta: float
    source_channels: tuple[str, ...]
    initial: float


@dataclass(frozen=True)
class Model:
    """A conductance-based single-compartment model declared as data (see module docstring)."""

    name: str
    description: str
    gates: tuple[Gate, ...]
    channels: tuple[Channel, ...]  # the leak is the last channel and has no gates
    constants: dict
    v_th_mV: float
    v_init_mV: float
    tau_fast_ms: str  # DIC reference time constants (functions of V)
    tau_slow_ms: str
    tau_ultraslow_ms: str
    concentrations: tuple[Concentration, ...] = ()
    capacitance_uF_cm2: float = 1.0
    spike_up_mV: float = 10.0  # onset: upward crossing of +10 mV
    spike_down_mV: float = 0.0  # repolarisation: downward crossing of 0 mV
    default_dt_ms: float = 0.025
    # Integration scheme of the numba kernel (see simulate.codegen): 1, 2 (exponential midpoint) or "staggered".
    default_scheme: int | str = 2
    default_duration_ms: float = 6000.0
    default_transient_ms: float = 3000.0
    references: str = ""
    extra: dict = field(default_factory=dict)

    # ---------------------------------------------------------------- names
    @property
    def conductance_names(self) -> tuple[str, ...]:
        return tuple(channel.name for channel in self.channels)

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def leak_index(self) -> int:
        return self.n_channels - 1

    @cached_property
    def gate_by_name(self) -> dict[str, Gate]:
        return {gate.name: gate for gate in self.gates}

    @property
    def dynamic_gates(self) -> tuple[Gate, ...]:
        return tuple(gate for gate in self.gates if gate.tau_ms is not None)

    @property
    def state_names(self) -> tuple[str, ...]:
        """Simulator state order: V, the dynamic gates in declaration order, then concentrations."""
        return ("V",) + tuple(g.name for g in self.dynamic_gates) + tuple(c.name for c in self.concentrations)

    def channel_index(self, name: str) -> int:
        try:
            return self.conductance_names.index(name)
        except ValueError:
            raise ValueError(
                f"model {self.name!r} has no channel {name!r}; its channels are {', '.join(self.conductance_names)}"
            ) from None

    # ---------------------------------------------------------------- numeric evaluation
    @cached_property
    def _namespace(self) -> dict:
        namespace = {"exp": np.exp, "abs": np.abs}
        namespace.update(self.constants)
        return namespace

    def function(self, expression: str, arguments: tuple[str, ...] = ("V",)):
        """Compile an expression of this model into a numpy function of the given arguments."""
        return _compile(self, expression, arguments)

    def __hash__(self) -> int:
        return hash(self.name)

    def __eq__(self, other) -> bool:
        return isinstance(other, Model) and other.name == self.name

    def __repr__(self) -> str:
        return f"Model({self.name!r}: {', '.join(self.conductance_names)}; V_th={self.v_th_mV} mV)"

    # ---------------------------------------------------------------- steady states and initial state
    def steady_state_gates(self, v_mV, concentrations: dict | None = None) -> dict[str, np.ndarray]:
        """x_inf of every gate at voltage(s) ``v_mV`` (concentrations given as {name: value})."""
        arguments = {"V": np.asarray(v_mV, dtype=float)}
        arguments.update(concentrations or {})
        out = {}
        for gate in self.gates:
            names = _free_names(self, gate.inf)
            out[gate.name] = self.function(gate.inf, names)(*[arguments[n] for n in names])
        return out

    def initial_state(self) -> np.ndarray:
        """Initial state vector in :attr:`state_names` order: V0, gates at steady state at V0, concentrations."""
        concentrations = {c.name: c.initial for c in self.concentrations}
        steady = self.steady_state_gates(self.v_init_mV, concentrations)
        values = [self.v_init_mV] + [float(steady[g.name]) for g in self.dynamic_gates]
        values += [c.initial for c in self.concentrations]
        return np.array(values, dtype=float)


_COMPILED: dict = {}


def _free_names(model: Model, expression: str) -> tuple[str, ...]:
    """Arguments an expression needs among V, the concentrations and the gate states."""
    import re

    tokens = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", expression))
    candidates = ["V"] + [c.name for c in model.concentrations] + [g.name for g in model.gates]
    return tuple(name for name in candidates if name in tokens)


def _compile(model: Model, expression: str, arguments: tuple[str, ...]):
    key = (model.name, expression, arguments)
    function = _COMPILED.get(key)
    if function is None:
        source = f"lambda {', '.join(arguments)}: ({expression}) + 0.0 * V" if "V" in arguments else None
        if source is None:
            source = f"lambda {', '.join(arguments)}: {expression}"
        function = eval(source, dict(model._namespace))  # noqa: S307 - expressions are package constants
        _COMPILED[key] = function
    return function
