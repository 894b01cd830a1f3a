"""Brian2 backend of :func:`spikeinterface_dic.simulate.simulate`, generated from the model declaration.

The Brian2 equations (units: mV, ms, mS/cm2, uF/cm2, uA/cm2) are written by :func:`brian2_equations` from the same
:class:`~spikeinterface_dic.models.Model` declaration as the numba kernel: every expression string (bare numbers in
mV and ms) is translated by substituting ``V -> (v/mV)``, the model constants by their values, and comparisons by
``int(...)`` (Brian2 cannot multiply a relational); time constants are multiplied by ``ms``.

Integration scheme (``method``)
    The default, ``"exponential_midpoint"``, is the numba kernel's ``order=2`` scheme (DA's default; STG's default in
    numba is the staggered scheme, which differs from it by its O(dt^2) error, well inside the tolerances of the
    converged-reference tests): the second-order exponential midpoint (Rush-Larsen) rule. It is a Brian2 state updater
    (:class:`ExponentialMidpoint`) built on Brian2's own conditionally linear decomposition dx/dt = A x + B (sympy), so
    the only shared ingredient with the numba kernel is the model declaration; the numba kernel reads V-only functions
    from a 0.01 mV lookup table, Brian2 evaluates them exactly. The two agree to ~1e-5 in ISIs and inter-burst periods
    at the same dt. Any Brian2 method name (``"exponential_euler"``, ``"rk4"``, ...) may be given instead: Brian2's
    first-order ``exponential_euler`` at the numba step (STG 0.05 ms) is off by up to ~1.3 % in mean ISI (S2) and 1
    spike; at half the step (0.025 ms) it is within 0.25 % of the numba kernel on S1-S4 (tests/test_brian2.py, slow).

Time scale
    As in the numba backend, ``time_scale = k`` is applied by integrating the *unscaled* model over duration / k with
    the same step (noise cut-off x k) and multiplying the spike times by k: exact scaling by construction, and one
    standalone build serves every k whose scaled window is the same.

Spike rule
    Identical to the numba kernel: an onset is an upward crossing of ``model.spike_up_mV`` (+10 mV) between two steps,
    its time interpolated linearly between them; it counts only if V later crosses ``model.spike_down_mV`` (0 mV)
    downwards. A custom event ``dic_onset`` is recorded by an EventMonitor with v and the previous step's v (the
    interpolation is done in Python); a custom event ``dic_repol`` stores the time of the last repolarisation of each
    neuron, and onsets after it are dropped.

Noise
    The Ornstein-Uhlenbeck current of the numba kernel (stationary sd ``noise_std`` uA/cm2, correlation time
    1 / (2 pi cut-off)), advanced exactly each step. Its normal deviates come from a counter-based generator (the
    numba kernel's splitmix64 hash and Box-Muller pair, as a Brian2 function with C++, Cython and numpy
    implementations) keyed by the same per-row seeds, so a neuron's noise depends on (seed, row) only, not on the
    number of threads, and it is the numba backend's noise sequence up to floating-point rounding. The seed is a
    per-neuron run-time parameter: a standalone build is reused for every seed.

Targets (``target``)
    ``"cpp_standalone"``: the network is generated and compiled (with OpenMP when ``n_threads`` > 1; default one
    thread per ``NEURONS_PER_THREAD`` neurons, at most the available CPUs) once per (model, method, dt, number of
    steps, population size bucket, threads) into a project folder under the per-user cache
    (:func:`brian2_cache_dir`) and then re-run with new conductances, noise levels and seeds through Brian2's
    ``run_args`` (no recompilation; the compiled project is also reused by later processes: only the code generation,
    ~1-5 s, is repeated, ``make`` finds nothing to do). Populations are padded up to the next size bucket (powers of 2
    and 1.5 x powers of 2, at least 16) so that similar population sizes share a build.
    ``"cython"`` / ``"numpy"``: Brian2's runtime targets for interactive use (the network of each (model, method, dt,
    N) is kept and restored between calls; Cython modules are cached under :func:`brian2_cache_dir`).
    ``"auto"`` (default): cpp_standalone when a C++ compiler and ``make`` exist and N >= ``AUTO_STANDALONE_MIN_N``,
    else cython, else numpy. A requested compiled target that is not available falls back with a warning.
    Brian2 code generation and compilation take seconds to a minute the first time (sympy, C++), so for a single
    population the numba backend is faster; see benchmarks/bench_brian2.py.

Not supported here (numba backend only): ``initial_state``, ``return_voltage_of`` and ``max_rate_hz`` (the onset
buffer is a dynamic EventMonitor).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import os
import platform
import shutil
import threading
import uuid
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..models import Model, get_model

AUTO_STANDALONE_MIN_N = 100
MIN_STANDALONE_BUCKET = 16
MAX_RUNTIME_NETWORKS = 4
NEURONS_PER_THREAD = 256
_GROUP_NAME = "dic_neurons"
_LOCK = threading.RLock()
_STANDALONE_BUILDS: OrderedDict = OrderedDict()  # key -> _StandaloneBuild (all kept: each holds its own device)
_RUNTIME_NETWORKS: OrderedDict = OrderedDict()  # key -> _RuntimeNetwork (LRU, at most MAX_RUNTIME_NETWORKS)
_AVAILABILITY: dict = {}

_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB

# Counter-based noise increment scale * N(0, 1): the numba kernel's sequential splitmix64 + Box-Muller stream, as a
# pure function of the 64-bit per-neuron seed (two int32 halves) and the step index k (pair k // 2: cosine for even k,
# sine for odd k). Like the numba kernel, nothing is drawn when scale == 0, so noise-free runs cost almost nothing.
_CPP_NORMAL = """
static inline double dic_noise(const double scale, const int32_t hi, const int32_t lo, const int32_t k)
{
    if (scale == 0.0)
        return 0.0;
    const uint64_t seed = (((uint64_t)(uint32_t)hi) << 32) | ((uint64_t)(uint32_t)lo);
    uint64_t z = seed + ((uint64_t)(uint32_t)(k >> 1) + 1ULL) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z = z ^ (z >> 31);
    const double u1 = (double)((z >> 11) + 1ULL) * (1.0 / 9007199254740993.0);
    const double u2 = (double)(z & 0x1FFFFFULL) * (1.0 / 2097152.0);
    const double radius = sqrt(-2.0 * log(u1));
    return scale * ((k & 1) ? radius * sin(6.283185307179586 * u2) : radius * cos(6.283185307179586 * u2));
}
"""

_CYTHON_NORMAL = """
from libc.math cimport sqrt as _dic_sqrt, log as _dic_log, sin as _dic_sin, cos as _dic_cos

cdef double dic_noise(double scale, int hi, int lo, int k):
    if scale == 0.0:
        return 0.0
    cdef unsigned long long high = <unsigned int>hi
    cdef unsigned long long seed = (high << 32) | (<unsigned long long><unsigned int>lo)
    cdef unsigned long long z = seed + (<unsigned long long><unsigned int>(k >> 1) + 1ULL) * 0x9E3779B97F4A7C15ULL
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    z = z ^ (z >> 31)
    cdef double u1 = <double>((z >> 11) + 1ULL) * (1.0 / 9007199254740993.0)
    cdef double u2 = <double>(z & 0x1FFFFFULL) * (1.0 / 2097152.0)
    cdef double radius = _dic_sqrt(-2.0 * _dic_log(u1))
    if k & 1:
        return scale * radius * _dic_sin(6.283185307179586 * u2)
    return scale * radius * _dic_cos(6.283185307179586 * u2)
"""


def _noise_numpy(scale, hi, lo, k):
    """scale x the k-th normal deviate of the stream of seed (hi, lo): the numpy implementation of ``dic_noise``."""
    return np.asarray(scale) * _normal_numpy(hi, lo, k)


def _normal_numpy(hi, lo, k):
    """The k-th normal deviate of the stream of the 64-bit seed (hi, lo) (same values as the C++ and Cython code)."""
    hi = np.asarray(hi).astype(np.int64).astype(np.uint64) & np.uint64(0xFFFFFFFF)
    lo = np.asarray(lo).astype(np.int64).astype(np.uint64) & np.uint64(0xFFFFFFFF)
    k = np.asarray(k).astype(np.int64)
    with np.errstate(over="ignore"):
        z = (hi << np.uint64(32)) | lo
        z = z + ((k >> 1).astype(np.uint64) + np.uint64(1)) * np.uint64(_GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
        z = z ^ (z >> np.uint64(31))
    u1 = ((z >> np.uint64(11)) + np.uint64(1)).astype(np.float64) * (1.0 / 9007199254740993.0)
    u2 = (z & np.uint64(0x1FFFFF)).astype(np.float64) * (1.0 / 2097152.0)
    radius = np.sqrt(-2.0 * np.log(u1))
    angle = 6.283185307179586 * u2
    return np.where(k & 1, radius * np.sin(angle), radius * np.cos(angle))


# ------------------------------------------------------------------------------------------------------ cache folders
def brian2_cache_dir() -> Path:
    """Per-user folder of Brian2's Cython modules and standalone projects:
    ``platformdirs.user_cache_dir("spikeinterface-dic") / "brian2"`` (override with $SPIKEINTERFACE_DIC_CACHE_DIR)."""
    override = os.environ.get("SPIKEINTERFACE_DIC_CACHE_DIR")
    if override:
        base = Path(override)
    else:
        try:
            from platformdirs import user_cache_dir

            base = Path(user_cache_dir("spikeinterface-dic"))
        except ImportError:  # pragma: no cover - platformdirs comes with pip/pynwb in practice
            base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "spikeinterface-dic"
    path = base / "brian2"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------------------------- equations from a model
def _translate(model: Model, expression: str) -> str:
    """A model expression (bare numbers, V in mV) as a dimensionless Brian2 expression of ``v``."""
    tree = ast.parse(expression, mode="eval")
    constants = {name: float(value) for name, value in model.constants.items()}

    class Translate(ast.NodeTransformer):
        def visit_Name(self, node):
            if node.id == "V":
                return ast.parse("(v/mV)", mode="eval").body
            if node.id in constants:
                return ast.Constant(value=constants[node.id])
            return node

        def visit_Compare(self, node):
            self.generic_visit(node)
            return ast.Call(func=ast.Name(id="int", ctx=ast.Load()), args=[node], keywords=[])

    return ast.unparse(Translate().visit(tree))


def brian2_equations(model, noise: bool = True) -> str:
    """The Brian2 model equations of a model, generated from its declaration.

    Parameters: ``g_<channel>`` (siemens/meter**2) per neuron; with ``noise``, the OU current ``I_noise`` and its
    per-neuron scale, seed halves and step counter (advanced by the backend's ``run_regularly`` operation).
    """
    model = get_model(model)
    lines = []
    currents = []
    for channel in model.channels:
        factor = "*".join(f"{gate}**{power}" if power != 1 else gate for gate, power in channel.gates)
        reversal = float(model.constants[channel.reversal])
        product = f"{factor}*" if factor else ""
        lines.append(f"I_{channel.name} = g_{channel.name}*{product}(v - ({reversal!r})*mV) : amp/meter**2")
        currents.append(f"I_{channel.name}")
    drive = " + I_noise" if noise else ""
    lines.insert(0, f"dv/dt = (-({' + '.join(currents)}){drive})/Cm : volt")
    for gate in model.gates:
        if gate.tau_ms is None:
            lines.append(f"{gate.name} = {_translate(model, gate.inf)} : 1")
            continue
        target = _translate(model, gate.dynamic_inf or gate.inf)
        lines.append(f"d{gate.name}/dt = (inf_{gate.name} - {gate.name})/tau_{gate.name} : 1")
        lines.append(f"inf_{gate.name} = {target} : 1")
        lines.append(f"tau_{gate.name} = ({_translate(model, gate.tau_ms)})*ms : second")
    for c in model.concentrations:
        sources = " + ".join(f"I_{name}" for name in c.source_channels)
        lines.append(
            f"d{c.name}/dt = ({c.beta!r} - {c.alpha!r}*({sources})/(uA/cm**2) - {c.name})/({float(c.tau_ms)!r}*ms) : 1"
        )
    lines += [f"g_{channel.name} : siemens/meter**2 (constant)" for channel in model.channels]
    lines += ["v_prev : volt", "t_repol : second"]
    if noise:
        lines += [
            "I_noise : amp/meter**2",
            "noise_scale : amp/meter**2 (constant)",
            "noise_decay : 1 (shared, constant)",
            "seed_hi : integer (constant)",
            "seed_lo : integer (constant)",
            "noise_k : integer",
        ]
    return "\n".join(lines)


def _pre_step_code(noise: bool) -> str:
    code = ["v_prev = v"]
    if noise:
        code += [
            "I_noise = I_noise*noise_decay + dic_noise(noise_scale/(uA/cm**2), seed_hi, seed_lo, noise_k)*uA/cm**2",
            "noise_k += 1",
        ]
    return "\n".join(code)


# ------------------------------------------------------------------------------------ exponential midpoint updater
def _exponential_midpoint():
    import sympy as sp
    from brian2.parsing.sympytools import sympy_to_str
    from brian2.stateupdaters.base import (
        StateUpdateMethod,
        UnsupportedEquationsException,
        extract_method_options,
    )
    from brian2.stateupdaters.exponential_euler import get_conditionally_linear_system

    class ExponentialMidpoint(StateUpdateMethod):
        """Second-order exponential midpoint (Rush-Larsen) rule for conditionally linear equations.

        With dx/dt = A(y) x + B(y) for every state x (A, B from Brian2's ``get_conditionally_linear_system``):
        y_h = exponential Euler step of dt/2 from y_n with A, B at y_n; y_{n+1} = exponential step of dt from y_n
        with A, B at y_h. This is the scheme of the numba kernel (:mod:`spikeinterface_dic.simulate.codegen`).
        """

        def __call__(self, equations, variables=None, method_options=None):
            extract_method_options(method_options, {})
            if equations.is_stochastic:
                raise UnsupportedEquationsException("Cannot solve stochastic equations with this state updater.")
            try:
                system = get_conditionally_linear_system(equations, variables)
            except ValueError:
                raise UnsupportedEquationsException(
                    "Can only solve conditionally linear systems with this state updater."
                ) from None
            dt = sp.Symbol("dt")

            def step(var, A, B, fraction, prefix, target):
                s_var = sp.Symbol(var)
                if A == 0:
                    return [f"{target} = {sympy_to_str(s_var + fraction * dt * B)}"]
                a_name = f"_A{prefix}_{var}"
                code = [f"{a_name} = {sympy_to_str(A)}"]
                s_a = sp.Symbol(a_name)
                if B == 0:
                    return code + [f"{target} = {sympy_to_str(s_var * sp.exp(s_a * fraction * dt))}"]
                ba_name = f"_BA{prefix}_{var}"
                s_ba = sp.Symbol(ba_name)
                code.append(f"{ba_name} = {sympy_to_str(B / A)}")
                return code + [f"{target} = {sympy_to_str((s_var + s_ba) * sp.exp(s_a * fraction * dt) - s_ba)}"]

            code = []
            for var, (A, B) in system.items():
                code += step(var, A, B, sp.Rational(1, 2), "1", f"_h_{var}")

            def at_half(expression):
                expression = sp.sympify(expression)
                mapping = {
                    s: sp.Symbol(f"_h_{s.name}", **s.assumptions0) for s in expression.free_symbols if s.name in system
                }
                return expression.xreplace(mapping)

            for var, (A, B) in system.items():
                code += step(var, at_half(A), at_half(B), 1, "2", f"_{var}")
            code += [f"{var} = _{var}" for var in system]
            return "\n".join(code)

    return ExponentialMidpoint()


_METHODS: dict = {}


def _method(method):
    if method != "exponential_midpoint":
        return method
    if "exponential_midpoint" not in _METHODS:
        _METHODS["exponential_midpoint"] = _exponential_midpoint()
    return _METHODS["exponential_midpoint"]


def _normal_function():
    if "normal" not in _METHODS:
        from brian2 import Function

        function = Function(
            _noise_numpy,
            arg_units=[1, 1, 1, 1],
            arg_names=["scale", "hi", "lo", "k"],
            return_unit=1,
            arg_types=["float", "integer", "integer", "integer"],
            return_type="float",
            stateless=True,
        )
        function.implementations.add_implementation("cpp", code=_CPP_NORMAL, name="dic_noise")
        function.implementations.add_implementation("cython", code=_CYTHON_NORMAL, name="dic_noise")
        _METHODS["normal"] = function
    return _METHODS["normal"]


# ----------------------------------------------------------------------------------------------- targets available
def _compiler_available() -> bool:
    if "cxx" not in _AVAILABILITY:
        import sysconfig

        candidates = [os.environ.get("CXX"), sysconfig.get_config_var("CXX"), "c++", "g++", "clang++"]
        names = [c.split()[0] for c in candidates if c]
        has_cxx = any(shutil.which(name) for name in names)
        _AVAILABILITY["cxx"] = bool(has_cxx and os.name != "nt" and shutil.which("make"))
    return _AVAILABILITY["cxx"]


def _cython_available() -> bool:
    if "cython" not in _AVAILABILITY:
        try:
            import Cython  # noqa: F401
            from brian2.codegen.runtime.cython_rt import CythonCodeObject

            with _prefs():
                _AVAILABILITY["cython"] = bool(CythonCodeObject.is_available())
        except Exception:
            _AVAILABILITY["cython"] = False
    return _AVAILABILITY["cython"]


def available_targets() -> list[str]:
    """Brian2 targets usable on this machine, fastest first (``numpy`` is always available)."""
    targets = []
    if _compiler_available():
        targets.append("cpp_standalone")
    if _cython_available():
        targets.append("cython")
    return targets + ["numpy"]


def _resolve_target(target: str, n: int) -> str:
    if target not in ("auto", "cpp_standalone", "cython", "numpy"):
        raise ValueError(f"unknown Brian2 target {target!r}; choose 'auto', 'cpp_standalone', 'cython' or 'numpy'")
    if target == "auto":
        if n >= AUTO_STANDALONE_MIN_N and _compiler_available():
            return "cpp_standalone"
        return "cython" if _cython_available() else "numpy"
    if target == "cpp_standalone" and not _compiler_available():
        fallback = "cython" if _cython_available() else "numpy"
        warnings.warn(
            f"Brian2 cpp_standalone needs a C++ compiler and make, not found here; using {fallback!r}",
            RuntimeWarning,
            stacklevel=3,
        )
        return fallback
    if target == "cython" and not _cython_available():
        warnings.warn(
            "Brian2's cython target is not available (no compiler or Cython); using 'numpy'",
            RuntimeWarning,
            stacklevel=3,
        )
        return "numpy"
    return target


@contextlib.contextmanager
def _prefs(**values):
    """Temporarily set Brian2 preferences (restored afterwards): the Cython cache in our folder, portable compiler
    flags (no -march=native, since the compiled projects live in a per-user cache that may be shared between
    machines), and any given ``name=value`` (dots written as "__")."""
    from brian2 import prefs

    settings = {
        "codegen.runtime.cython.cache_dir": str(brian2_cache_dir() / "cython"),
        "codegen.cpp.extra_compile_args_gcc": [
            a for a in prefs["codegen.cpp.extra_compile_args_gcc"] if not a.startswith("-march")
        ],
    }
    settings.update({name.replace("__", "."): value for name, value in values.items()})
    previous = {name: prefs[name] for name in settings}
    try:
        for name, value in settings.items():
            prefs[name] = value
        yield
    finally:
        for name, value in previous.items():
            prefs[name] = value


def _bucket(n: int) -> int:
    """Standalone population size for n neurons: the smallest of 16, 24, 32, 48, 64, 96, ... that is >= n."""
    size = MIN_STANDALONE_BUCKET
    while True:
        if size >= n:
            return size
        if size * 3 // 2 >= n:
            return size * 3 // 2
        size *= 2


def _default_threads(n: int) -> int:
    """OpenMP threads for n neurons: Brian2's standalone code has a barrier per code object and step, which costs more
    than it gains for small populations (and a lot on an oversubscribed machine), so one thread per
    ``NEURONS_PER_THREAD`` neurons, at most the CPUs available to this process."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return int(max(1, min(cpus, n // NEURONS_PER_THREAD)))


# ------------------------------------------------------------------------------------------------- network objects
def _build_objects(model: Model, n: int, dt_ms: float, method, name_suffix: str = ""):
    """NeuronGroup, pre-step operation, onset monitor and repolarisation recorder for ``n`` neurons."""
    from brian2 import Clock, EventMonitor, NeuronGroup, cm, ms, mV, uF

    clock = Clock(dt=dt_ms * ms, name=f"dic_clock{name_suffix}")
    namespace = {"Cm": model.capacitance_uF_cm2 * uF / cm**2, "dic_noise": _normal_function()}
    events = {
        "dic_onset": f"v > {model.spike_up_mV!r}*mV and v_prev <= {model.spike_up_mV!r}*mV",
        "dic_repol": f"v < {model.spike_down_mV!r}*mV and v_prev >= {model.spike_down_mV!r}*mV",
    }
    group = NeuronGroup(
        n,
        brian2_equations(model),
        method=method,
        events=events,
        clock=clock,
        namespace=namespace,
        name=f"{_GROUP_NAME}{name_suffix}",
    )
    state = dict(zip(model.state_names, model.initial_state(), strict=True))
    group.v = state.pop("V") * mV
    for name, value in state.items():
        setattr(group, name, value)
    group.v_prev = model.v_init_mV * mV
    group.t_repol = -1.0 * ms
    pre = group.run_regularly(_pre_step_code(True), when="start", name=f"dic_pre_step{name_suffix}")
    group.run_on_event("dic_repol", "t_repol = t")
    monitor = EventMonitor(group, "dic_onset", variables=["v", "v_prev"], record=True, name=f"dic_onsets{name_suffix}")
    return group, pre, monitor, namespace


def _parameter_values(
    model: Model, gbar: np.ndarray, noise_std: np.ndarray, seed, dt_ms: float, noise_cutoff_hz: float
) -> dict:
    """Per-neuron values (SI units, plain floats) of the run-time parameters."""
    from brian2 import cm, msiemens, uA

    n = gbar.shape[0]
    values = {f"g_{ch.name}": gbar[:, j] * float(msiemens / cm**2) for j, ch in enumerate(model.channels)}
    if np.ndim(seed) == 1:  # one seed per row, as the numba backend
        seeds = np.asarray(seed, dtype=np.uint64)
        if seeds.shape != (n,):
            raise ValueError(f"seed must be an int or one int per row ({n}); got shape {seeds.shape}")
    elif (noise_std > 0).any():
        seeds = np.random.SeedSequence(seed).generate_state(max(n, 1), dtype=np.uint64)[:n]
    else:
        seeds = np.zeros(n, dtype=np.uint64)
    noise_tau_ms = 1000.0 / (2.0 * np.pi * noise_cutoff_hz)
    decay = float(np.exp(-dt_ms / noise_tau_ms))
    values["noise_scale"] = noise_std * np.sqrt(1.0 - decay**2) * float(uA / cm**2)
    values["noise_decay"] = decay
    values["seed_hi"] = (seeds >> np.uint64(32)).astype(np.uint32).view(np.int32)
    values["seed_lo"] = (seeds & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.int32)
    return values


def _pad(values: dict, n_total: int) -> dict:
    """Pad per-neuron arrays to n_total rows with copies of row 0 (noise off); padded rows are discarded."""
    out = {}
    for name, value in values.items():
        if np.ndim(value) == 0:
            out[name] = value
            continue
        value = np.asarray(value)
        fill = np.zeros_like(value[:1]) if name == "noise_scale" else value[:1]
        out[name] = np.concatenate([value, np.repeat(fill, n_total - value.size, axis=0)])
    return out


def _spike_trains(n: int, index, t_s, v, v_prev, t_repol_s, dt_ms, transient_ms, up_mV) -> list[np.ndarray]:
    """Onset times (ms of model time, after the transient) from the monitored events (the numba kernel's rule)."""
    index = np.asarray(index, dtype=np.int64)
    dt_s = dt_ms / 1000.0
    step = np.rint(np.asarray(t_s) / dt_s).astype(np.int64)
    v_mV, v_prev_mV = 1000.0 * np.asarray(v), 1000.0 * np.asarray(v_prev)
    onset_ms = (step + (up_mV - v_prev_mV) / (v_mV - v_prev_mV)) * dt_ms
    t_repol_s = np.asarray(t_repol_s)
    last_repol_step = np.where(t_repol_s >= 0, np.rint(t_repol_s / dt_s), -1).astype(np.int64)
    keep = (index < n) & (onset_ms >= transient_ms)
    keep &= step <= last_repol_step[np.clip(index, 0, last_repol_step.size - 1)]
    index, onset_ms = index[keep], onset_ms[keep]
    order = np.lexsort((onset_ms, index))
    index, onset_ms = index[order], onset_ms[order]
    bounds = np.searchsorted(index, np.arange(n + 1))
    return [onset_ms[bounds[i] : bounds[i + 1]] - transient_ms for i in range(n)]


# ------------------------------------------------------------------------------------------------ runtime targets
class _RuntimeNetwork:
    def __init__(self, model, n, dt_ms, method, target):
        from brian2 import Network, get_device, set_device
        from brian2.devices.device import runtime_device

        switched = get_device() is not runtime_device
        if switched:
            set_device(runtime_device, build_on_run=False)
        try:
            with _prefs(codegen__target=target):
                self.group, pre, self.monitor, self.namespace = _build_objects(model, n, dt_ms, _method(method))
                self.network = Network(self.group, pre, self.monitor, *self.group.contained_objects)
                self.network.store("dic_initial")
        finally:
            if switched:
                from brian2.devices.device import reset_device

                reset_device()
        self.target = target

    def run(self, values: dict, n_steps: int, dt_ms: float):
        from brian2 import ms

        self.network.restore("dic_initial")
        for name, value in values.items():
            setattr(self.group, name + "_" if np.ndim(value) else name, value)
        with _prefs(codegen__target=self.target):
            self.network.run(n_steps * dt_ms * ms, namespace=self.namespace)
        return (
            np.asarray(self.monitor.i[:]),
            np.asarray(self.monitor.t_[:]),
            np.asarray(self.monitor.v_[:]),
            np.asarray(self.monitor.v_prev_[:]),
            np.asarray(self.group.t_repol_[:]),
        )


# ---------------------------------------------------------------------------------------------- standalone target
class _StandaloneBuild:
    """A compiled standalone project that is re-run with new parameters through ``run_args``."""

    def __init__(self, model, n, dt_ms, n_steps, method, threads, directory: Path):
        from brian2 import Network, ms, set_device
        from brian2.devices.cpp_standalone.device import CPPStandaloneDevice
        from brian2.devices.device import reset_device
        from brian2.utils.filelock import FileLock
        from brian2.utils.logger import BrianLogger

        self.directory = directory
        self.device = CPPStandaloneDevice()
        directory.mkdir(parents=True, exist_ok=True)
        set_device(self.device, build_on_run=False, directory=str(directory))
        try:
            # The OpenMP warning of Brian2 ("not yet well tested") is expected here: neurons are independent.
            BrianLogger.suppress_name("cpp_standalone.device.openmp")
            with _prefs(devices__cpp_standalone__openmp_threads=threads if threads > 1 else 0):
                self.group, pre, self.monitor, namespace = _build_objects(model, n, dt_ms, _method(method))
                network = Network(self.group, pre, self.monitor, *self.group.contained_objects)
                network.run(n_steps * dt_ms * ms, namespace=namespace)
                with FileLock(str(directory / "dic_build.lock")):
                    self.device.build(directory=str(directory), compile=True, run=False, with_output=False)
        finally:
            reset_device()

    def run(self, values: dict):
        from brian2 import Quantity

        run_args = {}
        for name, value in values.items():
            view = getattr(self.group, name)
            run_args[view] = (
                Quantity(value, dim=view.dim) if view.dim is not None and not view.dim.is_dimensionless else value
            )
        results = f"results_{os.getpid()}_{uuid.uuid4().hex[:12]}"
        try:
            self.device.run(
                directory=str(self.directory), results_directory=results, with_output=False, run_args=run_args
            )
            return (
                np.asarray(self.monitor.i[:]),
                np.asarray(self.monitor.t_[:]),
                np.asarray(self.monitor.v_[:]),
                np.asarray(self.monitor.v_prev_[:]),
                np.asarray(self.group.t_repol_[:]),
            )
        finally:
            shutil.rmtree(self.directory / results, ignore_errors=True)
            for name in self.device.run_args_arrays:  # the parameter files written for this run
                for path in (name, name + ".lock"):
                    with contextlib.suppress(OSError):
                        os.remove(self.directory / "static_arrays" / path)


def _standalone_key(model, n, dt_ms, n_steps, method, threads) -> tuple:
    import brian2

    return (
        model.digest,  # the whole declaration (constants, thresholds, ...), not only what the equations show
        brian2_equations(model),
        _pre_step_code(True),
        _CPP_NORMAL,
        method,
        repr(float(dt_ms)),
        int(n_steps),
        int(n),
        int(threads),
        brian2.__version__,
        platform.machine(),
        platform.system(),
    )


def _get_standalone(model, n, dt_ms, n_steps, method, threads) -> _StandaloneBuild:
    key = _standalone_key(model, n, dt_ms, n_steps, method, threads)
    build = _STANDALONE_BUILDS.get(key)
    if build is None:
        digest = hashlib.sha1(repr(key).encode()).hexdigest()[:16]
        directory = brian2_cache_dir() / "standalone" / f"{model.name}_{digest}"
        build = _StandaloneBuild(model, n, dt_ms, n_steps, method, threads, directory)
        _STANDALONE_BUILDS[key] = build
    return build


def _get_runtime(model, n, dt_ms, method, target) -> _RuntimeNetwork:
    key = (model.digest, n, repr(float(dt_ms)), method, target)
    network = _RUNTIME_NETWORKS.pop(key, None)
    if network is None:
        network = _RuntimeNetwork(model, n, dt_ms, method, target)
    _RUNTIME_NETWORKS[key] = network
    while len(_RUNTIME_NETWORKS) > MAX_RUNTIME_NETWORKS:
        _RUNTIME_NETWORKS.popitem(last=False)
    return network


# ---------------------------------------------------------------------------------------------------- entry point
def simulate_brian2(
    model,
    gbar,
    duration_ms: float,
    transient_ms: float,
    noise_std=0.0,
    seed: int = 0,
    time_scale: float = 1.0,
    dt_ms: float | None = None,
    noise_cutoff_hz: float = 1000.0,
    target: str = "auto",
    method: str = "exponential_midpoint",
    n_threads: int | None = None,
):
    """Simulate every row of ``gbar`` with Brian2; same inputs and outputs as the numba backend.

    Parameters
    ----------
    model : str | Model
        "stg" | "da" or a model object.
    gbar : array_like, shape (n_neurons, n_channels) or (n_channels,)
        Maximal conductances in mS/cm2 (validated by :func:`~spikeinterface_dic.simulate.simulate`).
    duration_ms, transient_ms : float
        Total simulated time and the initial part discarded, in ms of biological (scaled) time.
    noise_std : float | array_like, default: 0.0
        Stationary sd of the OU noise current (uA/cm2), one value or one per row.
    seed : int | array_like of int, default: 0
        Noise seed; row i uses the i-th state of ``SeedSequence(seed)``, or ``seed[i]`` for an array (one uint64 per
        row), as the numba backend.
    time_scale : float, default: 1.0
        k: the unscaled model is integrated over duration / k and spike times are multiplied by k.
    dt_ms : float, default: None
        Step in ms of model (unscaled) time; None uses ``model.default_dt_ms``.
    noise_cutoff_hz : float, default: 1000.0
        Cut-off of the noise (correlation time 1 / (2 pi cut-off)), in biological time.
    target : "auto" | "cpp_standalone" | "cython" | "numpy", default: "auto"
        See the module docstring.
    method : str, default: "exponential_midpoint"
        Integration method: the numba kernel's scheme, or any Brian2 method name (e.g. "exponential_euler").
    n_threads : int, default: None
        OpenMP threads of the standalone target (None: one per 256 neurons, at most the CPUs available; 1 disables
        OpenMP).

    Returns
    -------
    spike_trains : list of np.ndarray
        One float64 array per row: spike times in seconds after the transient.
    """
    model = get_model(model)
    dt_ms = model.default_dt_ms if dt_ms is None else float(dt_ms)
    gbar = np.atleast_2d(np.asarray(gbar, dtype=float))
    n = gbar.shape[0]
    if gbar.ndim != 2 or gbar.shape[1] != model.n_channels:
        raise ValueError(f"gbar must have shape (n_neurons, {model.n_channels}); got {gbar.shape}")
    noise_std = np.broadcast_to(np.asarray(noise_std, dtype=float), (n,)).astype(float)
    if not (np.isfinite(time_scale) and time_scale > 0):
        raise ValueError(f"time_scale must be a positive number; got {time_scale}")
    if n == 0:
        return []
    duration_model = duration_ms / time_scale
    transient_model = transient_ms / time_scale
    n_steps = int(round(duration_model / dt_ms))
    if not (n_steps >= 1 and 0 <= transient_ms < duration_ms):
        raise ValueError(f"need 0 <= transient_ms < duration_ms and duration >= dt; got {transient_ms}, {duration_ms}")
    values = _parameter_values(model, gbar, noise_std, seed, dt_ms, noise_cutoff_hz * time_scale)
    with _LOCK:
        import brian2  # noqa: F401

        chosen = _resolve_target(target, n)
        if chosen == "cpp_standalone":
            threads = _default_threads(n) if n_threads is None else int(n_threads)
            size = _bucket(n)
            try:
                build = _get_standalone(model, size, dt_ms, n_steps, method, threads)
            except (RuntimeError, OSError) as error:  # the compilation failed (e.g. no OpenMP support)
                fallback = "cython" if _cython_available() else "numpy"
                warnings.warn(
                    f"Brian2 cpp_standalone build failed ({error}); using {fallback!r}", RuntimeWarning, stacklevel=2
                )
                chosen = fallback
            else:
                results = build.run(_pad(values, size))
        if chosen != "cpp_standalone":
            results = _get_runtime(model, n, dt_ms, method, chosen).run(values, n_steps, dt_ms)
    trains = _spike_trains(n, *results, dt_ms=dt_ms, transient_ms=transient_model, up_mV=model.spike_up_mV)
    return [train * (time_scale / 1000.0) for train in trains]


def clear_cache(disk: bool = False) -> None:
    """Forget the networks and standalone builds of this process; with ``disk``, also delete
    :func:`brian2_cache_dir` (compiled Cython modules and standalone projects)."""
    with _LOCK:
        _STANDALONE_BUILDS.clear()
        _RUNTIME_NETWORKS.clear()
        if disk:
            shutil.rmtree(brian2_cache_dir(), ignore_errors=True)


__all__ = ["simulate_brian2", "brian2_equations", "brian2_cache_dir", "available_targets", "clear_cache"]
