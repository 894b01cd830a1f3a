"""Degenerate populations: many maximal-conductance sets that share the same DICs at threshold (spec section 4).

``generate_population(model, g_s, g_u, n)`` returns exactly ``n`` conductance sets, all >= 0, whose dynamic input
conductances at V_th equal the target to within ``tolerance``:

A. Draw a base "spiking" population (Fyon et al. 2024): g_leak ~ Gamma with the mean and variance of U[a, b], the
   other ranged conductances uniform, every drawn or fixed conductance multiplied by g_leak / mean_leak; then solve
   for ``model.extra["spiking_solved"]`` so that every member has ``model.extra["spiking_targets"]``.
B. Choose the channels to compensate: ``channels=``, or the rule the model declares (``model.compensation``, read by
   :func:`default_compensation_channels`).
C. Start compensated channels with a declared prior (``model.compensation.priors``; STG: the authors' linear fits of
   g_CaS / g_CaT against g_s) there, the others at their base value.
D. Solve S[R, U] g_U = t_R - S[R, K] g_K for every member at once. When a compensated channel feeds a concentration
   (STG CaT, CaS: S_KCa depends on them through the steady-state calcium), the solve is repeated with S rebuilt at the
   last solution until each member's L2 DIC residual is <= ``tolerance`` (converged members leave the active set).
   The fixed-point update is Anderson-accelerated (a secant step), which needs ~6 solves where plain Picard needs
   ~15 to reach 1e-9 and also converges where Picard diverges. Without such a channel one solve is exact.
E. Members with a negative or non-finite conductance, a singular system or a residual above ``tolerance`` are
   replaced by fresh draws (child seeds of ``SeedSequence(seed)``) until exactly ``n`` are valid, or a ValueError names
   the unreachable target.

Differences from the authors' code (spec sections 4, 8): a convergence test instead of a fixed 6 solves, rejected
members redrawn instead of silently dropped, singular systems handled per member, reproducible seeds, and the DA
channel choice of the app ([ERG, CaL] for g_s < 0, else [ERG, Kd]). With a g_f target Na, the dominant fast
conductance, is compensated as a third channel.

Cost model (n members, C channels, k <= 3 unknowns). All members share V_th, so gate steady states, derivatives and
timescale weights are computed once per (model content, V) and cached (:class:`_SensitivityAtVoltage`, ~1 ms once). Per
member, S is that matrix divided by g_leak, except the columns of concentration-gated channels (STG KCa), which depend
on Ca_inf and dCa_inf/dV, both linear in gbar: one (n, C) @ (C,) product each plus O(1) element-wise work per member.
A batched k x k solve is closed-form, O(n k^3). One iteration is O(n C): ~0.2 ms (linear) to ~0.5 ms (accelerated)
per 1,000 members on 2 cores. A population costs (1 + resampling rounds) x (base solve + iterations x step): ~1.5 ms
for 1,000 [A, H] members, ~5 ms for [CaS, H]. Memory: a few (n, 3, C) float arrays.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from .dic import (
    COMPLEX_STEP,
    concentration_steady_state,
    gating_factor,
    gating_factor_partial,
    sensitivity_matrix,
    timescale_weight,
)
from .models import MODELS, Model, get_model

# Backward-compatible view of the priors now declared on the models (Model.compensation.priors): {model name:
# {channel: (intercept, slope)}} for the stock models only. New code reads model.compensation.prior_by_channel.
CALCIUM_PRIORS = {
    name: model.compensation.prior_by_channel
    for name, model in MODELS.items()
    if model.compensation is not None and model.compensation.priors
}


@dataclass
class CompensationReport:
    """How a population was obtained. Residuals are L2 norms over the targeted DIC components."""

    channels: tuple[str, ...]
    iterations: int  # solves used by the slowest batch (1 for a linear system)
    converged: bool  # every returned member is within tolerance (always True for a returned population)
    max_residual: float
    mean_residual: float
    n_resampled: int  # slots refilled because the first draw was rejected
    n_drawn: int  # base members drawn in all rounds
    n_rejected_negative: int = 0
    n_rejected_unconverged: int = 0
    n_rejected_singular: int = 0  # singular system or non-finite conductances
    n_rejected_base: int = 0  # base spiking members that were already invalid
    n_rounds: int = 1
    tolerance: float = 1e-9

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(eq=False)
class Population:
    """A degenerate population: ``gbar`` (n, n_channels) in mS/cm2 with columns ``conductance_names``."""

    gbar: np.ndarray
    model_name: str
    conductance_names: tuple[str, ...]
    target: tuple[float, float, float]  # (g_f or NaN when free, g_s, g_u)
    dics: np.ndarray  # achieved (g_f, g_s, g_u) at v_th_mV, shape (n, 3)
    report: CompensationReport
    v_th_mV: float

    def __len__(self) -> int:
        return self.gbar.shape[0]

    def __repr__(self) -> str:
        return (
            f"Population({self.model_name!r}, n={len(self)}, target (g_f, g_s, g_u)={self.target}, "
            f"channels={self.report.channels}, max residual {self.report.max_residual:.1e})"
        )

    def to_dataframe(self, include_dics: bool = False):
        """Conductances as a DataFrame with columns ``g_Na``, ``g_Kd``, ...; optionally the achieved g_f, g_s, g_u."""
        import pandas as pd

        frame = pd.DataFrame(self.gbar, columns=[f"g_{name}" for name in self.conductance_names])
        if include_dics:
            for column, name in enumerate(("g_f", "g_s", "g_u")):
                frame[name] = self.dics[:, column]
        return frame


# ---------------------------------------------------------------------------------------------- fast S at one voltage
class _SensitivityAtVoltage:
    """S(V; gbar) for many members at one shared voltage, equal to :func:`dic.sensitivity_matrix`.

    Only the leak (normalisation) and concentrations (through Ca_inf and dCa_inf/dV, both linear in gbar) make S
    depend on gbar, so everything else is computed once here.
    """

    def __init__(self, model: Model, v_mV: float):
        self.model, self.v = model, float(v_mV)
        n_channels = model.n_channels
        names = {c.name for c in model.concentrations}
        self.dependent = [
            index
            for index, channel in enumerate(model.channels)
            if any(names & set(model.free_names(model.gate_by_name[g].inf)) for g, _ in channel.gates)
        ]
        self.raw = sensitivity_matrix(model, np.ones(n_channels), self.v, normalize=False)
        # Concentration steady state and slope as offset + gbar @ coefficients (exactly linear in gbar).
        probe = np.vstack([np.zeros(n_channels), np.eye(n_channels)])
        self.concentrations = {}
        self.sources = set()
        for concentration in model.concentrations:
            value, slope = concentration_steady_state(model, concentration, np.full(n_channels + 1, self.v), probe)
            value, slope = np.broadcast_to(value, (n_channels + 1,)), np.broadcast_to(slope, (n_channels + 1,))
            self.concentrations[concentration.name] = (value[0], value[1:] - value[0], slope[0], slope[1:] - slope[0])
            self.sources.update(model.channel_index(name) for name in concentration.source_channels)
        tau = [model.function(e)(self.v) for e in (model.tau_fast_ms, model.tau_slow_ms, model.tau_ultraslow_ms)]

        def weights(tau_x):
            return float(timescale_weight(tau_x, tau[0], tau[1])), float(timescale_weight(tau_x, tau[1], tau[2]))

        # Gates of the concentration-dependent channels: compiled steady state, its arguments and DIC weights.
        self.gates = {}
        for index in self.dependent:
            for gate_name, _ in model.channels[index].gates:
                gate = model.gate_by_name[gate_name]
                arguments = model.free_names(gate.inf)
                if gate.dic_timescale == "fast":
                    gate_weights = (1.0, 1.0)
                elif gate.dic_timescale == "ultraslow":
                    gate_weights = (0.0, 0.0)
                else:
                    gate_weights = weights(model.function(gate.tau_ms)(self.v))
                self.gates[gate_name] = (model.function(gate.inf, arguments), arguments, gate_weights)
        self.concentration_weights = {c.name: weights(c.tau_ms) for c in model.concentrations}

    def depends_on(self, indices) -> bool:
        """Whether S changes with any of these conductances (other than through the leak)."""
        return any(int(i) in self.sources for i in indices) and bool(self.dependent)

    def __call__(self, gbar: np.ndarray, rows=slice(None)) -> np.ndarray:
        """Leak-normalised S[:, rows, :], shape (m, n_rows, n_channels), for gbar of shape (m, n_channels)."""
        model = self.model
        raw = self.raw[rows]
        matrix = np.empty((gbar.shape[0],) + raw.shape)
        matrix[:] = raw
        if self.dependent:
            arguments, slopes = {"V": self.v}, {}
            for name, (value, coefficients, slope, slope_coefficients) in self.concentrations.items():
                arguments[name] = value + gbar @ coefficients
                slopes[name] = slope + gbar @ slope_coefficients
            values, paths = {}, {}
            for gate_name, (function, names, (w_fs, w_su)) in self.gates.items():
                point = [arguments[name] for name in names]
                values[gate_name] = function(*point)
                paths[gate_name] = []
                for position, name in enumerate(names):  # complex-step derivative along V and each concentration
                    shifted = list(point)
                    shifted[position] = point[position] + 1j * COMPLEX_STEP
                    derivative = np.imag(function(*shifted)) / COMPLEX_STEP
                    if name == "V":
                        paths[gate_name].append((derivative, w_fs, w_su))
                    else:
                        paths[gate_name].append((derivative * slopes[name], *self.concentration_weights[name]))
            for index in self.dependent:
                channel = model.channels[index]
                driving = self.v - model.constants[channel.reversal]
                # Same accumulation as dic.channel_sensitivity, but with products associated as (w * partial) * slope:
                # sharing that helper changes STG populations by ~1e-16 relative (last bits), so it is kept apart.
                column = [gating_factor(channel, values), 0.0, 0.0]
                for gate_name, _ in channel.gates:
                    partial = gating_factor_partial(channel, values, gate_name) * driving
                    for slope, w_fs, w_su in paths[gate_name]:
                        column[0] = column[0] + w_fs * partial * slope
                        column[1] = column[1] + (w_su - w_fs) * partial * slope
                        column[2] = column[2] + (1.0 - w_su) * partial * slope
                matrix[:, :, index] = np.stack(np.broadcast_arrays(*column), axis=-1)[:, rows]
        matrix /= gbar[:, model.leak_index, None, None]
        return matrix


@lru_cache(maxsize=32)
def _sensitivity_at(model: Model, v_mV: float) -> _SensitivityAtVoltage:
    # Keyed by the model's content (Model.__hash__/__eq__ use its digest): a variant never reuses another's S.
    return _SensitivityAtVoltage(model, v_mV)


# ---------------------------------------------------------------------------------------------- batched solver
def _solve_batch(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve matrix[i] x[i] = rhs[i] for k <= 3 by the adjugate formula, NaN where singular or non-finite.

    For these tiny systems the closed form is 3-5x faster than ``np.linalg.solve`` (which calls LAPACK once per
    member) and equally accurate (a test checks both); every solution is verified by its DIC residual anyway.
    """
    k = matrix.shape[-1]
    if k == 1:
        determinant, solution = matrix[:, 0, 0], rhs.copy()
    elif k == 2:
        (a, b), (c, d) = matrix[:, 0].T, matrix[:, 1].T
        determinant = a * d - b * c
        solution = np.stack([d * rhs[:, 0] - b * rhs[:, 1], a * rhs[:, 1] - c * rhs[:, 0]], axis=1)
    elif k == 3:
        (a, b, c), (d, e, f), (g, h, i) = matrix[:, 0].T, matrix[:, 1].T, matrix[:, 2].T
        adjugate = np.array(
            [[e * i - f * h, c * h - b * i, b * f - c * e],
             [f * g - d * i, a * i - c * g, c * d - a * f],
             [d * h - e * g, b * g - a * h, a * e - b * d]]
        )  # fmt: skip
        determinant = a * adjugate[0, 0] + b * adjugate[1, 0] + c * adjugate[2, 0]
        solution = np.einsum("ijm,mj->mi", adjugate, rhs)
    else:
        raise ValueError(f"at most 3 channels can be compensated (one per DIC); got {k}")
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        solution = solution / determinant[:, None]
    solution[~(np.isfinite(solution).all(axis=1) & (determinant != 0))] = np.nan
    return solution


def _compensate(sensitivity, gbar, unknown, targets, prior, tolerance, max_iterations, accelerate=True):
    """Solve for the ``unknown`` columns of every member so that its DICs hit the finite ``targets``.

    ``prior`` (m, k) is where the unknowns start (it matters only when S depends on them). When it does, the fixed
    point x = F(x) on the compensated concentration sources (x: their values used to build S, F: their solution) is
    found by Picard steps with depth-1 Anderson acceleration (the secant method when one source is compensated),
    which converges in about half the solves of plain Picard and also where Picard diverges (|F'| > 1). Returns the
    new gbar, the L2 residual per member (inf where non-finite) and the number of solves of the slowest member.
    """
    rows = np.flatnonzero(np.isfinite(targets))
    target = targets[rows]
    unknown = np.asarray(unknown)
    sources = unknown[[int(i) in sensitivity.sources for i in unknown]]
    nonlinear = sensitivity.depends_on(unknown)
    out = gbar.copy()
    out[:, unknown] = prior
    residual = np.full(out.shape[0], np.inf)
    index, g = np.arange(out.shape[0]), out.copy()  # members still iterating and their (compact) conductances
    matrix = sensitivity(g, rows)
    x, previous = g[:, sources], None  # previous: (F(x), F(x) - x) of the last step, for the secant
    iterations = 0
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        while index.size and iterations < max_iterations:
            iterations += 1
            known = g.copy()
            known[:, unknown] = 0.0
            g[:, unknown] = _solve_batch(matrix[:, :, unknown], target - np.einsum("mrc,mc->mr", matrix, known))
            if nonlinear:
                matrix = sensitivity(g, rows)  # S at the solution: for the residual, and the Picard step
            error = np.einsum("mrc,mc->mr", matrix, g) - target
            residual[index] = np.sqrt((error * error).sum(axis=1))
            out[index] = g
            if not nonlinear:
                break
            keep = np.isfinite(residual[index]) & (residual[index] > tolerance)
            index, g, matrix, x = index[keep], g[keep], matrix[keep], x[keep]
            image = g[:, sources]
            step = image - x
            if accelerate and previous is not None:
                previous_image, previous_step = previous[0][keep], previous[1][keep]
                change = step - previous_step
                alpha = (step * change).sum(axis=1) / (change * change).sum(axis=1)
                alpha[~np.isfinite(alpha)] = 0.0
                x_next = image - alpha[:, None] * (image - previous_image)
                trial = g.copy()
                trial[:, sources] = x_next
                matrix = sensitivity(trial, rows)
            else:
                x_next = image
            previous, x = (image, step), x_next
    residual[~np.isfinite(residual)] = np.inf
    return out, residual, iterations


@dataclass
class _Batch:
    gbar: np.ndarray
    residual: np.ndarray
    iterations: int
    tolerance: float
    base_rejected: np.ndarray | None = None  # base members that were invalid before compensation

    def masks(self) -> dict[str, np.ndarray]:
        """Disjoint rejection reasons and the valid mask."""
        considered = np.ones(self.gbar.shape[0], bool) if self.base_rejected is None else ~self.base_rejected
        finite = np.isfinite(self.gbar).all(axis=1) & np.isfinite(self.residual)
        negative = considered & finite & (self.gbar < 0).any(axis=1)
        singular = considered & ~finite
        unconverged = considered & finite & ~negative & (self.residual > self.tolerance)
        valid = considered & finite & ~negative & ~unconverged
        return dict(valid=valid, negative=negative, unconverged=unconverged, singular=singular, base=~considered)


# ---------------------------------------------------------------------------------------------- step A
def _draw_base(model: Model, m: int, rng: np.random.Generator) -> np.ndarray:
    """Unsolved base members: leak ~ Gamma matched to U[a, b], others uniform, all scaled by g_leak / mean_leak."""
    ranges = model.extra["spiking_ranges"]
    low, high = ranges["leak"]
    shape, scale = 3.0 * (low + high) ** 2 / (high - low) ** 2, (high - low) ** 2 / (6.0 * (low + high))
    gbar = np.zeros((m, model.n_channels))
    leak = rng.gamma(shape, scale, size=m)
    factor = leak / (shape * scale)
    for name, (a, b) in ranges.items():
        if name != "leak":
            gbar[:, model.channel_index(name)] = rng.uniform(a, b, size=m) * factor
    for name, value in model.extra.get("fixed", {}).items():
        gbar[:, model.channel_index(name)] = value * factor
    gbar[:, model.leak_index] = leak
    return gbar


def _spiking_batch(model, sensitivity, m, rng, tolerance, max_iterations) -> _Batch:
    solved = [model.channel_index(name) for name in model.extra["spiking_solved"]]
    targets = np.asarray(model.extra["spiking_targets"], dtype=float)
    gbar = _draw_base(model, m, rng)
    gbar, residual, iterations = _compensate(
        sensitivity, gbar, solved, targets, np.zeros((m, len(solved))), tolerance, max_iterations
    )
    return _Batch(gbar, residual, iterations, tolerance)


_REASONS = ("negative", "unconverged", "singular", "base")
_MAX_BATCH = 20_000  # members per resampling batch, unless more are missing


def _fill(n: int, seed, max_resample_rounds: int, make_batch, describe: str):
    """Draw batches until ``n`` valid members exist (round 0 from SeedSequence(seed), later rounds from children)."""
    if isinstance(seed, np.random.SeedSequence):  # a copy: spawning below must not change the caller's object
        seed_sequence = np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key, pool_size=seed.pool_size)
    else:
        seed_sequence = np.random.SeedSequence(seed)
    batch = make_batch(n, np.random.default_rng(seed_sequence))
    masks = batch.masks()
    gbar, residual = batch.gbar, batch.residual
    rejected = {reason: int(masks[reason].sum()) for reason in _REASONS}
    n_drawn, n_valid, iterations, rounds = n, int(masks["valid"].sum()), batch.iterations, 0
    empty = np.flatnonzero(~masks["valid"])
    n_resampled = empty.size
    while empty.size and rounds < max_resample_rounds:
        if n_valid == 0 and n_drawn >= max(20 * n, 2000):
            break  # nothing reaches this target: more rounds would only cost time
        rounds += 1
        # Oversample by the observed acceptance so that most targets fill in one extra round (bounded memory).
        size = math.ceil(1.2 * empty.size / max(n_valid / n_drawn, 0.05))
        size = min(size, max(2 * empty.size, _MAX_BATCH))
        batch = make_batch(size, np.random.default_rng(seed_sequence.spawn(1)[0]))
        masks = batch.masks()
        iterations = max(iterations, batch.iterations)
        for reason in _REASONS:
            rejected[reason] += int(masks[reason].sum())
        accepted = np.flatnonzero(masks["valid"])
        n_drawn, n_valid = n_drawn + size, n_valid + accepted.size
        take = accepted[: empty.size]
        gbar[empty[: take.size]], residual[empty[: take.size]] = batch.gbar[take], batch.residual[take]
        empty = empty[take.size :]
    if empty.size:
        raise ValueError(
            f"could not build {n} valid members for {describe}: only {n_valid} of {n_drawn} draws "
            f"({n_valid / n_drawn:.1%}) had non-negative conductances reaching the target within tolerance after "
            f"{rounds} resampling round{'' if rounds == 1 else 's'} (rejected: {rejected['negative']} negative, "
            f"{rejected['unconverged']} unconverged, {rejected['singular']} singular, {rejected['base']} invalid base "
            "members). The target is probably unreachable with these channels: choose a target inside the training "
            "range or other channels via channels=."
        )
    counts = dict(iterations=iterations, n_resampled=n_resampled, n_drawn=n_drawn, n_rounds=rounds + 1)
    counts.update({f"n_rejected_{reason}": value for reason, value in rejected.items()})
    return gbar, residual, counts


# ---------------------------------------------------------------------------------------------- public API
def default_compensation_channels(model, g_s: float, g_u: float, g_f: float | None = None) -> tuple[str, ...]:
    """Channels compensated to reach (g_s, g_u) (and g_f if given), as declared by ``model.compensation``.

    The stock declarations (spec 4.2 step B, 4.3) are chosen for reachability. STG: g_u < 0 -> (CaS, A);
    g_s >= 0 -> (A, H); else (CaS, H). DA: g_s < 0 -> (ERG, CaL); else (ERG, Kd). With a g_f target, Na (the dominant
    fast conductance) is added as a third channel.

    Raises
    ------
    ValueError
        When the model declares no compensation rule (or no fast channel for a g_f target): pass ``channels=``.
    """
    model = get_model(model)
    if model.compensation is None:
        raise ValueError(
            f"model {model.name!r} declares no compensation rule (Model.compensation), so there are no default "
            "compensation channels; pass channels=, e.g. channels=('CaS', 'H')"
        )
    try:
        return model.compensation.channels_for(g_s, g_u, g_f)
    except ValueError as error:
        raise ValueError(f"model {model.name!r}: {error}") from None


def _check_common(model: Model, n, tolerance, max_iterations, max_resample_rounds) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1 (the number of members); got {n!r}")
    if not (np.isfinite(tolerance) and tolerance > 0):
        raise ValueError(f"tolerance must be a finite positive DIC residual; got {tolerance!r}")
    if max_iterations < 1 or max_resample_rounds < 0:
        raise ValueError(
            f"max_iterations must be >= 1 and max_resample_rounds >= 0; got {max_iterations}, {max_resample_rounds}"
        )
    for key in ("spiking_ranges", "spiking_solved", "spiking_targets"):
        if key not in model.extra:
            raise ValueError(f"model {model.name!r} declares no base spiking population (model.extra[{key!r}])")


def generate_spiking_population(
    model, n: int = 100, seed=0, v_th_mV: float | None = None, tolerance: float = 1e-9, max_resample_rounds: int = 20
) -> Population:
    """Step A alone: ``n`` base members reaching ``model.extra["spiking_targets"]`` at V_th (spec 4.2 A, 4.3).

    Parameters
    ----------
    model : str | Model
        "stg" | "da" or a model object declaring ``extra["spiking_ranges"]``, ``["spiking_solved"]`` and
        ``["spiking_targets"]``.
    n : int, default: 100
        Number of members (exactly ``n`` are returned).
    seed : int | SeedSequence, default: 0
        The same seed gives the base population that :func:`generate_population` compensates.
    v_th_mV : float | None, default: None
        Voltage (mV) of the targets; None uses the model's fixed V_th.
    tolerance : float, default: 1e-9
        Maximal L2 DIC residual of an accepted member.
    max_resample_rounds : int, default: 20
        Rounds of redrawing rejected members before giving up.
    """
    model = get_model(model)
    _check_common(model, n, tolerance, 1, max_resample_rounds)
    v = float(model.v_th_mV if v_th_mV is None else v_th_mV)
    sensitivity = _sensitivity_at(model, v)

    def make_batch(m, rng):
        return _spiking_batch(model, sensitivity, m, rng, tolerance, 1)

    targets = tuple(float(t) for t in model.extra["spiking_targets"])
    gbar, residual, counts = _fill(n, seed, max_resample_rounds, make_batch, f"the spiking targets {targets}")
    solved = tuple(model.extra["spiking_solved"])
    return _population(model, gbar, residual, sensitivity, targets, solved, tolerance, v, counts)


def generate_population(
    model,
    g_s: float,
    g_u: float,
    n: int = 100,
    seed=0,
    g_f: float | None = None,
    channels=None,
    tolerance: float = 1e-9,
    max_iterations: int = 100,
    v_th_mV: float | None = None,
    max_resample_rounds: int = 20,
) -> Population:
    """A degenerate population of ``n`` members whose DICs at V_th are (g_f, g_s, g_u) (spec section 4).

    Parameters
    ----------
    model : str | Model
        "stg" | "da" or a model object.
    g_s, g_u : float
        Target slow and ultraslow DICs (leak-normalised, dimensionless).
    n : int, default: 100
        Number of members; exactly ``n`` are returned or a ValueError is raised.
    seed : int | SeedSequence, default: 0
        Same seed, same population.
    g_f : float | None, default: None
        Target fast DIC; None leaves it free (it drifts from the base value, as in the method).
    channels : sequence of str | None, default: None
        Channels to compensate (2, or 3 with ``g_f``); None uses :func:`default_compensation_channels`.
    tolerance : float, default: 1e-9
        Maximal L2 DIC residual over the targeted components for a member to be accepted.
    max_iterations : int, default: 100
        Maximal number of solves of the Picard iteration (used only when S depends on the compensated channels).
    v_th_mV : float | None, default: None
        Voltage (mV) at which DICs are targeted; None uses the model's fixed V_th.
    max_resample_rounds : int, default: 20
        Rounds of redrawing rejected members before giving up.

    Returns
    -------
    Population
        ``gbar`` (n, n_channels), the achieved ``dics`` and a :class:`CompensationReport`.

    Examples
    --------
    >>> population = generate_population("stg", g_s=-4.0, g_u=5.0, n=1000, seed=0)
    >>> population.report.channels, population.report.max_residual < 1e-9
    (('CaS', 'H'), True)
    """
    model = get_model(model)
    _check_common(model, n, tolerance, max_iterations, max_resample_rounds)
    for name, value in (("g_s", g_s), ("g_u", g_u), ("g_f", 0.0 if g_f is None else g_f)):
        if not np.isfinite(value):
            raise ValueError(f"target {name} must be finite; got {value!r} (use g_f=None to leave g_f free)")
    if isinstance(channels, str):
        raise ValueError(f"channels must be a sequence of channel names such as ('CaS', 'H'); got {channels!r}")
    channels = tuple(default_compensation_channels(model, g_s, g_u, g_f) if channels is None else channels)
    n_targets = 2 if g_f is None else 3
    if len(channels) != n_targets or len(set(channels)) != len(channels) or model.conductance_names[-1] in channels:
        raise ValueError(
            f"{n_targets} targets need {n_targets} distinct non-leak channels to compensate; got {channels}"
        )
    unknown = [model.channel_index(name) for name in channels]
    targets = np.array([np.nan if g_f is None else g_f, g_s, g_u], dtype=float)
    v = float(model.v_th_mV if v_th_mV is None else v_th_mV)
    sensitivity = _sensitivity_at(model, v)
    fits = {} if model.compensation is None else model.compensation.prior_by_channel

    def make_batch(m, rng):
        base = _spiking_batch(model, sensitivity, m, rng, tolerance, 1)
        prior = base.gbar[:, unknown].copy()  # the base value is the prior for channels without a fitted one
        for column, name in enumerate(channels):
            if name in fits:
                prior[:, column] = max(fits[name][0] + fits[name][1] * g_s, 0.0)
        gbar, residual, iterations = _compensate(
            sensitivity, base.gbar, unknown, targets, prior, tolerance, max_iterations
        )
        return _Batch(gbar, residual, iterations, tolerance, base_rejected=~base.masks()["valid"])

    describe = f"target g_s={g_s}, g_u={g_u}" + ("" if g_f is None else f", g_f={g_f}")
    describe += f" (model {model.name!r}, compensating {', '.join(channels)})"
    gbar, residual, counts = _fill(n, seed, max_resample_rounds, make_batch, describe)
    return _population(model, gbar, residual, sensitivity, tuple(targets.tolist()), channels, tolerance, v, counts)


def _population(model, gbar, residual, sensitivity, target, channels, tolerance, v, counts) -> Population:
    dics = np.einsum("mrc,mc->mr", sensitivity(gbar), gbar)
    report = CompensationReport(
        channels=tuple(channels),
        converged=bool((residual <= tolerance).all()),
        max_residual=float(residual.max()),
        mean_residual=float(residual.mean()),
        tolerance=float(tolerance),
        **counts,
    )
    return Population(gbar, model.name, model.conductance_names, target, dics, report, v)
