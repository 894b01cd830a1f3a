"""ln k of a long regular (tonic) train from its rate alone: the posterior the joint flow cannot give it.

Why: every simulated training train spans the model's window times k (the joint flow's examples are cropped to
25-100 % of that), so a flow reading a tonic train, whose dynamics say little about k, reads k from its span: a
span S means k in [S / window, 4 S / window]. A user's recording spans whatever the experiment lasted. A long train
is read in segments of the window times the network's k, and the network leaks the span the same way: slow regular
DA units read over 9 / 18 / 30 / 60 / 118 s got k 1.1 / 2.2 / 3.7 / 7.7 / 10.5, and 29 held-out DA units recorded for
60 s x k (k 0.7, 1, 2) got a median |ln k error| of 1.93 with 68 % intervals covering 7 % of them
(``benchmarks/long_trains.py``).

What a tonic train tells about k is its rate: time scaling is exact in these models (at k, every time is k times
the k = 1 neuron's), so a neuron at k fires at its k = 1 rate divided by k, and

    p(ln k | rate r)  proportional to  prior(ln k) * f_1(ln r + ln k),

with f_1 the density of the log rate of tonic trains at k = 1 under the training prior of (g_s, g_u) (fitted on the
flows' training trains: :func:`fit_tonic_rate_density`) and the prior of k the flows were trained under (k = 1 with
probability K_PRIOR_POINT_MASS, else log2 k uniform on K_LOG2_RANGE). The same 29 units: median |ln k error| 0.36,
68 % intervals covering 76 %. (g_s, g_u) then come from the known_k flow reading the train divided by each drawn
k (:func:`.posterior.given_time_scale`): p(g | train, k) = p_known_k(g | train / k).

Which reading a long tonic train gets is itself a posterior (:func:`flow_weight`): in simulated data a train's span
is the window times k times a crop (the flows' training, and held-out sets made the same way), so the span does tell
k; in a recording it is how long the experiment lasted. The two hypotheses are weighed by their evidence for the
span read: p(S | span from k) = P(k in [S / window, S / (crop_low x window)] | rate) / ln(1 / crop_low) per unit of
ln S, against a log-uniform density of recording spans between 1 s and 1 h, with even prior odds. A slow regular DA
unit read over 60 s, whose rate allows k of 1-3, gets the rate's reading; a train whose span fits a k its rate allows
keeps most of the flow's. The reported draws mix the two readings in that proportion.

A caller who knows how the spans came about says so (``span_source``, SPAN_SOURCES) and the weighing is skipped:
no prior odds can serve both cases, since on trains whose spans are the window times k (DA held-out sets) the mixture
covered ln k 0.56-0.62 at 68 % where the flows' reading alone covered 0.60-0.67, and on recordings the flows' reading
alone was confidently wrong (docs/posterior.md, "Long trains").

Cost: one grid of GRID_POINTS values of ln k per train (a few hundred multiplications), no network pass.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from .train import K_LOG2_RANGE, K_PRIOR_POINT_MASS

# Gaussian kernel of the log-rate density f_1 (ln units): a tenth of the spread of rates within one degenerate
# population is ~0.1; narrower kernels follow the training sample's noise.
BANDWIDTH = 0.08
# Recording spans when the span says nothing of k: log-uniform from 1 s to 1 h (s).
RECORDING_SPAN_RANGE_S = (1.0, 3600.0)
# Step of the stored density's grid of ln rate, and points of the grid of ln k each train's posterior is built on.
DENSITY_STEP = 0.02
GRID_POINTS = 601
# What a train's span says of k, when the caller knows (``span_source`` of infer_dics, sample_posterior, RunConfig):
# "recording": how long the experiment lasted, nothing of k (long tonic trains take k from their rate alone);
# "window": the model's recording window times k, cropped or not, as the flows' training trains and the data
# ``generate-data`` writes (the joint flow's reading alone). None: unknown, both weighed by flow_weight.
SPAN_SOURCES = ("recording", "window")


def check_span_source(span_source):
    """``span_source`` itself when it is one of SPAN_SOURCES or None; else a ValueError that says what to pass."""
    if span_source is not None and span_source not in SPAN_SOURCES:
        raise ValueError(
            f"span_source must be one of {SPAN_SOURCES} or None (unknown); got {span_source!r}: 'recording' when the "
            "trains last as long as their recording did, 'window' when they are simulated windows times k"
        )
    return span_source


def fit_tonic_rate_density(log_rates: np.ndarray, bandwidth: float = BANDWIDTH) -> dict:
    """f_1 on a grid, from the log mean rates (ln Hz) of tonic training trains simulated at k = 1: the entry a
    posterior card stores as ``tonic_rate_density``."""
    log_rates = np.asarray(log_rates, dtype=float)
    log_rates = log_rates[np.isfinite(log_rates)]
    if log_rates.size < 100:
        raise ValueError(f"{log_rates.size} tonic training trains: too few for a density of their rates (>= 100)")
    grid = np.arange(log_rates.min() - 4 * bandwidth, log_rates.max() + 4 * bandwidth + DENSITY_STEP, DENSITY_STEP)
    # A histogram on the grid, then the kernel: the same density as a kernel sum over every train, to the grid step.
    bins = np.clip(np.round((log_rates - grid[0]) / DENSITY_STEP).astype(int), 0, grid.size - 1)
    counts = np.bincount(bins, minlength=grid.size)
    reach = math.ceil(4 * bandwidth / DENSITY_STEP)
    offsets = DENSITY_STEP * np.arange(-reach, reach + 1)
    kernel = np.exp(-0.5 * (offsets / bandwidth) ** 2)
    density = np.convolve(counts, kernel / (kernel.sum() * DENSITY_STEP), mode="same") / log_rates.size
    return {
        "log_rate_start": float(grid[0]),
        "log_rate_step": DENSITY_STEP,
        "density": np.round(density, 6).tolist(),
        "bandwidth": bandwidth,
        "n_trains": int(log_rates.size),
    }


def _f1(entry: dict, log_rate: np.ndarray) -> np.ndarray:
    density = np.asarray(entry["density"], dtype=float)
    grid = entry["log_rate_start"] + entry["log_rate_step"] * np.arange(density.size)
    return np.interp(log_rate, grid, density, left=0.0, right=0.0)


def log_k_weights(entry: dict, log_rate: float, k_range: tuple | None = None):
    """(grid of ln k, the continuous part's weight per grid cell, the point mass's weight at ln k = 0), unnormalised:
    the posterior of ln k given the rate, within ``k_range`` = (k_low, k_high) when given."""
    low, high = (value * math.log(2.0) for value in K_LOG2_RANGE)
    grid = np.linspace(low, high, GRID_POINTS)
    cell = grid[1] - grid[0]
    continuous = (1.0 - K_PRIOR_POINT_MASS) / (high - low) * _f1(entry, log_rate + grid) * cell
    point = K_PRIOR_POINT_MASS * float(_f1(entry, np.array([log_rate]))[0])
    if k_range is not None:
        k_low, k_high = (math.log(float(v)) for v in k_range)
        continuous = np.where((grid >= k_low) & (grid <= k_high), continuous, 0.0)
        point = point if k_low <= 0.0 <= k_high else 0.0
    return grid, continuous, point


def sample_log_k(entry: dict, log_rates, n: int, seed: int, keys, k_range: tuple | None = None) -> np.ndarray:
    """(n_trains, n) draws of ln k given each train's log mean rate (ln Hz); NaN rows where the rate is out of the
    density's reach within the prior (or ``k_range``). Each train's uniforms come from (seed, its key): the same train
    gets the same draws whatever else is in the batch."""
    out = np.full((len(keys), int(n)), np.nan)
    for row, (log_rate, key) in enumerate(zip(np.asarray(log_rates, dtype=float), keys, strict=True)):
        grid, continuous, point = log_k_weights(entry, float(log_rate), k_range)
        total = continuous.sum() + point
        if not np.isfinite(total) or total <= 0.0:
            continue
        entropy = int.from_bytes(hashlib.sha256(b"tonic rate" + bytes(key)).digest()[:8], "little")
        uniform = np.random.default_rng([int(seed), entropy]).random(int(n)) * total
        # The continuous part's CDF (each cell's weight spread evenly over the cell), with the point mass inserted
        # where ln k crosses 0.
        cell = grid[1] - grid[0]
        edges = np.concatenate([[grid[0] - cell / 2], grid + cell / 2])
        cumulative = np.concatenate([[0.0], np.cumsum(continuous)])
        below_zero = float(np.interp(0.0, edges, cumulative))
        draws = np.interp(np.where(uniform < below_zero, uniform, uniform - point), cumulative, edges)
        draws[(uniform >= below_zero) & (uniform < below_zero + point)] = 0.0
        out[row] = draws
    return out


def flow_weight(entry: dict, log_rate: float, span_s: float, window_s: float, crop: tuple) -> float:
    """The posterior probability that a tonic train's span was drawn as the flows' training spans were (window_s x k
    x a crop fraction log-uniform in ``crop``), rather than as a recording's (log-uniform on RECORDING_SPAN_RANGE_S):
    the weight of the joint flow's reading against the rate's (module docstring). ``crop``: the card's joint_crop
    (low < 1)."""
    grid, continuous, point = log_k_weights(entry, log_rate)
    total = continuous.sum() + point
    if not np.isfinite(total) or total <= 0.0:
        return 1.0
    low, high = math.log(span_s / window_s), math.log(span_s / (crop[0] * window_s))
    inside = (continuous[(grid >= low) & (grid <= high)].sum() + (point if low <= 0.0 <= high else 0.0)) / total
    span_from_k = inside / math.log(1.0 / crop[0])
    span_of_a_recording = 1.0 / math.log(RECORDING_SPAN_RANGE_S[1] / RECORDING_SPAN_RANGE_S[0])
    return float(span_from_k / (span_from_k + span_of_a_recording))
