"""Twins drawn from the unit's posterior, refined by sequential Monte Carlo ABC.

Why: a train does not fix one point (g_s, g_u, k): a tonic train fixes a curve of equal rate, a bursting one a
small region. A population built for the posterior median spans less than the train allows, and its members that
miss the unit's pattern could only be replaced by members of the same point. Here each twin gets its own
theta = (g_s, g_u, ln k) drawn from the unit's posterior q0(theta | train) (the flows of
:mod:`.inference.posterior`; a known k stays fixed, a range of k truncates q0), a member of the degenerate
population of its (g_s, g_u), and its own k. Twin selection becomes a posterior-predictive step, whose target is

    pi(theta) ~ q0(theta | train) x 1[the twin simulated at theta fires in the unit's pattern]

(pattern: :func:`.features.pattern_matches`: label, main frequency, spikes per burst), sampled by population Monte
Carlo ABC (Beaumont, Cornuet, Marin & Robert 2009): round 0 draws from q0; each later round perturbs the best
particles with a Gaussian kernel of twice their weighted covariance (adaptive tolerance: the matching particles once
any match, else those within the median pattern distance of the pool, :func:`.features.pattern_distance`) and
weights each new particle by q0 / (the kernel mixture), so that the matching particles are a weighted sample of pi
whatever the proposals were. A unit stops when it has ``population_size`` matching twins or when its budget is spent
(``MAX_CANDIDATES_PER_TWIN`` x population_size candidates after round 0, in at most ``SMC_ROUNDS`` rounds); a
unit none of whose first twins matches keeps going from its closest ones instead of stopping at zero accepted, with
a kernel widened by ``NO_MATCH_WIDENING`` per round while nothing matches. Twins may lie ``TWIN_SUPPORT_MARGIN`` of
the training region beyond it. A long recorded train is read in segments (:func:`.inference.posterior.segments`):
q0 is then the mixture of the segments' posteriors, drawn and evaluated as such.

Time scale: for a unit whose k is estimated and ``adapt_time_scale``, round 0's twins also fix the network's bias
on k, as the point-estimate path does (:func:`.twin_simulation.adapt_time_scales`): q0 is shifted in ln k by the
log ratio of the twins' median main frequency to the recorded one (time scaling is exact, so the round-0 twins are
rescaled, not simulated again), and the shifted q0 is the refinement's prior. Then each round-0 twin that fires in
the unit's pattern gets the k of its own frequency (:func:`_adapt_twin_time_scales`), weighted by q0's probability of
such a k given its (g_s, g_u), so that the refinement's target is unchanged.

Reported per unit (:data:`.schema.TWIN_COLUMNS`): the first twins' matching fraction, the candidates simulated and
accepted, and the (g_s, g_u, k) of the matching particles (weighted median and sd: the posterior given the pattern),
next to the network's. Each twin's (g_s, g_u, k) is kept (``twin_parameters``).

Cost model: simulation dominates, as in :mod:`.twin_simulation`: (population_size + candidates) rows per unit; a
member costs ~1 ms to generate (one compensation solve), a flow density ~10 us per particle; the per-twin k's weights
cost one flow call of FREQUENCY_WEIGHT_DRAWS draws per unit (~40 ms on 2 cores).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .features import pattern_distance, pattern_matches, spike_train_features
from .twin_selection import MAX_CANDIDATES_PER_TWIN
from .twin_simulation import SIMULATED_TIME_SCALES, fidelity_table, simulate_rows, unit_child_seed

# Refinement rounds after the first draw (each simulates the candidates of every unfinished unit in one batch).
SMC_ROUNDS = 5
# Candidates of one round, at most this many times the population size (exploration steps when nothing matches yet
# stay small, so the adaptive tolerance can tighten between them).
MAX_ROUND_CANDIDATES_PER_TWIN = 4.0
# Kernel covariance floor, as a fraction of the sd of the unit's round-0 posterior draws (so that a kernel never
# collapses on a few identical particles, whatever the posterior's own width), and the spread used when fewer than
# MIN_PARENTS_FOR_COVARIANCE particles lead (a fraction of the round-0 draws' covariance).
KERNEL_FLOOR_FRACTION = 0.05
MIN_PARENTS_FOR_COVARIANCE = 4
FEW_PARENTS_SPREAD = 0.5
# While nothing matches, each round widens the kernel by this factor (in sd): a unit whose posterior is narrow and
# misplaced (the flow is wrong, or DICs alone do not fix the unit's spikes per burst) is searched further out
# instead of around the same misses. The importance weights keep the matching twins' weighting exact.
NO_MATCH_WIDENING = 3.0
# Draws of q0 per twin in round 0 (those outside the generator's region are redrawn from the extra ones).
ROUND0_OVERDRAW = 4


@dataclass
class _Unit:
    """One unit's particles over the rounds."""

    unit_id: object
    reference: pd.Series
    flow: str
    context: np.ndarray
    free: np.ndarray  # indices of the parameters that move (ln k fixed when k is known)
    known_log_k: float
    size: int
    seed: int
    low: np.ndarray  # support of the target in (g_s, g_u, ln k)
    high: np.ndarray
    pieces: list = field(default_factory=list)  # the segments the flows read (one unless the train is long)
    log_inside: float = 0.0  # log of q0's mass inside the support (round 0's acceptance)
    log_k_shift: float = 0.0
    theta: list = field(default_factory=list)  # (m, 3) blocks: g_s, g_u, ln k
    gbar: list = field(default_factory=list)
    trains: list = field(default_factory=list)
    distance: list = field(default_factory=list)
    matches: list = field(default_factory=list)
    log_weight: list = field(default_factory=list)
    round0_cov: np.ndarray | None = None
    widening: float = 1.0  # kernel sd factor, grown while nothing matches
    first_fraction: float = math.nan
    first_fraction_network_k: float = math.nan
    spent: int = 0
    note: str = ""

    def stacked(self):
        return (
            np.concatenate(self.theta),
            np.concatenate(self.distance),
            np.concatenate(self.matches),
            np.concatenate(self.log_weight),
        )

    @property
    def matched(self) -> int:
        return int(sum(m.sum() for m in self.matches))


def posterior_twins_available(config) -> bool:
    """Whether the run's model has posterior flows (the shipped STG and DA models do)."""
    from .inference.posterior import has_posterior

    return config.twin_sampling == "posterior" and has_posterior(config.model_declaration.name, config.weights_dir)


# Twins may lie this fraction of the training region's width beyond it, on each side. Why: real neurons do not keep
# to the region the flows were trained on, and the posterior of a unit near its edge extends past it; clipping such
# a unit's twins to the edge left units with no matching twin (4 of 100 held-out STG units, all at g_s = -20).
TWIN_SUPPORT_MARGIN = 0.25


def _support(config, known_log_k: float) -> tuple[np.ndarray, np.ndarray]:
    """Where twins are built: the training region of (g_s, g_u) widened by TWIN_SUPPORT_MARGIN, with g_u >= 0.5
    (the lowest target the generator reaches), the simulated k range and the user's range of k."""
    model = config.model_declaration
    g_s_range = _widened(model.extra.get("training_g_s", (-np.inf, np.inf)))
    g_u_range = _widened(model.extra.get("training_g_u", (-np.inf, np.inf)))
    k_low, k_high = SIMULATED_TIME_SCALES
    if config.time_scale_range is not None:
        k_low, k_high = max(k_low, config.time_scale_range[0]), min(k_high, config.time_scale_range[1])
    if np.isfinite(known_log_k):
        k_low = k_high = math.exp(known_log_k)
    low = np.array([g_s_range[0], max(g_u_range[0], 0.5), math.log(k_low)])
    high = np.array([g_s_range[1], g_u_range[1], math.log(k_high)])
    return low, high


def _widened(bounds) -> tuple[float, float]:
    low, high = bounds
    margin = TWIN_SUPPORT_MARGIN * (high - low) if np.isfinite(high - low) else 0.0
    return low - margin, high + margin


def _inside(theta: np.ndarray, unit: _Unit) -> np.ndarray:
    free = unit.free
    return np.all((theta[:, free] >= unit.low[free]) & (theta[:, free] <= unit.high[free]), axis=1)


def _prepare_units(config, estimates, recorded_trains, unit_ids) -> dict:
    from .inference.posterior import load_posterior, segment_contexts
    from .inference.predict import load_predictor

    model = config.model_declaration
    folder = config.weights_dir
    posterior = load_posterior(model.name, folder)
    predictor = load_predictor(model.name, folder)
    reference = spike_train_features({u: np.asarray(recorded_trains[u], dtype=float) for u in unit_ids})
    units = {}
    for unit_id in unit_ids:
        known_k = config.known_time_scale(unit_id)
        train = np.asarray(recorded_trains[unit_id], dtype=float)
        flow = "known_k" if np.isfinite(known_k) else "joint"
        read = train / known_k if flow == "known_k" else train
        context, _, pieces = segment_contexts(predictor, [read], flow)
        known_log_k = math.log(known_k) if np.isfinite(known_k) else math.nan
        low, high = _support(config, known_log_k)
        units[unit_id] = _Unit(
            unit_id=unit_id,
            reference=reference.loc[unit_id],
            flow=flow,
            context=context,
            free=np.array([0, 1] if flow == "known_k" else [0, 1, 2]),
            known_log_k=known_log_k,
            size=config.population_size,
            seed=unit_child_seed(config.seed, unit_id),
            low=low,
            high=high,
            pieces=pieces,
        )
    return units, posterior


def _first_draws(unit: _Unit, posterior) -> np.ndarray:
    """Round 0: ``size`` draws of q0 inside the support (truncated q0); when q0 holds too little mass there, the
    missing draws are clipped to it (as a point estimate outside the region is) and the unit says so."""
    from .inference.posterior import pooled_samples

    n = unit.size * ROUND0_OVERDRAW
    # The flow's own samples (their mixture over the train's segments): the refinement's importance weights use its
    # density (_log_prior).
    owners = np.zeros(len(unit.pieces), dtype=int)
    draws = pooled_samples(posterior, unit.context, owners, unit.pieces, 1, n, unit.flow, unit.seed, False)[0]
    theta = np.empty((n, 3))
    theta[:, :2] = draws[:, :2]
    theta[:, 2] = draws[:, 2] if unit.flow == "joint" else unit.known_log_k
    inside = _inside(theta, unit)
    unit.log_inside = math.log(max(inside.mean(), 1.0 / n))
    chosen = theta[inside][: unit.size]
    if len(chosen) < unit.size:
        clipped = np.clip(theta[~inside][: unit.size - len(chosen)], unit.low, unit.high)
        unit.note = (
            f"{len(clipped)} of {unit.size} first twins clipped to the generator's region (the posterior holds "
            f"{100 * inside.mean():.0f} % of its mass there)"
        )
        chosen = np.concatenate([chosen, clipped])
    unit.round0_cov = np.cov(_standardised(chosen, unit, posterior).T) if len(chosen) > 1 else None
    return chosen


def _standardised(theta: np.ndarray, unit: _Unit, posterior) -> np.ndarray:
    """Free parameters in the flow's standardised units (the kernel works there: g_s, g_u and ln k comparable)."""
    scaling = posterior.scaling[unit.flow]
    mean, std = scaling["target_mean"], scaling["target_std"]
    return (theta[:, unit.free] - mean[: len(unit.free)]) / std[: len(unit.free)]


def _from_standardised(z: np.ndarray, unit: _Unit, posterior) -> np.ndarray:
    scaling = posterior.scaling[unit.flow]
    mean, std = scaling["target_mean"], scaling["target_std"]
    theta = np.empty((len(z), 3))
    theta[:, unit.free] = z * std[: len(unit.free)] + mean[: len(unit.free)]
    if unit.flow == "known_k":
        theta[:, 2] = unit.known_log_k
    return theta


def _log_prior(theta: np.ndarray, unit: _Unit, posterior) -> np.ndarray:
    """log q0 (shifted in ln k by the adaptation, truncated to the support) at parameter rows."""
    shifted = theta[:, unit.free].copy()
    if unit.flow == "joint":
        shifted[:, 2] -= unit.log_k_shift
    per_segment = posterior.log_prob(unit.context, shifted, unit.flow)  # (segments, particles)
    peak = per_segment.max(axis=0)
    mixture = peak + np.log(np.exp(per_segment - peak).mean(axis=0))  # the segments' mixture, as drawn
    return mixture - unit.log_inside


def _members(config, unit: _Unit, theta: np.ndarray, round_index: int) -> tuple[np.ndarray, np.ndarray]:
    """One degenerate-population member per particle (NaN row where the generator cannot reach the target)."""
    from .population import generate_population

    model = config.model_declaration
    gbar = np.full((len(theta), model.n_channels), np.nan)
    seeds = np.random.SeedSequence([unit.seed, 17, round_index]).generate_state(len(theta))
    for i, (g_s, g_u, _) in enumerate(theta):
        try:
            gbar[i] = generate_population(model, g_s=float(g_s), g_u=float(g_u), n=1, seed=int(seeds[i])).gbar[0]
        except ValueError:
            continue
    return gbar, np.isfinite(gbar).all(axis=1)


def _simulate(config, batch: dict, round_index: int) -> dict:
    """Simulate every unit's particles of a round in one batch: {unit_id: list of trains (empty for unbuilt)}."""
    gbar, k, seeds, owners = [], [], [], []
    for unit_id, (unit, theta, members, built) in batch.items():
        rows = np.flatnonzero(built)
        noise_seeds = np.random.SeedSequence([unit.seed, 1000 + round_index]).generate_state(
            len(theta), dtype=np.uint64
        )
        gbar.append(members[rows])
        k.append(np.exp(theta[rows, 2]))
        seeds.append(noise_seeds[rows])
        owners += [(unit_id, i) for i in rows]
    out = {unit_id: [np.empty(0)] * len(batch[unit_id][1]) for unit_id in batch}
    if owners:
        trains = simulate_rows(config, np.concatenate(gbar), np.concatenate(k), np.concatenate(seeds))
        for (unit_id, i), train in zip(owners, trains, strict=True):
            out[unit_id][i] = train
    return out


def _score(config, unit: _Unit, trains: list, built: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = spike_train_features(trains)
    distance = pattern_distance(unit.reference, features, **config.pattern_tolerances())
    matches = pattern_matches(unit.reference, features, **config.pattern_tolerances())
    distance = np.where(built, distance, np.inf)
    return distance, matches & built


def _adapt_time_scale(config, unit: _Unit, theta: np.ndarray, trains: list) -> tuple[np.ndarray, list]:
    """Shift ln k of the round-0 twins (and of q0) so that their median main frequency is the recorded one; see
    the module docstring. Returns the shifted parameters and rescaled trains (unchanged when not applicable)."""
    if unit.flow != "joint" or not config.adapt_time_scale:
        return theta, trains
    features = spike_train_features(trains)
    same = features["label"].to_numpy() == unit.reference["label"]
    frequency = features["main_frequency_hz"].to_numpy(float)[same]
    frequency = frequency[np.isfinite(frequency)]
    reference_hz = float(unit.reference["main_frequency_hz"])
    if same.mean() < 0.5 or not np.isfinite(reference_hz) or frequency.size == 0:
        return theta, trains
    ratio = float(np.median(frequency) / reference_hz)
    median_k = float(np.exp(np.median(theta[:, 2]) + math.log(ratio)))
    if config.time_scale_range is not None and not config.time_scale_range[0] <= median_k <= config.time_scale_range[1]:
        return theta, trains  # what the user knows of k wins over the twins' frequency
    unit.log_k_shift = math.log(ratio)
    theta = theta.copy()
    theta[:, 2] += unit.log_k_shift
    if config.duration_s is None:  # each twin's window is its model-time window x its k: it scales with k
        return theta, [t * ratio for t in trains]
    return theta, [t[t * ratio <= config.duration_s] * ratio for t in trains]


# Draws of q0 per unit that estimate, for each rescaled first twin, how likely q0's ln k is to give its frequency.
FREQUENCY_WEIGHT_DRAWS = 4000


def _adapt_twin_time_scales(config, unit: _Unit, theta: np.ndarray, trains: list, built: np.ndarray, posterior):
    """Round 0, k estimated: each first twin that fires in the unit's pattern gets the k that gives the recorded main
    frequency (exact time scaling: its train is rescaled, not simulated again).

    Why: on held-out DA units 42 % of the first twins missed on frequency alone (23 % matched): ln k drawn from the
    posterior is mostly too imprecise for the frequency tolerance, and given a twin's (g_s, g_u), member and noise,
    its frequency fixes k. The weights keep the refinement's target pi ~ q0 x 1[match] (Rao-Blackwellised over ln k):
    the twin as drawn matched on frequency with probability P(ln k in I | g_s, g_u) under q0, where I is the interval
    of ln k around the rescaled value that the frequency tolerance accepts; the rescaled twin carries that
    probability as its weight (an exact draw of q0 that matched carries 1). The probability is a kernel estimate
    (:func:`_probability_given_dics`) from FREQUENCY_WEIGHT_DRAWS draws of q0: the flow's conditional of ln k can be a
    spike ~1e-4 wide (the prior's point mass at k = 1), which density quadrature misses.

    Returns the parameters, trains and log weights of the first twins.
    """
    from .inference.posterior import pooled_samples

    log_weight = np.zeros(len(theta))
    tolerance = float(config.frequency_tolerance)
    reference_hz = float(unit.reference["main_frequency_hz"])
    if (
        unit.flow != "joint"
        or not config.adapt_time_scale
        or not 0.0 < tolerance < 1.0
        or not np.isfinite(reference_hz)
        or reference_hz <= 0.0
    ):
        return theta, trains, log_weight
    features = spike_train_features(trains)
    frequency = features["main_frequency_hz"].to_numpy(float)
    in_pattern = pattern_matches(unit.reference, features, **config.pattern_tolerances(frequency=False))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log(frequency / reference_hz)
    candidate = theta.copy()
    candidate[:, 2] += np.where(np.isfinite(log_ratio), log_ratio, 0.0)
    chosen = np.flatnonzero(built & in_pattern & np.isfinite(log_ratio) & _inside(candidate, unit))
    if not chosen.size:
        return theta, trains, log_weight
    theta, trains = theta.copy(), list(trains)
    for i in chosen:
        ratio = math.exp(float(log_ratio[i]))
        train = np.asarray(trains[i], dtype=float) * ratio
        trains[i] = train if config.duration_s is None else train[train <= config.duration_s]
        theta[i] = candidate[i]
    # q0 (shifted and truncated as the refinement's prior) by its draws; a frequency f matches when
    # |f / f_ref - 1| <= tol, i.e. ln k within [h - ln(1 + tol), h - ln(1 - tol)] of the rescaled twin's h.
    owners = np.zeros(len(unit.pieces), dtype=int)
    draws = pooled_samples(
        posterior, unit.context, owners, unit.pieces, 1, FREQUENCY_WEIGHT_DRAWS, "joint", unit.seed + 1, False
    )[0]
    draws[:, 2] += unit.log_k_shift
    draws = draws[_inside(draws, unit)]
    probability = _probability_given_dics(
        draws, theta[chosen, :2], theta[chosen, 2] - math.log1p(tolerance), theta[chosen, 2] - math.log1p(-tolerance)
    )
    log_weight[chosen] = np.log(probability)
    return theta, trains, log_weight


def _probability_given_dics(draws: np.ndarray, dics: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """P(lower_i <= ln k <= upper_i | g_s, g_u = dics_i) from joint draws (n, 3) of (g_s, g_u, ln k): a Gaussian
    kernel regression (Nadaraya-Watson) in (g_s, g_u) standardised by the draws' sds, bandwidth n^(-1/6) (Scott's
    rule in two dimensions). Floored at 1 / (2 n): a twin outside every draw's interval keeps a small weight rather
    than none. Cost: O(n x m)."""
    n = len(draws)
    if n == 0:
        return np.full(len(dics), 1.0)
    scale = np.maximum(draws[:, :2].std(axis=0), 1e-9)
    bandwidth = n ** (-1.0 / 6.0)
    distance = ((dics[:, None, :] - draws[None, :, :2]) / scale) / bandwidth  # (m, n, 2)
    log_kernel = -0.5 * (distance**2).sum(axis=2)
    kernel = np.exp(log_kernel - log_kernel.max(axis=1, keepdims=True))
    inside = (draws[None, :, 2] >= lower[:, None]) & (draws[None, :, 2] <= upper[:, None])
    probability = (kernel * inside).sum(axis=1) / kernel.sum(axis=1)
    return np.maximum(probability, 0.5 / n)


def _proposals(unit: _Unit, posterior, count: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """``count`` perturbed particles inside the support and their log importance weights (q0 / kernel mixture)."""
    theta, distance, matches, log_weight = unit.stacked()
    usable = np.isfinite(distance) & np.isfinite(log_weight)
    if matches.any():
        parents = np.flatnonzero(matches & usable)
    else:
        tolerance = np.median(distance[usable]) if usable.any() else np.inf
        parents = np.flatnonzero(usable & (distance <= tolerance))
        if len(parents) < MIN_PARENTS_FOR_COVARIANCE:
            parents = np.flatnonzero(usable)[np.argsort(distance[usable])][:MIN_PARENTS_FOR_COVARIANCE]
    if not len(parents):
        return np.empty((0, 3)), np.empty(0)
    z_parents = _standardised(theta[parents], unit, posterior)
    weights = np.exp(log_weight[parents] - log_weight[parents].max())
    weights /= weights.sum()
    dims = z_parents.shape[1]
    spread = np.atleast_2d(unit.round0_cov) if unit.round0_cov is not None else np.eye(dims)
    if len(parents) >= MIN_PARENTS_FOR_COVARIANCE:
        centred = z_parents - weights @ z_parents
        cov = 2.0 * (centred * weights[:, None]).T @ centred
    else:
        cov = FEW_PARENTS_SPREAD * spread
    cov = (np.atleast_2d(cov) + np.diag(KERNEL_FLOOR_FRACTION**2 * np.diag(spread) + 1e-12)) * unit.widening**2
    chol = np.linalg.cholesky(cov)
    accepted = []
    for _ in range(8):  # redraw the proposals that fall outside the support
        picks = rng.choice(len(parents), size=count, p=weights)
        z = z_parents[picks] + rng.standard_normal((count, dims)) @ chol.T
        candidate = _from_standardised(z, unit, posterior)
        accepted.append(candidate[_inside(candidate, unit)])
        if sum(len(a) for a in accepted) >= count:
            break
    candidates = np.concatenate(accepted)[:count]
    if not len(candidates):
        return candidates, np.empty(0)
    z = _standardised(candidates, unit, posterior)
    inverse = np.linalg.inv(cov)
    log_norm = -0.5 * (dims * math.log(2 * math.pi) + np.linalg.slogdet(cov)[1])
    difference = z[:, None, :] - z_parents[None, :, :]
    log_kernel = log_norm - 0.5 * np.einsum("mpi,ij,mpj->mp", difference, inverse, difference)
    log_mixture = np.log(np.exp(log_kernel - log_kernel.max(axis=1, keepdims=True)) @ weights) + log_kernel.max(axis=1)
    return candidates, _log_prior(candidates, unit, posterior) - log_mixture


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, q * cumulative[-1])])


def run_posterior_twins(config, estimates: pd.DataFrame, recorded_trains: dict, unit_ids: list):
    """Twins of ``unit_ids`` drawn from their posteriors and refined (see the module docstring).

    Returns (populations, twin trains, twin parameters {unit_id: (n, 3) g_s, g_u, k}, fidelity, final time scales
    {unit_id: k}); fidelity has :data:`.schema.TWIN_COLUMNS`.
    """
    units, posterior = _prepare_units(config, estimates, recorded_trains, unit_ids)
    # Round 0: draws of q0, simulated; the adaptation of k; scores.
    batch = {}
    for unit_id, unit in units.items():
        theta = _first_draws(unit, posterior)
        gbar, built = _members(config, unit, theta, 0)
        batch[unit_id] = (unit, theta, gbar, built)
    simulated = _simulate(config, batch, 0)
    for unit_id, (unit, theta, gbar, built) in batch.items():
        trains = simulated[unit_id]
        _, first_matches = _score(config, unit, trains, built)
        unit.first_fraction_network_k = float(first_matches.mean())
        theta, trains = _adapt_time_scale(config, unit, theta, trains)
        built &= _inside(theta, unit)  # a twin the shift took out of the user's range of k is not kept
        theta, trains, log_weight = _adapt_twin_time_scales(config, unit, theta, trains, built, posterior)
        distance, matches = _score(config, unit, trains, built)
        unit.first_fraction = float(matches.mean())
        unit.theta.append(theta)
        unit.gbar.append(gbar)
        unit.trains.append(trains)
        unit.distance.append(distance)
        unit.matches.append(matches)
        unit.log_weight.append(np.where(built, log_weight, -np.inf))
    # Refinement rounds.
    if config.twin_selection:
        for round_index in range(1, SMC_ROUNDS + 1):
            batch = {}
            for unit_id, unit in units.items():
                missing = unit.size - unit.matched
                budget = int(MAX_CANDIDATES_PER_TWIN * unit.size) - unit.spent
                if missing <= 0 or budget <= 0:
                    continue
                simulated_so_far = unit.size + unit.spent
                acceptance = (unit.matched + 0.5) / (simulated_so_far + 1.0)
                count = min(
                    budget, int(MAX_ROUND_CANDIDATES_PER_TWIN * unit.size), math.ceil(1.5 * missing / acceptance)
                )
                unit.widening = 1.0 if unit.matched else NO_MATCH_WIDENING ** (round_index - 1)
                rng = np.random.default_rng([unit.seed, 29, round_index])
                theta, log_weight = _proposals(unit, posterior, count, rng)
                if not len(theta):
                    continue
                gbar, built = _members(config, unit, theta, round_index)
                batch[unit_id] = (unit, theta, gbar, built)
                unit.log_weight.append(np.where(built, log_weight, -np.inf))
            if not batch:
                break
            simulated = _simulate(config, batch, round_index)
            for unit_id, (unit, theta, gbar, built) in batch.items():
                distance, matches = _score(config, unit, simulated[unit_id], built)
                unit.theta.append(theta)
                unit.gbar.append(gbar)
                unit.trains.append(simulated[unit_id])
                unit.distance.append(distance)
                unit.matches.append(matches)
                unit.spent += len(theta)
    for unit in units.values():
        if unit.matched == 0:
            _match_frequency_by_time_scale(config, unit)
    return _collect(config, units, recorded_trains)


def _match_frequency_by_time_scale(config, unit: _Unit) -> None:
    """Last resort for a unit none of whose twins matched within the budget: the twins that fire in its pattern
    (label, spikes per burst) at another main frequency get the k that makes their frequency the recorded one.

    Time scaling is exact (a twin at k x r fires exactly r times slower), so this is the time-scale adaptation of
    the point path applied twin by twin. Only for an estimated k and within the support of k (the user's range);
    these twins' weights stay those of their draws, and the unit's ``selection_note`` says how many were rescaled.
    """
    if unit.flow != "joint" or not config.adapt_time_scale:
        return
    reference_hz = float(unit.reference["main_frequency_hz"])
    if not np.isfinite(reference_hz) or reference_hz <= 0:
        return
    rescaled = 0
    for block, trains in enumerate(unit.trains):
        features = spike_train_features(trains)
        same = pattern_matches(unit.reference, features, **config.pattern_tolerances(frequency=False)) & np.isfinite(
            unit.distance[block]
        )
        frequency = features["main_frequency_hz"].to_numpy(float)
        for i in np.flatnonzero(same & np.isfinite(frequency) & (frequency > 0)):
            ratio = float(frequency[i] / reference_hz)
            theta = unit.theta[block][i].copy()
            theta[2] += math.log(ratio)
            if not _inside(theta[None], unit)[0]:
                continue
            train = trains[i] * ratio
            if config.duration_s is not None:
                train = train[train <= config.duration_s]
            unit.theta[block][i] = theta
            trains[i] = train
            rescaled += 1
        if rescaled:
            distance, matches = _score(config, unit, trains, np.isfinite(unit.distance[block]))
            unit.distance[block], unit.matches[block] = distance, matches
    if rescaled:
        note = (
            f"no twin matched within the budget; the k of {rescaled} twins firing in the unit's pattern at another "
            "frequency was set by their frequency (exact time scaling)"
        )
        unit.note = f"{unit.note}; {note}" if unit.note else note


def _collect(config, units: dict, recorded_trains: dict):
    populations, twin_trains, parameters, rows, final_k = {}, {}, {}, {}, {}
    for unit_id, unit in units.items():
        theta, distance, matches, log_weight = unit.stacked()
        gbar = np.concatenate(unit.gbar)
        trains = [t for block in unit.trains for t in block]
        weight = np.exp(np.where(matches, log_weight, -np.inf) - (log_weight[matches].max() if matches.any() else 0.0))
        matched = np.flatnonzero(matches)
        rng = np.random.default_rng([unit.seed, 31])
        if len(matched) > unit.size:
            # Twins from the matching particles in proportion to their weights, without repeating a member.
            p = weight[matched] / weight[matched].sum()
            chosen = rng.choice(matched, size=unit.size, replace=False, p=p)
        else:
            chosen = matched
        fill = unit.size - len(chosen)
        if fill:  # too few matched: the closest others stay, reported by fraction_matching
            others = np.flatnonzero(~matches & np.isfinite(distance))
            chosen = np.concatenate([chosen, others[np.argsort(distance[others], kind="stable")][:fill]])
        chosen = chosen.astype(int)
        populations[unit_id] = gbar[chosen]
        twin_trains[unit_id] = [trains[i] for i in chosen]
        parameters[unit_id] = np.column_stack([theta[chosen, :2], np.exp(theta[chosen, 2])])
        row = {
            "fraction_matching_before_selection": unit.first_fraction,
            "fraction_matching_network_time_scale": unit.first_fraction_network_k,
            "n_candidates": unit.spent,
            "candidate_acceptance": float(matches[unit.size :].mean()) if unit.spent else np.nan,
            "n_simulated": len(theta),
            "accepted_fraction": float(matches.mean()),
            "selection_note": unit.note,
        }
        for name, column in (("g_s", 0), ("g_u", 1)):
            values = theta[matched, column]
            row[f"pattern_{name}"] = _weighted_quantile(values, weight[matched], 0.5) if len(matched) else np.nan
            row[f"pattern_{name}_std"] = _weighted_sd(values, weight[matched]) if len(matched) else np.nan
        log_k = theta[matched, 2]
        row["pattern_time_scale"] = (
            math.exp(_weighted_quantile(log_k, weight[matched], 0.5)) if len(matched) else np.nan
        )
        row["pattern_time_scale_std"] = (
            row["pattern_time_scale"] * _weighted_sd(log_k, weight[matched]) if len(matched) else np.nan
        )
        rows[unit_id] = row
        if unit.flow == "joint" and config.adapt_time_scale:
            # The unit's final k: that of its matching twins, else the median of its (shifted) first draws.
            pattern_k = row["pattern_time_scale"]
            final_k[unit_id] = pattern_k if np.isfinite(pattern_k) else math.exp(np.median(theta[: unit.size, 2]))
        else:
            final_k[unit_id] = math.nan
    fidelity = fidelity_table(config, {u: recorded_trains[u] for u in units}, twin_trains)
    extra = pd.DataFrame.from_dict(rows, orient="index")
    for column in extra.columns:
        fidelity[column] = extra.loc[fidelity.index, column].to_numpy()
    return populations, twin_trains, parameters, fidelity, final_k


def _weighted_sd(values: np.ndarray, weights: np.ndarray) -> float:
    weights = weights / weights.sum()
    mean = weights @ values
    return float(np.sqrt(weights @ (values - mean) ** 2))


__all__ = ["run_posterior_twins", "posterior_twins_available", "SMC_ROUNDS"]
