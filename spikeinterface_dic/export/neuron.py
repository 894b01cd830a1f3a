"""NEURON export: NMODL mechanisms generated from a model declaration, and a script that builds one cell per twin.

Mechanisms (one ``.mod`` file per channel, plus one per concentration)
    ``<model>_<channel>``: a density mechanism with RANGE ``gbar`` (S/cm2) and ``k`` (time scale), its gates as
    STATEs relaxing as x' = (x_inf - x) / (k tau(V)) (``cnexp``), instantaneous gates (DA's NMDA block) as
    ASSIGNED values, and the current gbar * prod(x^p) * (v - E) with the declared reversal potential (a constant: the
    models do not use Nernst potentials). A gate belongs to the channel whose gates' expressions read it (DA's
    inactivated ERG state i_ERG lives in ``da_ERG``).
    ``<model>_<concentration>_pool``: the concentration as the inner concentration of a model-specific ion
    ``<model><concentration>`` (STG: ion ``stgca``, variables ``stgcai`` and ``istgca``), dC/dt = (beta - alpha * I -
    C) / (k tau) with I the ion's total current in uA/cm2. The channels that feed it (STG: CaT, CaS) WRITE that ion's
    current instead of a nonspecific current, and the channels whose gates read it (STG: KCa) READ it; so NEURON
    sums exactly the declared source currents, and the ion is private to these mechanisms (NEURON's own ``ca`` and
    its mM units and Nernst potential are left alone). The ion's valence (2) is only a NEURON requirement: no
    Nernst potential is computed from it.

Time scale k
    Every time constant is multiplied by the mechanisms' RANGE ``k`` and the membrane capacitance is C k, so the cell
    is the unscaled model slowed by k: V_k(t) = V_1(t / k), the numba kernel's definition (temperature / Q10 would
    not scale the capacitance, and is not used).

Script ``twins_neuron.py``
    Reads ``twins.json`` (conductances in mS/cm2, k, window), builds one single-compartment section per twin
    (L = diam = sqrt(100 / pi) um, area 100 um2; density mechanisms make the area irrelevant), records spike onsets
    with a NetCon at the model's upward threshold (+10 mV for both models) and drops an onset that is not followed by
    a downward crossing of ``spike_down_mV`` (the kernel's rule), and writes their times (s after the transient) to
    a JSON file. Solver: CVODE (variable step, ``--atol``, default 1e-6 on every state) or a fixed step
    (``--dt-ms``, Crank-Nicolson ``secondorder = 2``). No noise: the kernel's Ornstein-Uhlenbeck current is not
    exported (the twins of a run without noise, the default, are deterministic).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..models import Model
from .expressions import Dialect, expression_names, print_expression


def ion_name(model: Model, concentration) -> str:
    """The NEURON ion carrying a model concentration (private to the exported mechanisms)."""
    return f"{model.name}{concentration.name.lower()}"


def mechanism_name(model: Model, channel) -> str:
    return f"{model.name}_{channel.name}"


def pool_name(model: Model, concentration) -> str:
    return f"{model.name}_{concentration.name}_pool"


def channel_gates(model: Model, channel) -> list:
    """The gates a channel's mechanism integrates: its own, and every gate their expressions read (closure)."""
    gate_names = {gate.name for gate in model.gates}
    wanted = [name for name, _ in channel.gates]
    index = 0
    while index < len(wanted):
        gate = model.gate_by_name[wanted[index]]
        for expression in (gate.inf, gate.tau_ms, gate.dynamic_inf):
            for name in sorted(expression_names(expression or "0") & gate_names):
                if name not in wanted:
                    wanted.append(name)
        index += 1
    return [gate for gate in model.gates if gate.name in wanted]


def _check_exportable(model: Model) -> None:
    owner = {}
    for channel in model.channels:
        for gate in channel_gates(model, channel):
            if gate.name in owner:
                raise ValueError(
                    f"model {model.name!r}: gate {gate.name} is read by channels {owner[gate.name]} and {channel.name};"
                    " the NEURON export gives each channel its own mechanism and needs each gate in one channel"
                )
            owner[gate.name] = channel.name
    for channel in model.channels:
        fed = [c.name for c in model.concentrations if channel.name in c.source_channels]
        if len(fed) > 1:
            raise ValueError(f"model {model.name!r}: channel {channel.name} feeds several concentrations {fed}")


class _NmodlDialect(Dialect):
    power = "^"
    functions = {"exp": "exp", "abs": "fabs"}


_COMPARISONS = """
FUNCTION dic_lt(a, b) {
    if (a < b) { dic_lt = 1 } else { dic_lt = 0 }
}
FUNCTION dic_gt(a, b) {
    if (a > b) { dic_gt = 1 } else { dic_gt = 0 }
}
FUNCTION dic_le(a, b) {
    if (a <= b) { dic_le = 1 } else { dic_le = 0 }
}
FUNCTION dic_ge(a, b) {
    if (a >= b) { dic_ge = 1 } else { dic_ge = 0 }
}
"""


def _header(model: Model, title: str) -> str:
    from ..version import __version__

    return (
        f"TITLE {title}\n\nCOMMENT\nGenerated by spikeinterface-dic {__version__} from the declaration of model "
        f"{model.name!r}\n(sha256 {model.digest[:16]}...); do not edit: regenerate with export_twins.\n"
        "Units: v in mV, time in ms, gbar in S/cm2, currents in mA/cm2; k multiplies every time constant (the cell's\n"
        "cm is C k, set by twins_neuron.py).\nENDCOMMENT\n"
    )


def _assignments(targets, dialect) -> tuple[list[str], str]:
    """NMODL assignment lines ``target = expression`` (long sub-expressions in LOCAL temporaries, since NMODL limits
    the length of a line) and the LOCAL declaration they need."""
    lines, temporaries = [], []

    def hoist(text: str) -> str:
        name = f"t{len(temporaries)}"
        temporaries.append(name)
        lines.append(f"    {name} = {text}")
        return name

    for target, expression in targets:
        text = print_expression(expression, dialect, hoist=hoist)
        lines.append(f"    {target} = {text}")
    declaration = f"    LOCAL {', '.join(temporaries)}\n" if temporaries else ""
    return lines, declaration


def channel_mod(model: Model, channel) -> str:
    """NMODL source of one channel's density mechanism."""
    suffix = mechanism_name(model, channel)
    gates = channel_gates(model, channel)
    dynamic = [g for g in gates if g.tau_ms is not None]
    instant = [g for g in gates if g.tau_ms is None]
    names = {"V": "v", **{name: float(value) for name, value in model.constants.items()}}
    names.update({gate.name: gate.name for gate in gates})
    reads, writes = [], None
    for c in model.concentrations:
        names[c.name] = f"{ion_name(model, c)}i"
        if any(c.name in expression_names(e or "0") for g in gates for e in (g.inf, g.tau_ms, g.dynamic_inf)):
            reads.append(c)
        if channel.name in c.source_channels:
            writes = c
    dialect = _NmodlDialect(names)
    reversal = float(model.constants[channel.reversal])
    product = " * ".join(f"{gate}^{power}" if power != 1 else gate for gate, power in channel.gates)
    conductance = f"gbar * {product}" if product else "gbar"

    neuron_block = [f"    SUFFIX {suffix}"]
    ions = {c.name: c for c in reads + ([writes] if writes else [])}
    for c in ions.values():
        ion = ion_name(model, c)
        read = f" READ {ion}i" if c in reads else ""
        write = f" WRITE i{ion}" if c is writes else ""
        neuron_block.append(f"    USEION {ion}{read}{write} VALENCE 2")
    if writes is None:
        neuron_block.append("    NONSPECIFIC_CURRENT i")
    neuron_block.append("    RANGE gbar, k, i" + "".join(f", {g.name}" for g in instant))
    assigned = ["    v (mV)", "    i (mA/cm2)"]
    assigned += [f"    {ion_name(model, c)}i (mM)" for c in reads]
    if writes is not None:
        assigned.append(f"    i{ion_name(model, writes)} (mA/cm2)")
    assigned += [f"    inf_{g.name}\n    tau_{g.name} (ms)" for g in dynamic]
    assigned += [f"    {g.name}" for g in instant]
    rates, rate_locals = _assignments(
        [(g.name, g.inf) for g in instant]
        + [
            (f"{prefix}_{g.name}", e)
            for g in dynamic
            for prefix, e in (("inf", g.dynamic_inf or g.inf), ("tau", g.tau_ms))
        ],
        dialect,
    )
    # Initial state: every gate at its steady state (not the kinetic scheme's relaxation target).
    steady, steady_locals = _assignments([(f"inf_{g.name}", g.inf) for g in dynamic], dialect)
    initial = ["    steady()"] + [f"    {g.name} = inf_{g.name}" for g in dynamic]
    breakpoint = (["    SOLVE states METHOD cnexp"] if dynamic else []) + (["    rates()"] if instant else [])
    breakpoint.append(f"    i = {conductance} * (v - ({reversal!r}))")
    if writes is not None:
        breakpoint.append(f"    i{ion_name(model, writes)} = i")
    parts = [
        _header(model, f"{suffix}: I = {conductance} * (v - ({reversal!r} mV))"),
        "NEURON {\n" + "\n".join(neuron_block) + "\n}\n",
        "UNITS {\n    (mV) = (millivolt)\n    (mA) = (milliamp)\n    (S) = (siemens)\n    (mM) = (milli/liter)\n}\n",
        "PARAMETER {\n    gbar = 0 (S/cm2)\n    k = 1\n}\n",
        "ASSIGNED {\n" + "\n".join(assigned) + "\n}\n",
    ]
    if dynamic:
        parts.append("STATE {\n" + "\n".join(f"    {g.name}" for g in dynamic) + "\n}\n")
    parts.append("INITIAL {\n" + "\n".join(initial if dynamic else []) + ("\n    rates()" if instant else "") + "\n}\n")
    parts.append("BREAKPOINT {\n" + "\n".join(breakpoint) + "\n}\n")
    if dynamic:
        derivative = ["    rates()"] + [
            f"    {g.name}' = (inf_{g.name} - {g.name}) / (k * tau_{g.name})" for g in dynamic
        ]
        parts.append("DERIVATIVE states {\n" + "\n".join(derivative) + "\n}\n")
    if rates:
        parts.append("PROCEDURE rates() {\n" + rate_locals + "\n".join(rates) + "\n}\n")
    if dynamic:
        parts.append("PROCEDURE steady() {\n" + steady_locals + "\n".join(steady) + "\n}\n")
    source = "\n".join(parts)
    if "dic_" in "\n".join(rates + steady):
        source += _COMPARISONS
    return source


def pool_mod(model: Model, concentration) -> str:
    """NMODL source of a concentration's pool: dC/dt = (beta - alpha * I_sources - C) / (k tau), I in uA/cm2."""
    ion = ion_name(model, concentration)
    c = concentration
    return "\n".join(
        [
            _header(
                model,
                f"{pool_name(model, c)}: d{c.name}/dt = ({c.beta!r} - {c.alpha!r} I({', '.join(c.source_channels)}) "
                f"- {c.name}) / (k {float(c.tau_ms)!r} ms)",
            ),
            f"NEURON {{\n    SUFFIX {pool_name(model, c)}\n    USEION {ion} READ i{ion} WRITE {ion}i VALENCE 2\n"
            "    RANGE k\n}\n",
            "UNITS {\n    (mA) = (milliamp)\n    (mM) = (milli/liter)\n}\n",
            "PARAMETER {\n    k = 1\n}\n",
            f"ASSIGNED {{\n    i{ion} (mA/cm2)\n}}\n",
            f"STATE {{\n    {ion}i (mM)\n}}\n",
            f"INITIAL {{\n    {ion}i = {float(c.initial)!r}\n}}\n",
            "BREAKPOINT {\n    SOLVE states METHOD cnexp\n}\n",
            # i<ion> is in mA/cm2 (NEURON's unit); the model's equation reads uA/cm2.
            f"DERIVATIVE states {{\n    {ion}i' = ({float(c.beta)!r} - {float(c.alpha)!r} * (1000.0 * i{ion}) - {ion}i)"
            f" / (k * {float(c.tau_ms)!r})\n}}\n",
        ]
    )


def neuron_model_description(model: Model) -> dict:
    """What the script needs of the declaration (written into twins.json; the script holds no model fact)."""
    return {
        "model": model.name,
        "model_sha256": model.digest,
        "conductance_names": list(model.conductance_names),
        "mechanisms": [mechanism_name(model, channel) for channel in model.channels],
        "pools": [
            {"mechanism": pool_name(model, c), "ion": ion_name(model, c), "initial": float(c.initial)}
            for c in model.concentrations
        ],
        "capacitance_uF_cm2": float(model.capacitance_uF_cm2),
        "v_init_mV": float(model.v_init_mV),
        "spike_up_mV": float(model.spike_up_mV),
        "spike_down_mV": float(model.spike_down_mV),
    }


def write_neuron(model: Model, twins: dict, folder: Path) -> list[Path]:
    """Write the mechanisms, ``twins.json`` and ``twins_neuron.py`` into ``folder``; return the paths written."""
    from .neuron_script import SCRIPT

    _check_exportable(model)
    folder.mkdir(parents=True, exist_ok=True)
    files = {f"{mechanism_name(model, ch)}.mod": channel_mod(model, ch) for ch in model.channels}
    files.update({f"{pool_name(model, c)}.mod": pool_mod(model, c) for c in model.concentrations})
    files["twins.json"] = json.dumps({**neuron_model_description(model), **twins}, indent=1)
    files["twins_neuron.py"] = SCRIPT
    written = []
    for name, text in files.items():
        path = folder / name
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_text(text)
        temporary.replace(path)
        written.append(path)
    return written


def _one_or_each(values):
    """A number when every twin has the same value, else one per twin (twins.json stays simple in the common case)."""
    values = np.atleast_1d(np.asarray(values, dtype=float))
    return float(values[0]) if np.all(values == values[0]) else values.tolist()


def twins_record(unit_id, gbar: np.ndarray, time_scale, duration_s, transient_s, indices) -> dict:
    """The twin part of twins.json (k and windows: one number, or one per twin when they differ)."""
    return {
        "unit_id": str(unit_id),
        "time_scale": _one_or_each(time_scale),
        "duration_s": _one_or_each(duration_s),
        "transient_s": _one_or_each(transient_s),
        "twin_indices": [int(i) for i in indices],
        "gbar_mS_cm2": np.asarray(gbar, dtype=float).tolist(),
    }
