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

import dataclasses
import hashlib
import re
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
class CompensationCase:
    """One branch of a :class:`CompensationRule`: when ``dic comparison threshold`` holds, compensate ``channels``.

    Attributes
    ----------
    dic : str
        "g_s" or "g_u": the target DIC the condition tests.
    comparison : str
        "<" or ">=".
    threshold : float
        Value the target is compared with.
    channels : tuple of str
        The pair of channels compensated when the condition holds.
    """

    dic: str
    comparison: str
    threshold: float
    channels: tuple[str, ...]

    def __post_init__(self):
        if self.dic not in ("g_s", "g_u") or self.comparison not in ("<", ">="):
            raise ValueError(
                f"a compensation case tests 'g_s' or 'g_u' with '<' or '>='; got {self.dic!r} {self.comparison!r}"
            )

    def applies(self, g_s: float, g_u: float) -> bool:
        value = g_s if self.dic == "g_s" else g_u
        return value < self.threshold if self.comparison == "<" else value >= self.threshold


@dataclass(frozen=True)
class CompensationRule:
    """Which channels a degenerate population compensates for a target, and where the solver starts them.

    The first case whose condition holds gives the pair; ``otherwise`` is the pair when none does. With a g_f target,
    ``fast_channel`` is compensated as a third channel.

    Attributes
    ----------
    cases : tuple of CompensationCase
        Tested in order.
    otherwise : tuple of str
        Pair used when no case applies.
    fast_channel : str | None
        Channel added for a g_f target (None: g_f targets need explicit channels).
    priors : tuple of (str, float, float)
        (channel, intercept, slope): a compensated channel starts at max(intercept + slope * g_s, 0) instead of its
        base value. Only the start of the fixed-point iteration (channels feeding a concentration); the converged
        solution does not depend on it.
    """

    cases: tuple[CompensationCase, ...]
    otherwise: tuple[str, ...]
    fast_channel: str | None = None
    priors: tuple[tuple[str, float, float], ...] = ()

    def channels_for(self, g_s: float, g_u: float, g_f: float | None = None) -> tuple[str, ...]:
        """Channels to compensate for a (g_f,) g_s, g_u target."""
        pair = next((case.channels for case in self.cases if case.applies(g_s, g_u)), self.otherwise)
        if g_f is None:
            return tuple(pair)
        if self.fast_channel is None:
            raise ValueError("this compensation rule declares no fast channel for a g_f target; pass channels=")
        return tuple(pair) + (self.fast_channel,)

    @property
    def prior_by_channel(self) -> dict[str, tuple[float, float]]:
        """{channel: (intercept, slope)} of the declared priors."""
        return {name: (intercept, slope) for name, intercept, slope in self.priors}

    def channel_names(self) -> set[str]:
        """Every channel the rule mentions (to check it against a model)."""
        names = set(self.otherwise) | {name for name, _, _ in self.priors}
        names.update(name for case in self.cases for name in case.channels)
        if self.fast_channel is not None:
            names.add(self.fast_channel)
        return names


def _canonical(value) -> str:
    """Unambiguous text of a declaration value: dataclasses by field, dicts sorted by key, floats by repr.

    Every value is tagged with its type so that 1, 1.0, "1" and True give different text (they give different
    generated code or different lookups).
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = ",".join(f"{f.name}={_canonical(getattr(value, f.name))}" for f in dataclasses.fields(value))
        return f"{type(value).__name__}({fields})"
    if isinstance(value, dict):
        items = sorted((_canonical(key), _canonical(item)) for key, item in value.items())
        return "{" + ",".join(f"{key}:{item}" for key, item in items) + "}"
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__}[" + ",".join(_canonical(item) for item in value) + "]"
    if isinstance(value, np.ndarray):
        return (
            f"ndarray[{value.dtype.str}{value.shape}:" + ",".join(_canonical(x) for x in value.ravel().tolist()) + "]"
        )
    if isinstance(value, np.generic):
        return _canonical(value.item())
    if value is None or isinstance(value, (bool, int, float, str)):
        return f"{type(value).__name__}:{value!r}"
    raise TypeError(f"cannot serialise a model declaration value of type {type(value).__name__}: {value!r}")


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
    # Channel choice and solver start of degenerate populations (population.default_compensation_channels).
    compensation: CompensationRule | None = None

    def __post_init__(self):
        if self.compensation is not None:
            unknown = self.compensation.channel_names() - set(self.conductance_names)
            if unknown:
                raise ValueError(
                    f"model {self.name!r}: its compensation rule names channels it lacks: {', '.join(sorted(unknown))}"
                )

    # ---------------------------------------------------------------- identity
    @cached_property
    def digest(self) -> str:
        """sha256 (hex) of the whole declaration, name included: the key of every per-model cache.

        Two models are equal exactly when their digests are equal, so a variant made with ``dataclasses.replace``
        (another constant, gate or range) never shares a cached sensitivity, kernel or table with the original.
        Computed once per object: a declaration is immutable (build variants with ``dataclasses.replace`` rather
        than mutating ``constants`` or ``extra`` in place, which the cached digest would not see).
        """
        return hashlib.sha256(_canonical(self).encode()).hexdigest()

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

    def free_names(self, expression: str) -> tuple[str, ...]:
        """Arguments an expression needs among V, the concentrations and the gate states (in that order)."""
        tokens = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", expression))
        candidates = ["V"] + [c.name for c in self.concentrations] + [g.name for g in self.gates]
        return tuple(name for name in candidates if name in tokens)

    def __hash__(self) -> int:
        return hash(self.digest)

    def __eq__(self, other) -> bool:
        if self is other:
            return True
        return isinstance(other, Model) and other.digest == self.digest

    def __repr__(self) -> str:
        return f"Model({self.name!r}: {', '.join(self.conductance_names)}; V_th={self.v_th_mV} mV)"

    # ---------------------------------------------------------------- steady states and initial state
    def steady_state_gates(self, v_mV, concentrations: dict | None = None) -> dict[str, np.ndarray]:
        """x_inf of every gate at voltage(s) ``v_mV`` (concentrations given as {name: value})."""
        arguments = {"V": np.asarray(v_mV, dtype=float)}
        arguments.update(concentrations or {})
        out = {}
        for gate in self.gates:
            names = self.free_names(gate.inf)
            out[gate.name] = self.function(gate.inf, names)(*[arguments[n] for n in names])
        return out

    def initial_state(self) -> np.ndarray:
        """Initial state vector in :attr:`state_names` order: V0, gates at steady state at V0, concentrations."""
        concentrations = {c.name: c.initial for c in self.concentrations}
        steady = self.steady_state_gates(self.v_init_mV, concentrations)
        values = [self.v_init_mV] + [float(steady[g.name]) for g in self.dynamic_gates]
        values += [c.initial for c in self.concentrations]
        return np.array(values, dtype=float)


_COMPILED: dict = {}  # (model digest, expression, arguments) -> function: constants are baked into the function


def _compile(model: Model, expression: str, arguments: tuple[str, ...]):
    key = (model.digest, expression, arguments)
    function = _COMPILED.get(key)
    if function is None:
        source = f"lambda {', '.join(arguments)}: ({expression}) + 0.0 * V" if "V" in arguments else None
        if source is None:
            source = f"lambda {', '.join(arguments)}: {expression}"
        function = eval(source, dict(model._namespace))  # noqa: S307 - expressions are package constants
        _COMPILED[key] = function
    return function
