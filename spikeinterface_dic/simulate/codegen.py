"""Generate the numba population kernel of a model from its declaration.

The kernel integrates N neurons (one per row of a conductance matrix) in one compiled loop, parallel over neurons
(``numba.prange``), with no Python in the time loop and only spike times leaving it.

Schemes (all exponential, Rush-Larsen type): every gate relaxes exactly towards its target over a step,
x <- x_inf + (x - x_inf) * exp(-dt / tau(V)); the membrane equation is linear in V once the gates are frozen, so V is
advanced exactly too, V <- V_inf + (V - V_inf) * exp(-dt * G / C) with G the total conductance; calcium likewise with
its constant tau. ``order=1`` freezes everything at t_n (first order); ``order=2`` is the exponential midpoint (rates
at t_n give the state at t_n + dt/2, whose rates advance t_n by dt: two stages per step); ``"staggered"`` keeps the
gates half a step after V and the concentrations (leapfrog): each update then uses rates frozen at the middle of its
interval, which is second order with ONE stage per step (the STG default; models with instantaneous gates or
gate-dependent targets, like DA's ERG scheme, use order 2). Every function of V alone (steady states,
exp(-dt/tau), the NMDA block, the ERG rates) is read from one table sampled every ``table_step_mV`` and interpolated
linearly; V-only sub-expressions of state-dependent targets (KCa's calcium factor, the ERG scheme) are found in the
expression tree and tabulated too.

Cost model per neuron-step and stage: one row of the table (n_columns x 2 doubles, contiguous; the voltage moves slowly
so it stays in cache), n_columns multiply-adds for the interpolation, one exp (the membrane update), ~4 flops per gate,
one division (V_inf). The step is bound by its dependency chain (V -> table -> gates -> conductances -> V), not by
flops: products and sums are written as balanced trees and -dt/C is hoisted, because numba keeps the written order
without fastmath. Two neurons are integrated side by side in each parallel iteration (``LANES``), so that their
independent chains overlap, and the table holds each value next to its increment to the next row (one row read, one
multiply-add per column). STG staggered: 22 columns, 44-50 ns per step on one core of the development machine, >= 1,000x
real time (midpoint: ~90 ns; benchmarks/bench_simulate.py). With noise: a 64-bit hash, one log, one sqrt and one cos
every other step (Box-Muller).
"""

from __future__ import annotations

import ast
import threading

import numpy as np

from ..models import Model

_KERNELS: dict = {}  # (model digest, order, lanes) -> (kernel, tables, source): keyed by content, not by name
_LOCK = threading.Lock()


class _TableBuilder:
    """Collects the V-only expressions that the kernel reads from the lookup table."""

    def __init__(self, model: Model):
        self.model = model
        self.columns: list[tuple[str, str]] = []  # (kind, expression); kind "value" or "decay"

    def column(self, kind: str, expression: str) -> int:
        key = (kind, expression)
        if key not in self.columns:
            self.columns.append(key)
        return self.columns.index(key)

    def substitute(self, expression: str) -> str:
        """Replace maximal V-only subtrees that contain a call (exp) by table reads; return kernel code."""
        model = self.model
        state_names = set(model.free_names(expression)) - {"V"}
        tree = ast.parse(expression, mode="eval")

        builder = self

        class Replace(ast.NodeTransformer):
            def generic_visit(self, node):
                names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                has_call = any(isinstance(n, ast.Call) for n in ast.walk(node))
                if isinstance(node, ast.expr) and has_call and not (names & state_names):
                    index = builder.column("value", ast.unparse(node))
                    return ast.Name(id=f"c{index}", ctx=ast.Load())
                return super().generic_visit(node)

        new_tree = Replace().visit(tree)
        code = ast.unparse(new_tree)
        for name, value in model.constants.items():
            code = _replace_name(code, name, repr(float(value)))
        return code

    def evaluate(self, v_grid: np.ndarray, dt_ms: float) -> np.ndarray:
        table = np.empty((v_grid.size, len(self.columns)))
        for j, (kind, expression) in enumerate(self.columns):
            values = self.model.function(expression)(v_grid)
            if kind.startswith("decay"):
                fraction = float(kind.split(":")[1])
                table[:, j] = np.exp(-fraction * dt_ms / values)
            else:
                table[:, j] = values
        if not np.all(np.isfinite(table)):
            raise RuntimeError(f"model {self.model.name!r}: non-finite values in the lookup table")
        return table


def slope_table(values: np.ndarray) -> np.ndarray:
    """(rows, 2 x columns) kernel table: column j's value at even index 2j, its increment to the next row at 2j + 1.

    The increment is the same float64 difference the interpolation would compute, so results are unchanged; the
    kernel reads one contiguous row instead of two and saves a subtraction per column.
    """
    table = np.zeros((values.shape[0], 2 * values.shape[1]))
    table[:, 0::2] = values
    table[:-1, 1::2] = np.diff(values, axis=0)
    return table


def _replace_name(code: str, name: str, replacement: str) -> str:
    import re

    return re.sub(rf"\b{name}\b", replacement, code)


def _balanced(terms: list[str], operator: str) -> str:
    """Terms combined as a balanced tree: the dependency chain is log2(n) operations deep instead of n - 1, which
    is what bounds a time step (each step waits for the previous V; numba keeps the written order without
    fastmath, so the tree is spelled out here)."""
    terms = list(terms)
    if not terms:
        return "1.0" if operator == "*" else "0.0"
    while len(terms) > 1:
        paired = [f"({terms[j]} {operator} {terms[j + 1]})" for j in range(0, len(terms) - 1, 2)]
        terms = paired + ([terms[-1]] if len(terms) % 2 else [])
    return terms[0]


def _table_row_lines(suffix: str) -> list[str]:
    """Code locating V<suffix> in the voltage table: row ``i`` and fraction ``f``, clamped to the table's range."""
    return [
        f"x = (V{suffix} - v_min) * inv_step",
        "if x < 0.0:",
        "    x = 0.0",
        "elif x > last_row:",
        "    x = last_row",
        "i = int(x)",
        "f = x - i",
    ]


def _stage_lines(model: Model, tables: _TableBuilder, suffix: str, fraction: float, origin_suffix: str):
    """Code of one exponential step: rates evaluated at the states named ``<state><suffix>``, the step of ``fraction``dt
    taken from the states named ``<state><origin_suffix>``, results stored in ``<state>_new``."""
    state_names = list(model.state_names) + [g.name for g in model.gates if g.tau_ms is None]

    def at(code: str) -> str:
        for name in state_names:
            code = _replace_name(code, name, name + suffix)
        return code

    lines = _table_row_lines(suffix)
    gate_lines, update_lines = [], []
    for gate in model.gates:
        if gate.tau_ms is None:
            gate_lines.append(f"{gate.name}{suffix} = c{tables.column('value', gate.inf)}")
    for gate in model.dynamic_gates:
        target_expression = gate.dynamic_inf or gate.inf
        if set(model.free_names(target_expression)) <= {"V"}:
            target_code = f"c{tables.column('value', target_expression)}"
        else:
            target_code = at(tables.substitute(target_expression))
        decay = tables.column(f"decay:{fraction!r}", gate.tau_ms)
        gate_lines.append(f"inf_{gate.name} = {target_code}")
        update_lines.append(
            f"{gate.name}_new = inf_{gate.name} + ({gate.name}{origin_suffix} - inf_{gate.name}) * c{decay}"
        )
    g_terms, ge_terms = [], []
    for channel in model.channels:
        factor = _balanced(
            [f"g_{channel.name}"] + [f"{gate}{suffix}" for gate, power in channel.gates for _ in range(power)], "*"
        )
        reversal = float(model.constants[channel.reversal])
        gate_lines.append(f"a_{channel.name} = {factor}")
        g_terms.append(f"a_{channel.name}")
        ge_terms.append(f"a_{channel.name} * ({reversal!r})")
    for c in model.concentrations:
        sources = " + ".join(
            f"a_{s} * (V{suffix} - ({float(model.constants[model.channels[model.channel_index(s)].reversal])!r}))"
            for s in c.source_channels
        )
        gate_lines.append(f"inf_{c.name} = {c.beta!r} - {c.alpha!r} * ({sources})")
        update_lines.append(
            f"{c.name}_new = inf_{c.name} + ({c.name}{origin_suffix} - inf_{c.name}) * "
            f"decay_{c.name}_{str(fraction).replace('.', '_')}"
        )
    gate_lines.append(f"total_g = {_balanced(g_terms, '+')}")
    gate_lines.append(f"total_ge = {_balanced(ge_terms + ['noise'], '+')}")
    gate_lines.append("v_inf = total_ge / total_g")
    update_lines.append(
        f"V_new = v_inf + (V{origin_suffix} - v_inf) * np.exp(total_g * minus_dt_over_c_{fraction_tag(fraction)})"
    )
    n_columns_marker = "@@INTERPOLATE@@"
    return lines + [n_columns_marker] + gate_lines + update_lines


def _check_staggered(model: Model) -> None:
    gate_names = {g.name for g in model.gates}
    if any(g.tau_ms is None for g in model.gates):
        raise ValueError(
            f"model {model.name!r} has instantaneous gates; the staggered scheme needs every gate to have a time "
            "constant: use order=2"
        )
    for gate in model.dynamic_gates:
        if set(model.free_names(gate.dynamic_inf or gate.inf)) & gate_names:
            raise ValueError(
                f"model {model.name!r}: the target of {gate.name} depends on other gates; the staggered scheme "
                "supports targets of V and concentrations only: use order=2"
            )


def _gate_half_lines(model: Model, tables: _TableBuilder, suffix: str, fraction: float) -> list[str]:
    """Gates relaxed over ``fraction`` dt towards targets frozen at V<suffix> and the concentrations<suffix>."""
    lines = _table_row_lines(suffix) + ["@@INTERPOLATE@@"]
    scalar_names = ["V"] + [c.name for c in model.concentrations]
    for gate in model.dynamic_gates:
        target_expression = gate.dynamic_inf or gate.inf
        if set(model.free_names(target_expression)) <= {"V"}:
            target_code = f"c{tables.column('value', target_expression)}"
        else:
            target_code = tables.substitute(target_expression)
            for name in scalar_names:
                target_code = _replace_name(target_code, name, name + suffix)
        decay = tables.column(f"decay:{fraction!r}", gate.tau_ms)
        lines.append(f"inf_{gate.name} = {target_code}")
        lines.append(f"{gate.name} = inf_{gate.name} + ({gate.name} - inf_{gate.name}) * c{decay}")
    return lines


def _staggered_lines(model: Model, tables: _TableBuilder) -> tuple[list[str], list[str]]:
    """(before the time loop, one step) of the staggered exponential scheme.

    V and the concentrations live on the steps t_n, the gates half a step later (t_n + dt/2), as in a leapfrog:
    V advances exactly over dt with the gates frozen at the midpoint, the concentrations with their sources at the
    midpoint (gates at t_n + dt/2, V averaged over the step), then the gates advance over dt from t_n + dt/2 to
    t_n + 3dt/2 with V and the concentrations at the midpoint t_{n+1}. Every update is the exact solution of the
    frozen linear equation over a symmetric interval, so the scheme is second order, with ONE table lookup, one
    exp and one division per step (the exponential midpoint needs two of each). A half step of the gates before
    the loop staggers them.
    """
    _check_staggered(model)
    before = _gate_half_lines(model, tables, "", 0.5)
    step = []
    g_terms, ge_terms = [], []
    for channel in model.channels:
        factor = _balanced([f"g_{channel.name}"] + [gate for gate, power in channel.gates for _ in range(power)], "*")
        reversal = float(model.constants[channel.reversal])
        step.append(f"a_{channel.name} = {factor}")
        g_terms.append(f"a_{channel.name}")
        ge_terms.append(f"a_{channel.name} * ({reversal!r})")
    step.append(f"total_g = {_balanced(g_terms, '+')}")
    step.append(f"total_ge = {_balanced(ge_terms + ['noise'], '+')}")
    step.append("v_inf = total_ge / total_g")
    step.append("V_new = v_inf + (V - v_inf) * np.exp(total_g * minus_dt_over_c_1_0)")
    step.append("V_mid = 0.5 * (V + V_new)")
    for c in model.concentrations:
        sources = " + ".join(
            f"a_{s} * (V_mid - ({float(model.constants[model.channels[model.channel_index(s)].reversal])!r}))"
            for s in c.source_channels
        )
        step.append(f"inf_{c.name} = {c.beta!r} - {c.alpha!r} * ({sources})")
        step.append(f"{c.name}_new = inf_{c.name} + ({c.name} - inf_{c.name}) * decay_{c.name}_1_0")
    step += _gate_half_lines(model, tables, "_new", 1.0)
    return before, step


def _expand_interpolation(stage: list[str]) -> list[str]:
    import re

    used = sorted({int(m) for line in stage for m in re.findall(r"\bc(\d+)\b", line)})
    # The table stores each column's value and its difference to the next row side by side (see slope_table):
    # one row read, one multiply-add per column.
    interpolate = [f"c{j} = table[i, {2 * j}] + f * table[i, {2 * j + 1}]" for j in used]
    out = []
    for line in stage:
        out.extend(interpolate if line == "@@INTERPOLATE@@" else [line])
    return out


def fraction_tag(fraction: float) -> str:
    return str(float(fraction)).replace(".", "_")


def record_names(model: Model) -> tuple[str, ...]:
    """Columns a trace kernel records, in order: V (mV), each channel's current I_<channel> (uA/cm2, outward
    positive), the injected noise current I_noise (uA/cm2, inward positive) and each concentration."""
    return (
        ("V",)
        + tuple(f"I_{c.name}" for c in model.channels)
        + ("I_noise",)
        + tuple(c.name for c in model.concentrations)
    )


def _record_lines(model: Model) -> list[str]:
    """Trace-kernel code run once per step after the rates are computed and before the states are committed.

    It only reads: V and the concentrations at t_n, and the channel conductances ``a_<channel>`` the step used
    (gates at the step's midpoint for the second-order schemes, which is where they drive V), so a trace run gives
    exactly the spike-only run's spikes. Each current is a_<channel> * (V - E_<channel>) with the declared reversal.
    """
    lines = [
        "if record_slot[n] >= 0 and step >= record_start and (step - record_start) % record_every == 0:",
        "    sample = (step - record_start) // record_every",
        "    record_out[record_slot[n], sample, 0] = V",
    ]
    for j, channel in enumerate(model.channels):
        reversal = float(model.constants[channel.reversal])
        lines.append(f"    record_out[record_slot[n], sample, {j + 1}] = a_{channel.name} * (V - ({reversal!r}))")
    lines.append(f"    record_out[record_slot[n], sample, {model.n_channels + 1}] = noise")
    for j, c in enumerate(model.concentrations):
        lines.append(f"    record_out[record_slot[n], sample, {model.n_channels + 2 + j}] = {c.name}")
    return lines


def _generate(model: Model, order=2, record: bool = False):
    """Source of the kernel; ``record`` adds the trace recording (a separate specialisation: the spike-only kernel's
    source, and so its compiled code and speed, stay exactly as they are)."""
    tables = _TableBuilder(model)
    state_names = model.state_names
    indent = " " * 12
    before_loop = []
    if order == 1:
        stages = [_stage_lines(model, tables, "", 1.0, "")]
    elif order == 2:
        # Exponential midpoint (second order): rates at y_n give y_{n+1/2}; rates at y_{n+1/2} advance y_n by dt.
        first = _stage_lines(model, tables, "", 0.5, "")
        first += [f"{name}_h = {name}_new" for name in state_names]
        stages = [first, _stage_lines(model, tables, "_h", 1.0, "")]
    elif order == "staggered":
        before, step = _staggered_lines(model, tables)
        before_loop = _expand_interpolation(before)
        stages = [step]
    else:
        raise ValueError(f"order must be 1, 2 or 'staggered'; got {order!r}")

    body_lines = []
    for stage in stages:
        body_lines.extend(_expand_interpolation(stage))
    if record:
        body_lines.extend(_record_lines(model))
    body = "\n".join(indent + line for line in body_lines)
    if order == "staggered":  # the gates were updated in place; V and the concentrations commit below
        commit = "\n".join(f"{indent}{c.name} = {c.name}_new" for c in model.concentrations)
    else:
        commit = "\n".join(f"{indent}{name} = {name}_new" for name in state_names if name != "V")
    stagger = "\n".join(" " * 8 + line for line in before_loop)
    load_conductances = "\n".join(f"        g_{ch.name} = gbar[n, {i}]" for i, ch in enumerate(model.channels))
    load_states = "\n".join(f"        {name} = y0[n, {i}]" for i, name in enumerate(state_names))
    store_states = "\n".join(f"        y_end[n, {i}] = {name}" for i, name in enumerate(state_names))
    # -fraction * dt / C, hoisted: a multiplication instead of a division on the step's dependency chain.
    membrane = "\n".join(
        f"    minus_dt_over_c_{fraction_tag(fraction)} = -{fraction!r} * dt / capacitance" for fraction in (0.5, 1.0)
    )
    decays = (
        "\n".join(
            f"    decay_{c.name}_{str(fraction).replace('.', '_')} = np.exp(-{fraction!r} * dt / {c.tau_ms!r})"
            for c in model.concentrations
            for fraction in (0.5, 1.0)
        )
        or "    pass"
    )
    record_arguments = ",\n           record_slot, record_start, record_every, record_out" if record else ""
    source = f"""
def kernel(gbar, y0, y_end, table, v_min, inv_step, dt, capacitance, n_steps, t_record_start, up_mV, down_mV,
           noise_decay, noise_scale, noise_seeds, out_times, out_counts, out_overflow, trace_index, trace_stride,
           trace{record_arguments}):
{decays}
{membrane}
    n_neurons = gbar.shape[0]
    max_spikes = out_times.shape[1]
    last_row = table.shape[0] - 1.000001
    for n in prange(n_neurons):
{load_conductances}
{load_states}
{stagger}
        n_recorded = 0
        n_confirmed = 0
        overflow = False
        noise = 0.0
        state = noise_seeds[n]
        neuron_noise_scale = noise_scale[n]
        spare = 0.0
        has_spare = False
        for step in range(n_steps):
            if neuron_noise_scale > 0.0:
                if has_spare:
                    normal = spare
                    has_spare = False
                else:
                    state = state + np.uint64(0x9E3779B97F4A7C15)
                    z = state
                    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
                    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
                    z = z ^ (z >> np.uint64(31))
                    u1 = ((z >> np.uint64(11)) + np.uint64(1)) * (1.0 / 9007199254740993.0)
                    u2 = (z & np.uint64(0x1FFFFF)) * (1.0 / 2097152.0)
                    radius = np.sqrt(-2.0 * np.log(u1))
                    normal = radius * np.cos(6.283185307179586 * u2)
                    spare = radius * np.sin(6.283185307179586 * u2)
                    has_spare = True
                noise = noise * noise_decay + neuron_noise_scale * normal
{body}
{commit}
            v_new = V_new
            t_next = (step + 1) * dt
            if t_next >= t_record_start:
                if V <= up_mV and v_new > up_mV:
                    onset = step * dt + dt * (up_mV - V) / (v_new - V)
                    if onset >= t_record_start:
                        if n_recorded < max_spikes:
                            out_times[n, n_recorded] = onset - t_record_start
                            n_recorded += 1
                        else:
                            overflow = True
                if V >= down_mV and v_new < down_mV:
                    n_confirmed = n_recorded
            if n == trace_index and step % trace_stride == 0:
                trace[step // trace_stride] = V
            V = v_new
        out_counts[n] = n_confirmed
        out_overflow[n] = overflow
{store_states}
"""
    return source, tables


_KERNEL_GLOBALS = {
    # arguments and per-call constants of the generated kernel, names of the language and of numpy
    "gbar", "y0", "y_end", "table", "v_min", "inv_step", "dt", "capacitance", "n_steps", "t_record_start", "up_mV",
    "down_mV", "noise_decay", "noise_scale", "noise_seeds", "out_times", "out_counts", "out_overflow", "trace_index",
    "trace_stride", "trace", "n_neurons", "max_spikes", "last_row", "np", "prange", "range", "int", "min", "max",
    "step", "if", "elif", "else", "and", "or", "not", "for", "in", "True", "False", "pair",
}  # fmt: skip


def _lane(lines: list[str], lane: int) -> list[str]:
    """Rename every neuron-local name of generated lines with a lane suffix (``V`` -> ``V_1``, ``n`` -> ``n_1``)."""
    import re

    pattern = re.compile(r"(?<![\w.])([A-Za-z_]\w*)")

    def rename(match):
        name = match.group(1)
        if name in _KERNEL_GLOBALS or name.startswith(("decay_", "minus_dt_over_c_")):
            return name
        return f"{name}_{lane}"

    return [pattern.sub(rename, line) for line in lines]


def _statements(lines: list[str], indent: int) -> list[list[str]]:
    """Group lines at ``indent`` into statements (a line with its deeper-indented and elif/else continuation)."""
    statements = []
    for line in lines:
        stripped = line[indent:]
        continuation = line[:indent].strip() == "" and (
            stripped.startswith((" ", "elif ", "else:")) or not stripped.strip()
        )
        if statements and continuation:
            statements[-1].append(line)
        else:
            statements.append([line])
    return statements


def _interleave(lines: list[str], indent: int, lanes: int) -> list[str]:
    """The statements of ``lanes`` renamed copies of ``lines``, alternating statement by statement, so that the
    independent dependency chains of the neurons sit side by side for the out-of-order core."""
    copies = [_statements(_lane(lines, lane), indent) for lane in range(lanes)]
    out = []
    for group in zip(*copies, strict=True):
        for statement in group:
            out.extend(statement)
    return out


def _interleaved_source(source: str, lanes: int) -> str:
    """Rewrite a one-neuron-per-iteration kernel so that each parallel iteration integrates ``lanes`` neurons.

    A step of one neuron is a chain of dependent operations (V -> table -> gates -> conductances -> exp -> V), so a
    core waits on latencies; two neurons' chains interleaved keep its units busy. The last pair of an odd count
    repeats the last neuron (same seed, same result; its outputs are written once).
    """
    lines = source.splitlines()
    loop = lines.index("    for n in prange(n_neurons):")
    step = lines.index("        for step in range(n_steps):")
    post = lines.index("        out_counts[n] = n_confirmed")
    header = lines[:loop] + [
        "    for pair in prange((n_neurons + 1) // 2):",
        *[f"        n_{lane} = min(2 * pair + {lane}, n_neurons - 1)" for lane in range(lanes)],
    ]
    before = _interleave([line for line in lines[loop + 1 : step] if line.strip()], 8, lanes)
    body = _interleave([line for line in lines[step + 1 : post] if line.strip()], 12, lanes)
    tail = [line for line in lines[post:] if line.strip()]
    after = _lane(tail, 0)
    for lane in range(1, lanes):
        after.append(f"        if n_{lane} != n_{lane - 1}:")
        after.extend("    " + line for line in _lane(tail, lane))
    return "\n".join(header + before + [lines[step]] + body + after) + "\n"


def kernel_cache_dir():
    """Folder of the generated kernel modules and numba's compiled cache ($SPIKEINTERFACE_DIC_CACHE_DIR overrides)."""
    import os
    from pathlib import Path

    root = os.environ.get("SPIKEINTERFACE_DIC_CACHE_DIR")
    if root is None:
        import platformdirs

        root = platformdirs.user_cache_dir("spikeinterface-dic")
    return Path(root) / "kernels"


def _load_module(source: str, name: str):
    """Import generated source from a file named by its hash, so numba can cache the compiled kernel on disk.

    The file is written once (atomically) and never rewritten, so its timestamp - part of numba's cache key - is
    stable; a changed declaration gives a new hash and a new file. Falls back to exec (no disk cache) when the cache
    folder is not writable.
    """
    import hashlib
    import importlib.util
    import os
    import sys

    import numba

    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    module_name = f"sdic_kernel_{name}_{digest}"
    try:
        folder = kernel_cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{module_name}.py"
        if not path.exists():
            temporary = path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text("import numpy as np\nfrom numba import prange\n" + source)
            os.replace(temporary, path)
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # numba's cache re-imports the module by name when it loads
        spec.loader.exec_module(module)
        return numba.njit(parallel=True, fastmath=False, cache=True, nogil=True)(module.kernel)
    except OSError:
        namespace = {"np": np, "prange": numba.prange}
        exec(compile(source, f"<spikeinterface_dic kernel {name}>", "exec"), namespace)  # noqa: S102
        return numba.njit(parallel=True, fastmath=False, cache=False, nogil=True)(namespace["kernel"])


# Neurons integrated side by side in one parallel iteration (see _interleaved_source); measured in
# benchmarks/bench_simulate.py.
LANES = 2


def get_kernel(model: Model, order=2, lanes: int | None = None, record: bool = False):
    """Return (compiled kernel, table builder) for a model: generated once per process, compiled once per machine
    (numba's on-disk cache in :func:`kernel_cache_dir`). ``record`` gives the trace kernel (one neuron per
    iteration: traces are asked for a few rows, and the lanes' interleaving does not change any neuron's
    arithmetic)."""
    lanes = 1 if record else LANES if lanes is None else int(lanes)
    key = (model.digest, order, lanes, record)
    with _LOCK:
        if key not in _KERNELS:
            source, tables = _generate(model, order, record)
            if lanes > 1:
                source = _interleaved_source(source, lanes)
            name = (
                f"{model.name}_order{order}" + (f"_lanes{lanes}" if lanes > 1 else "") + ("_record" if record else "")
            )
            _KERNELS[key] = (_load_module(source, name), tables, source)
        compiled, tables, _ = _KERNELS[key]
        return compiled, tables


def kernel_source(model: Model, order=2, lanes: int = 1, record: bool = False) -> str:
    """The generated Python source of a model's kernel (for inspection and documentation)."""
    source = _generate(model, order, record)[0]
    return _interleaved_source(source, lanes) if lanes > 1 else source
