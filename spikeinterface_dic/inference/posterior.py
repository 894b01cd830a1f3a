"""Joint posterior of (g_s, g_u, ln k) given a spike train: a conditional normalizing flow on a summary of the train.

Why: the network's mean ± sd per parameter cannot say what a train actually tells (a tonic train: a curve of equal
rate in (g_s, g_u, k)), and its sds are not calibrated per class. A conditional neural spline flow (``zuko``) learns
the joint density p(g_s, g_u, ln k | context) by maximum likelihood on simulated trains, so its samples carry the
correlations and its intervals are calibrated where the training distribution holds.

Context (:data:`CONTEXT_NAMES`, one row per train, computed by :func:`train_context`):

- the shipped network's outputs (windows combined as in ``infer_dics``): means and log sds of (g_s/10, g_u/10, ln k)
  and its probability of a bursting pattern. The network is frozen; it is the learned embedding of the ISIs;
- the time-scale library's ln k and log sd for trains with long ISI gaps (NaN elsewhere, then 0 with a flag);
- speed-invariant shape statistics of log ISIs (:func:`.shape.shape_statistics`), the log mean ISI (the speed), the
  log number of spikes, and burst statistics (log spikes per burst, log intra- and inter-burst frequency) with a
  bursting flag;
- the shape of the bursts (:data:`~spikeinterface_dic.features.BURST_SHAPE_NAMES`: first and last intra-burst ISI
  against the burst's mean, range and trend of log ISIs, duty cycle, spread of the period). Each flow reads the
  columns its card names (:func:`flow_context`): cards before them read the first 24.

Two flows per model: ``joint`` over (g_s, g_u, ln k) for k unknown, trained under the network's prior of k (k = 1
with probability 1/2, else log2 k uniform on [-2.5, 3.5]: with k unknown, the trains and g_u trade off against k,
and the model's own kinetics are the likeliest a priori), and ``known_k`` over (g_s, g_u) for trains divided by a
known k. The joint flow is trained on trains cropped to a random part of their span (JOINT_CROP), so that it reads
k from the dynamics, not from how long a simulated train is. A prior range for k given by a user is applied to the
joint flow by rejection: exact for a range that excludes k = 1 (the prior is flat in ln k there); a range that
includes 1 keeps the prior's extra weight at k = 1.

The reported posterior combines the two flows by the time-scaling symmetry p(g | train, k) = p_known_k(g | train /
k), by rules its card records: the joint draws at the prior's point mass k = 1 take (g_s, g_u) from the known_k flow
(:meth:`PosteriorEstimator._given_point_mass`, both models), and, for DA, the draws at a continuous k from the
known_k flow reading the train rescaled to their (binned) k (:func:`given_time_scale`). Cards with a
``tonic_rate_density`` (DA) read long tonic trains partly by their rate (:func:`read_by_rate`, :mod:`.tonic_rate`).

Cost model: the context is one batched network pass (see :mod:`.predict`) plus O(n_spikes) statistics per train;
m samples of one train cost, per transform, one hyper-network pass on one row (the first group of features, which
depends on the context alone: :func:`_invert`) and one on m rows (the second group), each followed by that group's
spline inversion; the m-row hidden layer (hidden x hidden multiply-adds per draw) dominates. A train with draws at
k = 1 also draws the known_k flow (:meth:`PosteriorEstimator._given_point_mass`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..features import BURST_SHAPE_NAMES, burst_shape_statistics, spike_train_features
from .common import WEIGHTS_DIR, combine_windows_by_owner, isi_windows, mean_by_owner, threads_for
from .shape import library_statistics_batch, shape_statistics_batch
from .tonic_rate import check_span_source
from .train import K_LOG2_RANGE, K_PRIOR_POINT_MASS  # the network's prior of k: the flows use the same

# The context of the cards before the burst-shape statistics (a card lists the columns each of its flows reads).
BASE_CONTEXT_NAMES = (
    "net_g_s",
    "net_g_u",
    "net_log_k",
    "net_log_sd_g_s",
    "net_log_sd_g_u",
    "net_log_sd_log_k",
    "net_p_bursting",
    "library_log_k",
    "library_log_sd",
    "library_flag",
    "shape_q05",
    "shape_q25",
    "shape_q75",
    "shape_q95",
    "shape_cv",
    "shape_short_fraction",
    "shape_long_fraction",
    "shape_lag1",
    "log_mean_isi",
    "log_n_spikes",
    "burst_flag",
    "log_spikes_per_burst",
    "log_intra_burst_hz",
    "log_inter_burst_hz",
)
CONTEXT_NAMES = BASE_CONTEXT_NAMES + BURST_SHAPE_NAMES
FLOWS = {"joint": ("g_s", "g_u", "log_k"), "known_k": ("g_s", "g_u")}
# Flow architecture of new training runs (a card records its own): 3 spline transforms of 8 bins, conditioners of
# two hidden layers of 128, coupling (2 passes) so that sampling inverts each transform in 2 passes, not 3.
DEFAULT_FLOW_CONFIG = {"transforms": 3, "bins": 8, "hidden_features": [128, 128], "passes": 2}
# The joint flow's draws within this distance of ln k = 0 are the prior's point mass k = 1 and take their (g_s, g_u)
# from the known_k flow (:meth:`PosteriorEstimator._given_point_mass`). Written in every new card, which the sampler
# reads; 0.01 holds 98 % (STG) and 95 % (DA) of the held-out trains' draws at k = 1, while the continuous part of the
# prior puts 0.24 % of its mass there.
DEFAULT_POINT_MASS = {"log_k_within": 0.01, "flow": "known_k"}
# Models whose new cards read the joint flow's continuous k by rescaling the train (:func:`given_time_scale`): DA,
# whose joint summaries are sampled anyway (STG's come from a head that cannot read rescaled trains).
RESCALING_RULE = {"max_groups": 8, "narrowest_bin": 0.025, "flow": "known_k"}
DEFAULT_RESCALING = {"da": RESCALING_RULE}


def network_outputs(predictor, trains_s: list[np.ndarray], batch_size: int = 1024) -> np.ndarray:
    """(n, 7): the network's means and log sds of (g_s/10, g_u/10, ln k) and p_bursting, windows combined."""
    windows, owner = [], []
    for index, train in enumerate(trains_s):
        for window in isi_windows(np.maximum(np.diff(train) * 1000.0, 0.05), predictor.window):
            windows.append(window)
            owner.append(index)
    owner = np.asarray(owner, dtype=np.int64)
    means, stds, p_bursting = predictor.predict_windows(windows, batch_size)
    out = np.empty((len(trains_s), 7))
    out[:, :3], std, _ = combine_windows_by_owner(means, stds, owner, len(trains_s))
    out[:, 3:6] = np.log(std)
    out[:, 6] = mean_by_owner(p_bursting, owner, len(trains_s))
    return out


def train_context(
    predictor, trains_s: list[np.ndarray], network: np.ndarray | None = None, features=None
) -> np.ndarray:
    """(n, len(CONTEXT_NAMES)) context rows of trains with at least 4 spikes (spike times in s).

    ``network``: the network's outputs for them (:func:`network_outputs`), and ``features``: their
    :func:`~spikeinterface_dic.features.spike_train_features` (a DataFrame, one row per train in order), when
    already computed. Statistics are computed for all trains at once (:func:`.shape.shape_statistics_batch`).
    """
    trains_s = [np.asarray(t, dtype=float) for t in trains_s]
    network = network_outputs(predictor, trains_s) if network is None else network
    shapes = shape_statistics_batch(trains_s)
    library = np.full((len(trains_s), 3), [0.0, 0.0, 0.0])
    # Only trains with long gaps (a bursting shape) get a library estimate, as in infer_dics.
    gapped = np.flatnonzero(shapes[:, 6] > 0.0)
    if predictor.time_scale_library is not None and gapped.size:
        shape_rows, speeds = library_statistics_batch([trains_s[i] for i in gapped])
        log_k, log_sd = predictor.time_scale_library.estimate(shape_rows, speeds)
        finite = np.isfinite(log_k)
        rows = gapped[finite]
        library[rows] = np.stack([log_k[finite], np.log(log_sd[finite]), np.ones(finite.sum())], axis=1)
    if features is None:
        features = spike_train_features(trains_s, burst_shape=True)
    elif len(features) != len(trains_s):
        raise ValueError(f"features has {len(features)} rows for {len(trains_s)} trains; give one row per train")
    bursting = features["label"].to_numpy() == "bursting"
    if all(name in features.columns for name in BURST_SHAPE_NAMES):  # spike_train_features(..., burst_shape=True)
        shape_of_bursts = features[list(BURST_SHAPE_NAMES)].to_numpy(float)
    else:
        shape_of_bursts = burst_shape_statistics(trains_s, bursting)

    def log_or_zero(column):
        values = features[column].to_numpy(float)
        return np.where(bursting & (values > 0), np.log(np.where(values > 0, values, 1.0)), 0.0)

    lengths = np.array([t.size for t in trains_s], dtype=np.int64)
    train_of_spike = np.repeat(np.arange(len(trains_s)), lengths)
    same_train = train_of_spike[1:] == train_of_spike[:-1]
    isi = np.diff(np.concatenate(trains_s)) if trains_s else np.zeros(0)
    mean_isi = mean_by_owner(isi[same_train], train_of_spike[1:][same_train], len(trains_s))
    context = np.column_stack(
        [
            network,
            library,
            np.nan_to_num(shapes, nan=0.0),
            np.log(mean_isi),
            np.log(lengths),
            bursting.astype(float),
            log_or_zero("nbr_spikes_bursting"),
            log_or_zero("f_intra_bursting_hz"),
            log_or_zero("f_inter_bursting_hz"),
            shape_of_bursts,
        ]
    )
    return context.astype(np.float32)


# ------------------------------------------------------------------------------------------------------ the flows
def _build_flow(n_features: int, n_context: int, config: dict):
    import zuko

    return zuko.flows.NSF(
        n_features,
        n_context,
        transforms=int(config["transforms"]),
        bins=int(config["bins"]),
        hidden_features=tuple(config["hidden_features"]),
        # passes=2 (coupling) inverts in 2 passes instead of one per parameter: sampling costs 2/3 (cards without
        # the key were trained fully autoregressive).
        passes=config.get("passes"),
    )


def _inverse_plan(transform, n_parameters: int) -> dict:
    """What :func:`_invert` needs of one masked autoregressive transform, computed once and cached on the transform
    until its weights change (a tensor's ``_version`` counts its in-place writes; ``load_state_dict`` copies into
    the same tensors): the hyper-network's masked weights, its first layer split into the features' and the
    context's columns, and per group of features their indices and the output layer's rows of their parameters."""
    import torch

    linears = [layer for layer in transform.hyper if isinstance(layer, torch.nn.Linear)]
    version = tuple(layer.weight._version for layer in linears)
    cached = getattr(transform, "_inverse_plan", None)
    if cached is not None and cached[0] == version:
        return cached[1]
    with torch.no_grad():
        weights = [((layer.mask * layer.weight).clone(), layer.bias.clone()) for layer in linears]
    (first_weight, first_bias), *hidden, (out_weight, out_bias) = weights
    per_feature = out_weight.shape[0] // n_parameters  # 3 bins - 1 spline parameters per feature
    groups = []
    for group in range(int(transform.order.max()) + 1):
        features = torch.nonzero(transform.order == group).flatten()
        rows = (features[:, None] * per_feature + torch.arange(per_feature)).flatten()
        groups.append((features.numpy(), out_weight[rows].contiguous(), out_bias[rows].contiguous()))
    plan = {
        "features_weight_t": first_weight[:, :n_parameters].T.contiguous(),
        "context_weight": first_weight[:, n_parameters:].contiguous(),
        "first_bias": first_bias,
        "hidden": hidden,
        "groups": groups,
        "per_feature": per_feature,
        "bins": (per_feature + 1) // 3,
    }
    transform._inverse_plan = (version, plan)
    return plan


def _spline_inverse(y: np.ndarray, phi: np.ndarray, bins: int, bound: float = 5.0, slope: float = 1e-3) -> np.ndarray:
    """zuko's ``MonotonicRQSTransform(widths, heights, derivatives, bound, slope).inv(y)`` for values y (draws,
    trains, features) and ``phi`` (draws or 1, trains, features, 3 bins - 1): the three unconstrained parameter
    vectors concatenated, one row per draw or one per train shared by its draws. The same arithmetic (in float64).

    Why not tensors: at 1,000 draws the ~60 small tensor operations of the spline cost ~5x their arithmetic (STG,
    1,000 draws of one unit: the splines took half the time). Here the squashing and exponentials are 5 vectorised
    array operations and the rest one compiled loop (:func:`_compiled_spline_inverse_rows`): 0.32 -> 0.08 ms for
    1,000 rows with their own splines, 0.23 -> 0.02 ms for one spline shared by 1,000 draws.
    """
    squash = -math.log(slope)
    # widths and heights are squashed to |.| < squash / 2, derivatives to |.| < squash (zuko's soft clip), so that
    # the exponentials stay within [slope, 1 / slope]
    scale = np.full(phi.shape[-1], 1.0 / squash, dtype=np.float32)
    scale[: 2 * bins] = 2.0 / squash
    positive = np.exp(phi / (1.0 + np.abs(phi) * scale))
    out = np.empty(y.shape, dtype=np.float32)
    _compiled_spline_inverse_rows()(np.ascontiguousarray(y, dtype=np.float32), positive, int(bins), float(bound), out)
    return out


@lru_cache(maxsize=1)
def _compiled_spline_inverse_rows():
    """The loop of :func:`_spline_inverse`: per train, feature and draw, the knots (cumulative normalised widths and
    heights, recomputed only when the draw has its own parameters), the bin of y among the height knots, and the
    root of the rational-quadratic segment's inverse (the numerically stable form zuko uses). Outside [-bound,
    bound] the transform is the identity, as in zuko. numba compiles it once per machine (on-disk cache)."""
    import numba

    @numba.njit(cache=True, nogil=True)
    def rows(y, positive, bins, bound, out):
        n_draws, n_trains, n_features = y.shape
        shared = positive.shape[0] == 1
        knots_x = np.empty(bins + 1)
        knots_y = np.empty(bins + 1)
        for t in range(n_trains):
            for f in range(n_features):
                for d in range(n_draws):
                    row = 0 if shared else d
                    if d == 0 or not shared:
                        total_x = 0.0
                        total_y = 0.0
                        for i in range(bins):
                            total_x += positive[row, t, f, i]
                            total_y += positive[row, t, f, bins + i]
                        cumulative_x = 0.0
                        cumulative_y = 0.0
                        knots_x[0] = -bound
                        knots_y[0] = -bound
                        for i in range(bins):
                            cumulative_x += positive[row, t, f, i] / total_x
                            cumulative_y += positive[row, t, f, bins + i] / total_y
                            knots_x[i + 1] = bound * (2.0 * cumulative_x - 1.0)
                            knots_y[i + 1] = bound * (2.0 * cumulative_y - 1.0)
                    value = y[d, t, f]
                    k = -1
                    for i in range(bins + 1):
                        if knots_y[i] < value:
                            k += 1
                    if k < 0 or k >= bins:
                        out[d, t, f] = value
                        continue
                    x0, x1, y0, y1 = knots_x[k], knots_x[k + 1], knots_y[k], knots_y[k + 1]
                    # the end knots' derivatives are 1 (exp(0) in zuko's padding)
                    d0 = 1.0 if k == 0 else positive[row, t, f, 2 * bins + k - 1]
                    d1 = 1.0 if k == bins - 1 else positive[row, t, f, 2 * bins + k]
                    s = (y1 - y0) / (x1 - x0)
                    offset = value - y0
                    curvature = d0 + d1 - 2.0 * s
                    a = (y1 - y0) * (s - d0) + offset * curvature
                    b = (y1 - y0) * d0 - offset * curvature
                    c = -s * offset
                    z = 2.0 * c / (-b - math.sqrt(b * b - 4.0 * a * c))
                    out[d, t, f] = x0 + z * (x1 - x0)

    return rows


def _invert(flow, context, noise):
    """The flow's inverse (base noise (n, n_trains, p) -> parameters) for context rows (n_trains, n_context): what
    ``flow(context).transform.inv(noise)`` computes (to float32 round-off: test), at about a third of its cost.

    Why: a masked autoregressive transform with ``passes`` groups of features inverts group by group; zuko runs its
    whole hyper-network on every draw in every pass and inverts every feature's spline each time. Here, per
    transform: the first layer's context part is computed once per train (the same for all its draws); group 0
    depends on the context alone, so its hyper-network runs on one row per train and its spline is shared by the
    draws; each later group runs the hyper-network on the draws with the output layer's rows of that group only, and
    inverts that group's splines only (:func:`_spline_inverse`). 1,000 draws of one unit, two threads, same run:
    STG joint 3.7 -> 1.4 ms, known_k 6.1 -> 3.5 ms (the tensor spline -> this); zuko's own inverse with a shared
    first pass cost 2.2x the tensor spline's version (one thread).
    """
    import torch
    import torch.nn.functional as F

    values = noise.numpy()
    n_draws, n_trains, n_parameters = values.shape
    for lazy in reversed(flow.transform.transforms):  # the inverse runs the composition backwards
        if not hasattr(lazy, "hyper"):  # not a masked autoregressive transform (none in NSF): zuko's own inverse
            values = lazy(context).inv(torch.from_numpy(values)).numpy()
            continue
        plan = _inverse_plan(lazy, n_parameters)
        context_part = F.linear(context, plan["context_weight"], plan["first_bias"])  # (n_trains, hidden)
        inverted = np.zeros_like(values)
        for group, (features, out_weight, out_bias) in enumerate(plan["groups"]):
            if group == 0:  # the context alone: one row per train
                hidden_values = torch.relu(context_part)[None]
            else:
                flat = torch.from_numpy(inverted).view(n_draws * n_trains, n_parameters)
                hidden_values = torch.mm(flat, plan["features_weight_t"])
                hidden_values = hidden_values.view(n_draws, n_trains, -1).add_(context_part).relu_()
            for weight, bias in plan["hidden"]:
                hidden_values = F.linear(hidden_values, weight, bias).relu_()
            phi = F.linear(hidden_values, out_weight, out_bias).numpy()
            phi = phi.reshape(*phi.shape[:2], len(features), plan["per_feature"])
            inverted[..., features] = _spline_inverse(values[..., features], phi, plan["bins"])
        values = inverted
    return torch.from_numpy(values)


# ------------------------------------------------------------------------------------------------- calibration
# CDF levels the calibration matches: per flow, class and parameter, the truth of a calibration train falls below
# the calibrated posterior's quantile at each level for that fraction of the trains (both tails and the median, so
# central intervals at every level in between and the ranks of simulation-based calibration follow).
CALIBRATION_LEVELS = (0.02, 0.05, 0.10, 0.16, 0.25, 0.50, 0.75, 0.84, 0.90, 0.95, 0.98)
# Cards calibrated before the CDF map (scale "central") matched central levels only (50, 68, 90, 98 %).
CENTRAL_LEVELS = (0.50, 0.68, 0.90, 0.98)
CLASSES = ("tonic", "bursting")  # by the context's rule-based bursting flag
CALIBRATION_BATCH = 256  # trains per flow call when fitting
# Strata of the calibration by train length (log number of spikes) within each flow and class. Why: the flows'
# spread errs differently on short and long trains (STG tonic trains with k known, one map for all lengths: 68 %
# intervals covered 0.63 on trains cropped to 25-100 % of the window and 0.69 on whole windows); a long recording is
# read in whole windows while a short one is a crop, so the map follows the length. Tertiles: ~1,000 trains per
# stratum and class keep each fitted quantile within ~0.015 of its limit. A train takes its own stratum's map (edges
# at spike counts, so that equal counts share a stratum), not one interpolated between strata: a map is fitted on
# its stratum's trains, so only they are calibrated by it (interpolated between the strata's median lengths, tonic
# ln k with k unknown covered 0.65 at 68 % on the calibration trains themselves, their own stratum's map 0.68).
CALIBRATION_STRATA = 3
# Within each class the calibration trains are also split in two at their median irregularity (:func:`irregularity`:
# how far below the median log ISI the shortest 5 % of the ISIs lie), each half with its own length strata. Why: the
# flows err differently on trains whose spike times are exact and on jittered ones, and one map for both was wrong
# for each (held-out STG tonic trains with k known, cropped: 0.63 clean, 0.70 with 2 ms jitter at 68 %). The
# statistic separates them (median split: 1 % of STG tonic, 4 % of bursting trains on the wrong side); a recorded
# unit, never as regular as a noise-free simulation, takes the irregular half's map, fitted on degraded and noisy
# trains.
IRREGULARITY_COLUMN = "shape_q05"


class MarginalCalibration:
    """Per flow, class, train length and parameter, a monotone map of each marginal's CDF positions (probability
    integral transform recalibration).

    Why: a flow trained by maximum likelihood is calibrated only where its training distribution holds; on held-out
    trains its 1-sd intervals covered 0.57-0.86 depending on class and parameter, and matching central levels only
    (the first calibration) left the rank histograms of simulation-based calibration skewed (chi-square up to 44 on
    one train per target, 16.9 the 95 % point) because a median biased to one side is invisible to central levels.
    For calibration trains (never used in training), ``position`` = F(truth) is where the truth sits in the flow's
    marginal; G(u) = P(position <= u). Knots store G^-1 at CALIBRATION_LEVELS (through (0, 0) and (1, 1), linear
    between). Applied to a set of samples, the sample at CDF position u (from its rank) moves to the flow's quantile
    (interpolated from the same samples) at G^-1(u): the truth then falls below the calibrated quantile u for a
    fraction u of the trains. Ranks, hence the dependence between parameters, are kept; each marginal's spread and
    location change.

    Knots per class are one map (a list per parameter: cards before the length strata) or one map per length stratum
    (CALIBRATION_STRATA), ``{"log_n_edges": edges, "quantiles": [stratum][parameter][level]}``: a train with log
    number of spikes x takes the map of stratum (number of edges <= x). Cards of 2026-12-05's second session store
    the strata's median lengths instead (``"log_n_spikes": centres``) and interpolate the map linearly in log n
    between the two nearest (a convex combination of increasing knots stays increasing). Legacy cards (scale
    "central") map central levels |2F - 1| symmetrically. Since 2026-12-06 a class is split in two at the median
    irregularity of its calibration trains (IRREGULARITY_COLUMN says why), ``{"irregularity_edge": x, "groups":
    [regular, irregular]}`` with each group's strata as above; a train of irregularity <= x takes the first.
    """

    def __init__(self, knots: dict, scale: str = "cdf"):
        if scale not in ("cdf", "central"):
            raise ValueError(f"calibration scale must be 'cdf' or 'central'; got {scale!r}")
        self.scale = scale
        self.levels = np.array([0.0, *(CALIBRATION_LEVELS if scale == "cdf" else CENTRAL_LEVELS), 1.0])
        # flow -> class -> (irregularity edge or None for one group, [per group: (how strata are chosen: "edges" or
        # "centres", their log n (m - 1 edges or m centres), knots (m, n_parameters, levels incl. 0 and 1))])
        self.knots = {}
        for flow, classes in knots.items():
            self.knots[flow] = {}
            for name, values in classes.items():
                if isinstance(values, dict) and "groups" in values:
                    groups = (float(values["irregularity_edge"]), [self._strata(group) for group in values["groups"]])
                else:  # cards before the irregularity split: one group
                    groups = (None, [self._strata(values)])
                self.knots[flow][name] = groups

    @staticmethod
    def _strata(values) -> tuple:
        if isinstance(values, dict) and "log_n_edges" in values:
            strata = ("edges", np.asarray(values["log_n_edges"], dtype=float))
        elif isinstance(values, dict):
            strata = ("centres", np.asarray(values["log_n_spikes"], dtype=float))
        else:  # one map for every length
            strata, values = ("edges", np.zeros(0)), {"quantiles": [values]}
        inner = np.asarray(values["quantiles"], dtype=float)
        ends = np.zeros((*inner.shape[:2], 1))
        return (*strata, np.concatenate((ends, inner, ends + 1.0), axis=2))

    def nominal(
        self, flow: str, class_name: str, parameter: int, level: np.ndarray, log_n_spikes, irregularity=None
    ) -> np.ndarray:
        """The flow's level (CDF position, or central level for legacy cards) that the calibrated ``level``
        (rows, m) maps to, for rows of trains with ``log_n_spikes`` and ``irregularity`` (rows,; the latter only
        for maps split by it: :func:`irregularity`; NaN counts as irregular)."""
        edge, groups = self.knots[flow][class_name]
        level = np.atleast_2d(level)
        log_n = np.broadcast_to(np.asarray(log_n_spikes, dtype=float), (level.shape[0],))
        if edge is None:
            return self._nominal(groups[0], parameter, level, log_n)
        irregular = ~(np.broadcast_to(np.asarray(irregularity, dtype=float), log_n.shape) <= edge)
        out = np.empty(level.shape)
        for group, rows in enumerate((~irregular, irregular)):
            if rows.any():
                out[rows] = self._nominal(groups[group], parameter, level[rows], log_n[rows])
        return out

    def _nominal(self, strata_map: tuple, parameter: int, level: np.ndarray, log_n: np.ndarray) -> np.ndarray:
        kind, strata, knots = strata_map
        if kind == "edges":  # each row's own stratum
            rows = knots[np.searchsorted(strata, log_n, side="right"), parameter]
        else:  # each row's map linear between the two nearest centres in log n (the end strata beyond them)
            last = len(strata) - 1
            upper = np.clip(np.searchsorted(strata, log_n), min(1, last), last)
            lower = np.maximum(upper - 1, 0)
            span = strata[upper] - strata[lower]
            weight = np.clip(np.divide(log_n - strata[lower], span, out=np.zeros_like(log_n), where=span > 0), 0, 1)
            rows = (1 - weight)[:, None] * knots[lower, parameter] + weight[:, None] * knots[upper, parameter]
        segment = np.clip(np.searchsorted(self.levels, level, side="right") - 1, 0, len(self.levels) - 2)
        fraction = (level - self.levels[segment]) / (self.levels[segment + 1] - self.levels[segment])
        low = np.take_along_axis(rows, segment, axis=1)
        high = np.take_along_axis(rows, segment + 1, axis=1)
        return low + fraction * (high - low)

    def apply(
        self, samples: np.ndarray, flow: str, classes: np.ndarray, log_n_spikes=None, parameters=None, irregularity=None
    ) -> np.ndarray:
        """Calibrated copy of samples (n_trains, n, p), each train with its class index, log number of spikes (the
        context's ``log_n_spikes``; needed by length-stratified maps only) and ``irregularity`` (needed by maps split
        by it); ``parameters``: the indices to calibrate (default all; the others are copied). :meth:`apply_to`
        takes all three from context rows."""
        if flow not in self.knots:
            return samples
        n = samples.shape[1]
        log_n = np.zeros(len(samples)) if log_n_spikes is None else np.asarray(log_n_spikes, dtype=float)
        maps = [strata for _, groups in self.knots[flow].values() for strata in groups]
        if log_n_spikes is None and any(len(knots) > 1 for _, _, knots in maps):
            raise ValueError("this calibration is stratified by train length: pass log_n_spikes")
        if irregularity is None and any(edge is not None for edge, _ in self.knots[flow].values()):
            raise ValueError("this calibration is split by irregularity: pass irregularity")
        irregular = np.full(len(samples), np.nan) if irregularity is None else np.asarray(irregularity, dtype=float)
        out = samples.copy()
        order = np.argsort(samples, axis=1, kind="stable")
        rank_levels = (np.arange(n) + 0.5) / n  # a sample's CDF position from its rank
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(n)[None, :, None], axis=1)
        sorted_samples = np.take_along_axis(samples, order, axis=1)
        for index, name in enumerate(CLASSES):
            rows = np.flatnonzero(classes == index)
            if not rows.size:
                continue
            if name not in self.knots[flow]:  # no calibration trains of this class: left as drawn
                continue
            for p in range(samples.shape[2]) if parameters is None else parameters:
                position = rank_levels[ranks[rows, :, p]]  # (rows, n)
                if self.scale == "cdf":
                    target = self.nominal(flow, name, p, position, log_n[rows], irregular[rows])
                else:
                    level = np.abs(2.0 * position - 1.0)
                    central = self.nominal(flow, name, p, level, log_n[rows], irregular[rows])
                    target = 0.5 + np.sign(position - 0.5) * central / 2.0
                out[rows, :, p] = _quantiles_from_sorted(sorted_samples[rows, :, p], target)
        return out

    def apply_to(self, samples: np.ndarray, flow: str, context_rows: np.ndarray, parameters=None) -> np.ndarray:
        """:meth:`apply` with each train's class, length and irregularity read from its context row."""
        rows = np.atleast_2d(context_rows)
        log_n = rows[:, CONTEXT_NAMES.index("log_n_spikes")]
        return self.apply(samples, flow, class_of(rows), log_n, parameters, irregularity(rows))


def _quantiles_from_sorted(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Per row of sorted samples (rows, n), quantiles at CDF ``positions`` (rows, m); a sample of rank i sits at
    (i + 0.5) / n; linear between ranks and, beyond the ends, with the end segments' slopes."""
    n = values.shape[1]
    if n < 2:
        return np.repeat(values, positions.shape[1], axis=1)
    index = np.clip(np.floor(positions * n - 0.5), 0, n - 2).astype(np.int64)
    fraction = positions * n - 0.5 - index  # < 0 or > 1 beyond the ends: linear extrapolation
    low = np.take_along_axis(values, index, axis=1)
    high = np.take_along_axis(values, index + 1, axis=1)
    return low + fraction * (high - low)


def fit_calibration(
    posterior,
    contexts: dict,
    truths: dict,
    n_samples: int = 400,
    seed: int = 0,
    strata: int = CALIBRATION_STRATA,
    split: bool = True,
    randomized_point_mass: bool = True,
) -> dict:
    """Knots of :class:`MarginalCalibration` (scale "cdf") from calibration trains (never used in training): per
    flow, class, irregularity half (``split``: IRREGULARITY_COLUMN says why), length stratum (``strata`` quantile
    groups of the log number of spikes) and parameter, the quantiles at CALIBRATION_LEVELS of the truths' CDF
    positions in the uncalibrated flow's marginal (estimated from ``n_samples`` draws per train).

    ``contexts[flow]`` (n, n_context) and ``truths[flow]`` (n, n_parameters). ``randomized_point_mass`` (cards with
    the point-mass rule): the joint flow's map of ln k is fitted on every train, a truth at k = 1 taking a uniform
    position within the flow's draws that the rule reads as k = 1; False: on the trains at k != 1 alone (the cards
    before 2026-12-06's fourth session).
    """
    knots = {}
    point_mass = getattr(posterior, "point_mass", None)
    for flow, context in contexts.items():
        position = np.empty(truths[flow].shape)
        over_the_prior = flow == "joint" and bool(point_mass) and randomized_point_mass
        at_one = np.abs(truths[flow][:, 2]) <= 1e-9 if over_the_prior else np.zeros(len(context), dtype=bool)
        uniform = np.random.default_rng([seed, 19]).random(len(context))
        for start in range(0, len(context), CALIBRATION_BATCH):  # bounded memory: n_samples rows per train
            rows = slice(start, start + CALIBRATION_BATCH)
            samples = posterior.sample(context[rows], n_samples, flow, seed, calibrated=False)
            position[rows] = ((samples < truths[flow][rows, None, :]).sum(axis=1) + 0.5) / (n_samples + 1)
            if at_one[rows].any():
                # A truth at the prior's point mass sits at a uniform position within the draws the point-mass rule
                # reads as k = 1 (randomized PIT: a distribution with an atom has no single CDF position there).
                log_k = samples[at_one[rows], :, 2]
                bound = float(point_mass["log_k_within"])
                below = (log_k <= -bound).sum(axis=1)
                inside = (np.abs(log_k) < bound).sum(axis=1)
                position[np.flatnonzero(at_one[rows]) + start, 2] = (
                    below + uniform[rows][at_one[rows]] * inside + 0.5
                ) / (n_samples + 1)
        classes = class_of(context)
        log_n = np.asarray(context)[:, CONTEXT_NAMES.index("log_n_spikes")].astype(float)
        # Which trains each parameter's map is fitted on (n, p).
        chosen = np.ones(position.shape, dtype=bool)
        if flow == "joint":
            off_one = np.abs(truths[flow][:, 2]) > 1e-9
            # ln k: with ``randomized_point_mass``, on every train, the truths at k = 1 at random within the point
            # mass, so that the reported ln k is calibrated over the prior (its randomized CDF position uniform);
            # otherwise (cards before 2026-12-06's fourth session) on the trains at k != 1 alone, a subset chosen by
            # the truth over which not even the exact posterior covers at its level (docs/posterior.md,
            # "Calibration of ln k").
            chosen[:, 2] = True if over_the_prior else off_one
            if point_mass:
                # With the point-mass rule the joint flow's (g_s, g_u) are reported only for draws at k != 1 (those
                # at k = 1 come from the known_k flow), so its map is fitted where it serves (STG tonic g_u with k
                # unknown covered 0.60 at 68 % on cropped trains at k != 1 when fitted on all).
                chosen[:, :2] = off_one[:, None]
        knots[flow] = {}
        for index, name in enumerate(CLASSES):
            in_class = chosen & (classes == index)[:, None]
            class_map = _class_knots(position, in_class, log_n, irregularity(context), strata, split)
            if class_map is not None:  # None: too few such trains to calibrate on: left as the flow draws them
                knots[flow][name] = class_map
    return knots


def fit_reported_calibration(
    samples: np.ndarray, truths: np.ndarray, context: np.ndarray, strata: int = CALIBRATION_STRATA, split: bool = True
) -> dict:
    """Knots of the reported map (:meth:`PosteriorEstimator.report`): per class and length stratum, the quantiles at
    CALIBRATION_LEVELS of the truths' CDF positions among the *reported* joint posterior's (g_s, g_u) draws
    ``samples`` (n_trains, n, >= 2): after the flows' maps and the card's rules, on calibration trains at the
    prior's k (k = 1 included). ``context``: each train's context row (its class, irregularity and length)."""
    n = samples.shape[1]
    position = ((samples[:, :, :2] < truths[:, None, :2]).sum(axis=1) + 0.5) / (n + 1)
    classes = class_of(context)
    log_n = np.asarray(context)[:, CONTEXT_NAMES.index("log_n_spikes")].astype(float)
    drawn = np.isfinite(samples[:, 0, 0])
    knots = {}
    for index, name in enumerate(CLASSES):
        in_class = np.repeat((drawn & (classes == index))[:, None], 2, axis=1)
        class_map = _class_knots(position, in_class, log_n, irregularity(context), strata, split)
        if class_map is not None:
            knots[name] = class_map
    return {"joint": knots}


def _class_knots(
    position: np.ndarray, chosen: np.ndarray, log_n: np.ndarray, irregular: np.ndarray, strata: int, split: bool
):
    """One class's map (:class:`MarginalCalibration`): its trains (any parameter ``chosen``, (n, p)) split at their
    median ``irregular``-ity (``split``; else one group, the format before the split), each half in ``strata``
    length strata, each parameter's knots from the CDF positions ``position`` (n, p) of the trains chosen for it.
    None when a group has fewer than ``strata`` trains."""
    members = chosen.any(axis=1)
    edge = float(np.nanmedian(irregular[members])) if members.any() else math.inf
    regular = irregular <= edge  # NaN counts as irregular, as MarginalCalibration reads it
    if split and min((members & regular).sum(), (members & ~regular).sum()) < strata:
        split = False  # one irregularity for (nearly) all: nothing to split
    groups = []
    for in_group in (regular, ~regular) if split else (np.ones(len(log_n), dtype=bool),):
        rows = np.flatnonzero(members & in_group)
        if rows.size < strata:
            return None
        edges = stratum_edges(log_n[rows], strata)
        stratum_of = np.searchsorted(edges, log_n, side="right")
        quantiles = []
        for stratum in range(len(edges) + 1):
            in_stratum = members & in_group & (stratum_of == stratum)
            quantiles.append(
                [
                    np.quantile(position[in_stratum & chosen[:, p], p], CALIBRATION_LEVELS).tolist()
                    for p in range(position.shape[1])
                ]
            )
        groups.append({"log_n_edges": edges, "quantiles": quantiles})
    return {"irregularity_edge": edge, "groups": groups} if split else groups[0]


def stratum_edges(log_n: np.ndarray, strata: int) -> list:
    """Edges of up to ``strata`` strata of nearly equal counts, at values of ``log_n`` (stratum of x: the number
    of edges <= x), so that trains of the same length share a stratum (the log number of spikes takes few values);
    an edge that would leave a stratum empty is dropped."""
    values = np.sort(np.asarray(log_n, dtype=float))
    edges = []
    for part in range(1, strata):
        edge = float(values[min(len(values) - 1, part * len(values) // strata)])
        if values[0] < edge and (not edges or edge > edges[-1]):
            edges.append(edge)
    return edges


def irregularity(context: np.ndarray) -> np.ndarray:
    """Per context row, how far below the median log ISI the shortest 5 % of the ISIs lie (-``shape_q05``): ~0
    for a noise-free tonic train, larger with spike-time jitter or noise (IRREGULARITY_COLUMN says why)."""
    return -np.asarray(context, dtype=float)[:, CONTEXT_NAMES.index(IRREGULARITY_COLUMN)]


def class_of(context: np.ndarray) -> np.ndarray:
    """0 (tonic) or 1 (bursting) per context row, from its rule-based bursting flag."""
    return (np.asarray(context)[:, CONTEXT_NAMES.index("burst_flag")] > 0.5).astype(int)


class PosteriorEstimator:
    """The two flows of a model with their standardisation and calibration (see module docstring)."""

    def __init__(self, folder: Path, model_name: str):
        import torch

        card_path = folder / f"{model_name}_posterior.json"
        weights_path = folder / f"{model_name}_posterior.pt"
        if not card_path.exists() or not weights_path.exists():
            raise FileNotFoundError(
                f"no posterior for model {model_name!r} in {folder} ({weights_path.name}, {card_path.name}); train it "
                "with spikeinterface_dic.inference.posterior.fit_posterior"
            )
        self.card = json.loads(card_path.read_text())
        digest = hashlib.sha256(weights_path.read_bytes()).hexdigest()
        if digest != self.card["weights_sha256"]:
            raise RuntimeError(f"{weights_path} has sha256 {digest}, its card records {self.card['weights_sha256']}")
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        self.flows = {}
        # Each flow reads the context columns its card names (cards differ in the columns they were trained on).
        self.context_columns = {name: context_columns(flow_context(self.card, name)) for name in FLOWS}
        for name, parameters in FLOWS.items():
            flow = _build_flow(len(parameters), len(self.context_columns[name]), flow_config(self.card, name))
            flow.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items() if k.split(".", 1)[0] == name})
            flow.eval()
            self.flows[name] = flow
        self.scaling = {name: {k: np.asarray(v) for k, v in s.items()} for name, s in self.card["scaling"].items()}
        self.weights_sha256 = digest
        # Cards written before the calibration existed have none: their flows are used as trained.
        calibration = self.card.get("calibration", {})
        self.calibration = MarginalCalibration(calibration.get("knots", {}), calibration.get("scale", "central"))
        # The reported map (:meth:`report`), fitted last on what the card's rules report; cards before 2026-12-05's
        # third session have none.
        self.reported_calibration = MarginalCalibration(calibration.get("reported_knots", {}), "cdf")
        # Cards written before the point-mass rule (:meth:`_given_point_mass`) have none: their joint draws are
        # reported as drawn.
        self.point_mass = self.card.get("point_mass")
        # Cards with ``rescaling`` read the joint flow's continuous part of k by rescaling the train (:func:`draw`).
        self.rescaling = self.card.get("rescaling")
        # Cards with ``tonic_rate_density`` read k of long tonic trains from their rate (:mod:`.tonic_rate`).
        self.tonic_rate_density = self.card.get("tonic_rate_density")

    def read_columns(self, context: np.ndarray, flow: str) -> np.ndarray:
        """The context columns the flow reads (:func:`read_context_columns`)."""
        return read_context_columns(context, self.context_columns[flow])

    def context_keys(self, context: np.ndarray, flow: str) -> list:
        """Default noise keys of context rows: the bytes of the columns the flow reads (a flow's draws of a train do
        not change with context columns it does not read)."""
        return [row.tobytes() for row in self.read_columns(context, flow)]

    def sample(
        self, context: np.ndarray, n: int, flow: str = "joint", seed: int = 0, keys=None, calibrated: bool = True
    ) -> np.ndarray:
        """(n_trains, n, n_parameters) samples in (g_s, g_u[, ln k]) for context rows (:func:`train_context`).

        Each row's base noise comes from (seed, its key): the same train gets the same samples whatever else is in
        the batch. ``keys`` default to the context rows' own bytes. ``calibrated``: the reported posterior, with
        the card's marginal calibration (:class:`MarginalCalibration`) and, for the joint flow, its point-mass rule
        (:meth:`_given_point_mass`); samples of the flow itself otherwise, whose density :meth:`log_prob` is.
        """
        import torch

        scaling = self.scaling[flow]
        read = self.read_columns(context, flow)
        standardised = (read - scaling["context_mean"]) / scaling["context_std"]
        n_parameters = len(FLOWS[flow])
        given_keys = keys  # None: each flow keys a train by the context columns it reads
        keys = self.context_keys(context, flow) if keys is None else keys
        noise = np.empty((int(n), len(standardised), n_parameters), dtype=np.float32)
        for j, key in enumerate(keys):
            entropy = int.from_bytes(hashlib.sha256(bytes(key)).digest()[:8], "little")
            noise[:, j, :] = np.random.default_rng([int(seed), entropy]).standard_normal((int(n), n_parameters))
        with torch.inference_mode(), threads_for(noise.shape[0] * noise.shape[1]):
            context_rows = torch.from_numpy(standardised.astype(np.float32))
            draws = _invert(self.flows[flow], context_rows, torch.from_numpy(noise)).numpy()  # (n, n_trains, p)
        draws = np.moveaxis(draws, 0, 1).astype(np.float64) * scaling["target_std"] + scaling["target_mean"]
        if not calibrated:
            return draws
        rows = np.atleast_2d(context)
        out = self.calibration.apply_to(draws, flow, rows)
        if flow == "joint" and self.point_mass:
            self._given_point_mass(out, out[:, :, 2], rows, seed, given_keys)
        return out

    def report(self, samples: np.ndarray, context_rows: np.ndarray) -> np.ndarray:
        """The joint posterior's (g_s, g_u) after the rescaling rule through the card's reported map (identity
        without one); :func:`draw` applies it.

        Why: with the rescaling rule (DA) the reported (g_s, g_u) with k unknown are the known_k flow's, read on the
        train rescaled to binned k's and mixed with the point mass's: a mixture no map was fitted on (each known_k
        draw is calibrated for one exactly known k), and on held-out trains DA's 68 % intervals of g with k unknown
        covered up to 0.72-0.725. This last map is fitted on the reported draws themselves, over calibration trains
        at the prior's k (:func:`fit_reported_calibration`): DA cells in 0.68 +- 0.03, 27 -> 32 of 40. ln k is left
        as its map made it (it decides the point mass). Without the rule (STG) the joint flow's draws at k != 1
        and the known_k flow's at k = 1 are each calibrated where they are reported, and the same map fitted there
        narrowed STG's held-out g intervals by 0.005-0.024 (mean |coverage - 0.68| 0.018 -> 0.019): not used."""
        if "joint" not in self.reported_calibration.knots:
            return samples
        return self.reported_calibration.apply_to(samples, "joint", context_rows, parameters=(0, 1))

    def _given_point_mass(self, out: np.ndarray, log_k: np.ndarray, context: np.ndarray, seed: int, keys) -> None:
        """Joint draws at the prior's point mass k = 1 take their (g_s, g_u) from the known_k flow (in place).

        Why: the prior of k puts half its mass at k = 1 exactly, which a continuous flow can only learn as a spike
        ~1e-4 (STG) to ~1e-3 (DA) wide in ln k; given k = 1, p(g | train, k = 1) is exactly what the known_k flow
        learned, from the same trains (a train at k = 1 has the same context for both flows), and it learned it far
        better than the joint flow's slice through its spike: on held-out trains at k = 1 read with k unknown,
        bursting g_u MAE 0.99 instead of 1.16 (STG), tonic g_u 0.95 instead of 1.75 (DA), coverage unchanged. So
        p(g, ln k | train) = P(k = 1 | train) p_known_k(g | train) + the joint flow's continuous part: the joint draws
        within ``log_k_within`` of ln k = 0 (``log_k``: the calibrated draws) are the point mass; they get ln k = 0
        and, draw i, the i-th of the n calibrated known_k draws of the same seed and keys (the samples of the train
        given k = 1). The calibrated draws, not the flow's own: the calibration of ln k (fitted on trains at k != 1)
        sets how much of the posterior stays at k = 1, and putting back at ln k = 0 the draws it had moved away undid
        it (tonic ln k with k unknown covered 0.65 at 68 % on the calibration trains themselves instead of 0.68).
        Cost: n known_k draws for every train with a draw at the point mass
        (STG's known_k flow is the larger one: 1,000 draws of a unit ~2x the joint flow's alone). Always n, not
        one per point-mass draw, so that a draw that the batch's float32 round-off moves across the bound changes
        that draw only, not the calibration of the others.
        """
        at_one = np.abs(log_k) < float(self.point_mass["log_k_within"])
        rows = np.flatnonzero(at_one.any(axis=1))
        if not rows.size:
            return
        if keys is None:
            keys = self.context_keys(context, self.point_mass["flow"])  # as that flow's own draws of the train
        given = self.sample(context[rows], out.shape[1], self.point_mass["flow"], seed, [keys[r] for r in rows])
        for draws, row in zip(given, rows, strict=True):
            positions = np.flatnonzero(at_one[row])
            out[row, positions, :2] = draws[positions]  # draw i from known_k draw i: a flip moves one draw only
            out[row, positions, 2] = 0.0

    def log_prob(self, context_rows: np.ndarray, parameters: np.ndarray, flow: str = "joint") -> np.ndarray:
        """Log density of the (uncalibrated) flow at parameter rows (m, p) in (g_s, g_u[, ln k]) given each of the
        context rows (s, n_context): (s, m), one flow call.

        Up to the standardisation's log-Jacobian, the same constant for every row: ratios of densities (importance
        weights) are exact.
        """
        import torch

        scaling = self.scaling[flow]
        parameters = np.atleast_2d(np.asarray(parameters, dtype=np.float64))
        context_rows = self.read_columns(context_rows, flow)
        standardised = ((context_rows - scaling["context_mean"]) / scaling["context_std"]).astype(np.float32)
        z = ((parameters - scaling["target_mean"]) / scaling["target_std"]).astype(np.float32)
        with torch.inference_mode():
            context = torch.from_numpy(np.repeat(standardised, len(z), axis=0))
            values = torch.from_numpy(np.tile(z, (len(standardised), 1)))
            log_prob = self.flows[flow](context).log_prob(values).double().numpy()
        return log_prob.reshape(len(standardised), len(z))


def flow_context(card: dict, flow: str) -> list:
    """The context columns (names) a flow of a posterior card reads: ``contexts`` per flow (cards merged from runs
    with different contexts, :func:`merge_runs`), else the card's one ``context``."""
    return card["contexts"][flow] if "contexts" in card else card["context"]


def context_columns(names) -> np.ndarray:
    """Indices in :data:`CONTEXT_NAMES` (the columns of :func:`train_context`) of the named context columns."""
    unknown = [name for name in names if name not in CONTEXT_NAMES]
    if unknown:
        raise ValueError(f"context columns {unknown} are not computed by this version's train_context")
    return np.array([CONTEXT_NAMES.index(name) for name in names], dtype=np.int64)


def read_context_columns(context: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """(n, len(columns)) float32 in C order: those columns of context rows. C order matters: column indexing gives
    a Fortran-ordered array, which torch multiplies with other round-off (draws moved by ~1e-5)."""
    return np.ascontiguousarray(np.atleast_2d(np.asarray(context, dtype=np.float32))[:, columns])


def flow_config(card: dict, flow: str) -> dict:
    """A flow's architecture from a posterior card: ``config`` is one architecture for both flows, or one per flow
    (cards merged from runs of different architectures, :func:`merge_runs`)."""
    config = card["config"]
    return config[flow] if flow in config else config


@lru_cache(maxsize=8)
def load_posterior(model_name: str, weights_dir: str | None = None) -> PosteriorEstimator:
    return PosteriorEstimator(Path(weights_dir) if weights_dir else WEIGHTS_DIR, model_name)


def has_posterior(model_name: str, weights_dir: str | None = None) -> bool:
    folder = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    return (folder / f"{model_name}_posterior.pt").exists() and (folder / f"{model_name}_posterior.json").exists()


# ---------------------------------------------------------------------------------------------------- training data
# Every joint-flow example is cropped to a random sub-window of its span, a fraction log-uniform in this range at a
# uniform start. Why: a simulated train spans exactly the model's window times k, so a flow trained on whole trains
# reads k from the span (log mean ISI + log spike count) instead of the dynamics. Users' recordings have any length
# (and long ones are cut at the network's k), and on held-out trains cropped to 40-100 % of their span the STG joint
# flow trained on whole trains lost most of its accuracy (bursting g_u MAE 1.30 -> 3.21, ln k 0.010 -> 0.043,
# 68 % coverage 0.59). The known_k flow reads trains divided by their k and is not cropped.
JOINT_CROP = (0.25, 1.0)


def cropped(train: np.ndarray, rng, fraction_range: tuple, min_spikes: int) -> np.ndarray:
    """The spikes of a random sub-window of the train's span: a fraction log-uniform in ``fraction_range``, at a
    uniform start; the whole train when the window would keep fewer than ``min_spikes`` spikes."""
    span = float(train[-1] - train[0])
    fraction = math.exp(rng.uniform(math.log(fraction_range[0]), math.log(fraction_range[1])))
    start = float(train[0]) + rng.uniform(0.0, 1.0 - fraction) * span
    kept = train[(train >= start) & (train <= start + fraction * span)]
    return kept if kept.size >= min_spikes else train


def augmented_examples(
    predictor,
    data: dict,
    copies: int,
    seed: int,
    min_spikes: int = 4,
    flows: tuple = tuple(FLOWS),
    crop: tuple | None = JOINT_CROP,
) -> dict:
    """Contexts and targets of ``copies`` augmented versions of every training train.

    Each copy draws ln k from the prior (the train's times multiplied by k), a spike-time jitter with sd
    ~ U(0, 2) ms with probability 1/2, deletion of up to 5 % of spikes, and, with probability 1/3, a truncation to
    the first n spikes (n log-uniform from 8 to the train's length), so that short recordings get honestly wide
    posteriors. ``known_k`` contexts are those of the same augmented train at k = 1; ``joint`` contexts those of the
    train at k, cropped (:func:`cropped`, ``crop`` = None: not cropped, as the flows shipped before JOINT_CROP).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 17]))
    crop_rng = np.random.default_rng(np.random.SeedSequence([seed, 29]))  # its own stream: the rest as without crops
    trains, targets, groups, scaled = [], [], [], []
    for _copy in range(copies):
        for index, train in enumerate(data["trains"]):
            t = np.asarray(train, dtype=float)
            if t.size < min_spikes:
                continue
            if rng.random() < 0.5:
                t = np.sort(t + rng.normal(0.0, rng.uniform(0.0, 0.002), t.size))
            keep = rng.random(t.size) >= rng.uniform(0.0, 0.05)
            if keep.sum() >= min_spikes:
                t = t[keep]
            if rng.random() < 1.0 / 3.0 and t.size > 8:
                t = t[: int(round(math.exp(rng.uniform(math.log(8), math.log(t.size)))))]
            t = t[np.concatenate([[True], np.diff(t) > 1e-5])]
            if t.size < min_spikes:
                continue
            at_one = rng.random() < K_PRIOR_POINT_MASS
            log_k = 0.0 if at_one else rng.uniform(*K_LOG2_RANGE) * math.log(2.0)
            trains.append(t)
            at_k = t * math.exp(log_k)
            scaled.append(at_k if crop is None else cropped(at_k, crop_rng, crop, min_spikes))
            targets.append((data["g_s"][index], data["g_u"][index], log_k))
            groups.append(data["target_index"][index])
    contexts = {"joint": lambda: train_context(predictor, scaled), "known_k": lambda: train_context(predictor, trains)}
    return {
        **{name: contexts[name]() for name in flows},
        "targets": np.asarray(targets, dtype=np.float64).reshape(-1, 3),
        "groups": np.asarray(groups),
    }


# Trains per block of cached training examples: a block is the unit of resumption (~1-2 min of context on 2 cores).
EXAMPLE_BLOCK = 16384


def cached_examples(
    predictor,
    data: dict,
    copies: int,
    seed: int,
    work_dir,
    flows: tuple = tuple(FLOWS),
    progress=None,
    crop: tuple | None = JOINT_CROP,
) -> dict:
    """:func:`augmented_examples` of ``data`` built block by block (EXAMPLE_BLOCK trains per copy), each block
    saved in ``work_dir`` and reused when the run is resumed; block b of copy c is augmented with a seed
    derived from (seed, c, b) alone, so a resumed run builds exactly the examples an uninterrupted one would."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    keys = ("targets", "groups", *flows)
    n = len(data["trains"])
    parts = {key: [] for key in keys}
    blocks = [(c, b) for c in range(copies) for b in range(0, n, EXAMPLE_BLOCK)]
    for number, (copy, start) in enumerate(blocks):
        cropping = "" if crop is None or "joint" not in flows else f"_crop{crop[0]:g}-{crop[1]:g}"
        path = work_dir / f"examples_{'-'.join(flows)}{cropping}_c{copy}_b{start // EXAMPLE_BLOCK:05d}.npz"
        if not path.exists():
            rows = slice(start, start + EXAMPLE_BLOCK)
            block = {key: data[key][rows] for key in ("g_s", "g_u", "target_index")}
            block["trains"] = data["trains"][rows]
            examples = augmented_examples(
                predictor, block, 1, seed * 100003 + copy * 1009 + start // EXAMPLE_BLOCK, flows=flows, crop=crop
            )
            partial = path.with_suffix(".tmp.npz")
            np.savez(partial, **{key: examples[key] for key in keys})
            partial.replace(path)  # a block on disk is always complete
        with np.load(path) as stored:
            for key in keys:
                parts[key].append(stored[key])
        if progress:
            progress(number + 1, len(blocks))
    return {key: np.concatenate(value) for key, value in parts.items()}


def fit_posterior(
    predictor,
    data: dict,
    out_dir,
    model_name: str,
    copies: int = 3,
    seed: int = 0,
    epochs: int = 60,
    batch_size: int = 1024,
    learning_rate: float = 2e-3,
    time_budget_s: float = 1800.0,
    config: dict | None = None,
    examples: dict | None = None,
    flows: tuple = tuple(FLOWS),
    work_dir=None,
    progress=None,
    crop: tuple | None = JOINT_CROP,
    init_seed: int | None = None,
    context_names: tuple = CONTEXT_NAMES,
) -> dict:
    """Train both flows on simulated data (``load_training_data`` output) and write ``<model>_posterior.pt/.json``.

    The validation split is by population target (members of one population never straddle it); the weights with
    the best validation NLL are kept. ``flows``: the flows to train (a run of one flow is combined with others by
    :func:`merge_runs`). ``work_dir``: where the run keeps its state (example blocks, :func:`cached_examples`, and a
    checkpoint per flow after every epoch): run the same command again after an interruption (or after the time
    budget ran out) and it continues where it stopped, to the same result. ``time_budget_s`` bounds one call.
    ``context_names``: the context columns the flows read (default: all of :func:`train_context`'s). Returns the
    card.
    """
    import torch

    config = config or DEFAULT_FLOW_CONFIG
    # The examples and the validation split come from ``seed``; the flows' initial weights and the order of the
    # batches from ``init_seed`` (default: ``seed``): runs that differ in init_seed alone share their examples,
    # split and standardisation (a second run to tell training noise from a change).
    init_seed = seed if init_seed is None else int(init_seed)
    torch.manual_seed(init_seed)
    started = time.perf_counter()
    if examples is None:
        examples = (
            cached_examples(predictor, data, copies, seed, work_dir, flows, progress, crop)
            if work_dir is not None
            else augmented_examples(predictor, data, copies, seed, flows=flows, crop=crop)
        )
    examples_s = time.perf_counter() - started
    groups = examples["groups"]
    unique = np.unique(groups)
    rng = np.random.default_rng(seed)
    validation_groups = rng.choice(unique, size=max(1, len(unique) // 10), replace=False)
    validation = np.isin(groups, validation_groups)
    state, scaling, metrics = {}, {}, {}
    complete = True
    for name, parameters in FLOWS.items():
        if name not in flows:
            continue
        x = read_context_columns(examples[name], context_columns(context_names))
        y = examples["targets"][:, : len(parameters)]
        context_mean, context_std = x[~validation].mean(0), x[~validation].std(0) + 1e-6
        target_mean, target_std = y[~validation].mean(0), y[~validation].std(0)
        scaling[name] = {
            "context_mean": context_mean.tolist(),
            "context_std": context_std.tolist(),
            "target_mean": target_mean.tolist(),
            "target_std": target_std.tolist(),
        }
        xs = torch.from_numpy(((x - context_mean) / context_std).astype(np.float32))
        ys = torch.from_numpy(((y - target_mean) / target_std).astype(np.float32))
        flow = _build_flow(len(parameters), x.shape[1], config)
        optimizer = torch.optim.AdamW(flow.parameters(), lr=learning_rate, weight_decay=1e-5)
        steps_per_epoch = max(1, int((~validation).sum()) // batch_size)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
        train_rows = torch.from_numpy(np.flatnonzero(~validation))
        validation_rows = torch.from_numpy(np.flatnonzero(validation))
        best, best_state, history, train_s = math.inf, None, [], 0.0
        checkpoint = Path(work_dir) / f"checkpoint_{name}.pt" if work_dir is not None else None
        generator = torch.Generator().manual_seed(init_seed)
        if checkpoint is not None and checkpoint.exists():
            saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
            flow.load_state_dict(saved["flow"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            generator.set_state(saved["generator"])
            best, best_state, history, train_s = saved["best"], saved["best_state"], saved["history"], saved["seconds"]
        budget = time_budget_s / len(flows)
        flow_started = time.perf_counter()
        while len(history) < epochs:
            epoch_started = time.perf_counter()
            flow.train()
            order = train_rows[torch.randperm(len(train_rows), generator=generator)]
            for start in range(0, steps_per_epoch * batch_size, batch_size):
                rows = order[start : start + batch_size]
                loss = -flow(xs[rows]).log_prob(ys[rows]).mean()
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(flow.parameters(), 5.0)
                optimizer.step()
                scheduler.step()
            flow.eval()
            with torch.no_grad():
                nll = float(-flow(xs[validation_rows]).log_prob(ys[validation_rows]).mean())
            history.append(nll)
            train_s += time.perf_counter() - epoch_started
            if nll < best:
                best, best_state = nll, {k: v.clone() for k, v in flow.state_dict().items()}
            if progress:
                progress(len(history), epochs, name, nll)
            if checkpoint is not None:
                saved = {
                    "flow": flow.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "generator": generator.get_state(),
                    "best": best,
                    "best_state": best_state,
                    "history": history,
                    "seconds": train_s,
                }
                torch.save(saved, checkpoint.with_suffix(".tmp"))
                checkpoint.with_suffix(".tmp").replace(checkpoint)
            if len(history) < epochs and time.perf_counter() - flow_started > budget:
                complete = False  # at least one epoch per call: a resumed run always advances
                break
        flow.load_state_dict(best_state)
        state.update({f"{name}.{k}": v for k, v in best_state.items()})
        metrics[name] = {"validation_nll": best, "epochs": len(history), "history": history, "train_s": train_s}
    card = {
        "model": model_name,
        "kind": "conditional neural spline flow (zuko NSF) over (g_s, g_u, ln k) and (g_s, g_u)",
        "context": list(context_names),
        "config": config,
        "scaling": scaling,
        "point_mass": DEFAULT_POINT_MASS,
        **({"rescaling": DEFAULT_RESCALING[model_name]} if model_name in DEFAULT_RESCALING else {}),
        # The fraction of its span each joint example kept (JOINT_CROP); calibration and evaluation crop the same.
        "joint_crop": None if crop is None or "joint" not in flows else list(crop),
        "training": {
            "n_examples": int(len(groups)),
            "n_validation": int(validation.sum()),
            "copies": copies,
            "seed": seed,
            "init_seed": init_seed,
            "k_prior": f"k = 1 with probability {K_PRIOR_POINT_MASS}, else log2 k uniform on {list(K_LOG2_RANGE)}",
            "augmentation": "jitter sd ~ U(0, 2) ms with probability 1/2, deletions <= 5 %, truncation on a third",
            "data_recipe": data.get("recipe"),
            "network_weights_sha256": predictor.weights_sha256,
            "seconds_this_call": time.perf_counter() - started,
            "examples_s_this_call": examples_s,
            "complete": complete,
            "device": "cpu",
            "torch_threads": torch.get_num_threads(),
        },
        "metrics": metrics,
    }
    return _write_posterior(out_dir, model_name, state, card)


def _write_posterior(out_dir, model_name: str, state: dict, card: dict) -> dict:
    """Write ``<model>_posterior.pt`` and its card (with the weights' sha256) in ``out_dir``; returns the card."""
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path = out_dir / f"{model_name}_posterior.pt"
    torch.save(state, weights_path)
    card = {**card, "weights_sha256": hashlib.sha256(weights_path.read_bytes()).hexdigest()}
    (out_dir / f"{model_name}_posterior.json").write_text(json.dumps(card, indent=2, default=str))
    load_posterior.cache_clear()
    return card


def merge_runs(model_name: str, folders, out_dir, take: dict | None = None) -> dict:
    """Write ``<model>_posterior.pt/.json`` in ``out_dir`` taking each flow from the training run (folder written by
    :func:`fit_posterior`) with the lowest validation NLL, or from the run ``take`` names for it ({flow: folder});
    the card lists every run and which one each flow comes from, and each flow's architecture and context columns
    (``contexts``: runs may differ in their context). Joint flows trained on differently cropped trains have
    incomparable NLLs and must be chosen by ``take``.
    New cards get the model's reporting rules (DEFAULT_POINT_MASS, DEFAULT_RESCALING) where the first run had none."""
    import torch

    runs = []
    for folder in map(Path, folders):
        card = json.loads((folder / f"{model_name}_posterior.json").read_text())
        state = torch.load(folder / f"{model_name}_posterior.pt", map_location="cpu", weights_only=True)
        runs.append((folder, card, state))
    merged_state, scaling, metrics, configs, contexts = {}, {}, {}, {}, {}
    for name in FLOWS:
        having = [run for run in runs if name in run[1]["metrics"]]
        if take and name in take:
            folder, card, state = next(run for run in having if run[0] == Path(take[name]))
        else:
            if name == "joint" and len({json.dumps(run[1].get("joint_crop")) for run in having}) > 1:
                raise ValueError(
                    "the runs' joint flows were trained on differently cropped trains (joint_crop): their validation "
                    "NLLs are not comparable; choose one with take={'joint': folder}"
                )
            folder, card, state = min(having, key=lambda run: run[1]["metrics"][name]["validation_nll"])
        if name == "joint":
            joint_crop = card.get("joint_crop")
        merged_state.update({k: v for k, v in state.items() if k.split(".", 1)[0] == name})
        scaling[name] = card["scaling"][name]
        metrics[name] = {**card["metrics"][name], "source": str(folder)}
        configs[name] = flow_config(card, name)
        contexts[name] = list(flow_context(card, name))
    same = len({json.dumps(c, sort_keys=True) for c in configs.values()}) == 1
    card = {
        **runs[0][1],
        "config": next(iter(configs.values())) if same else configs,
        "contexts": contexts,
        "scaling": scaling,
        "metrics": metrics,
        "joint_crop": joint_crop,
        "training_runs": [card["training"] for _, card, _ in runs],
    }
    card.setdefault("point_mass", DEFAULT_POINT_MASS)
    if model_name in DEFAULT_RESCALING:
        card.setdefault("rescaling", DEFAULT_RESCALING[model_name])
    for stale in ("training", "heldout_metrics", "weights_sha256", "context"):  # "contexts" says it per flow
        card.pop(stale, None)
    return _write_posterior(out_dir, model_name, merged_state, card)


# --------------------------------------------------------------------------------------------------------- sampling
# Samples drawn per unit for the summaries infer_dics reports (median, sd, 16/84 % quantiles): 200 draws put the
# 16 % quantile within ~0.05 sd of its limit, at a fifth of the cost of 1,000.
SUMMARY_SAMPLES = 200
# Rejection rounds for a prior range of k: each round draws more; a range the posterior barely reaches fails loudly.
RANGE_ROUNDS = 6


# Longest segment the flows read, in training windows (the model's recording window, times k in real time), and
# the most segments a train is read in. Why: the flows were trained on trains of one window; a train several times
# longer (a 60 s recording) puts the context's extensive parts (spike count, the network's combined sds) far outside
# training, where the flows extrapolated badly (median DIC error 15.7 against the network's 2.9 on 60 s trains of
# the probe study). A long train is read as consecutive segments of one window and the posterior is their mixture:
# each segment's posterior is in distribution, so the mixture is conservative, never over-confident.
SEGMENT_WINDOWS = 1.25
MAX_SEGMENTS = 8
MIN_SEGMENT_SPIKES = 8


def training_window_s(model_name: str) -> float:
    """The flows' training window in model time (s): the model's default recording window."""
    from ..models import get_model

    model = get_model(model_name)
    return (model.default_duration_ms - model.default_transient_ms) / 1000.0


def segments(train_s: np.ndarray, window_s: float) -> list[np.ndarray]:
    """The train itself when it spans at most SEGMENT_WINDOWS x ``window_s``; else consecutive segments of
    ``window_s`` (at most MAX_SEGMENTS, evenly spread over the train; segments of fewer than MIN_SEGMENT_SPIKES
    spikes dropped), each shifted to start at 0."""
    train_s = np.asarray(train_s, dtype=float)
    if train_s.size < 2 or train_s[-1] - train_s[0] <= SEGMENT_WINDOWS * window_s:
        return [train_s]
    starts = train_s[0] + window_s * np.arange(int((train_s[-1] - train_s[0]) // window_s))
    if len(starts) > MAX_SEGMENTS:
        starts = starts[np.round(np.linspace(0, len(starts) - 1, MAX_SEGMENTS)).astype(int)]
    out = []
    for start in starts:
        piece = train_s[(train_s >= start) & (train_s < start + window_s)]
        if piece.size >= MIN_SEGMENT_SPIKES:
            out.append(piece - start)
    return out or [train_s]


def window_time_scale(network: np.ndarray, flow: str) -> np.ndarray:
    """Per train, the k that stretches the flows' training window before it is cut into segments: for the joint
    flow the network's k, its ln k rounded to 0.001 so that the network's float32 digits, which vary with the batch,
    do not move segment bounds (a spike crossing one would change that segment's noise key, hence all its draws); 1
    for the known_k flow (its trains are already divided by their k).

    Not k two of the network's sds up (tried to cut fewer DA trains whose network k is too small): a segment then
    spans window x that k, and the flows read k from the span (every training train spans window x k), so the
    posterior's k follows the rule's k.
    """
    network = np.atleast_2d(network)
    if flow != "joint":
        return np.ones(len(network))
    return np.exp(np.round(network[:, 2], 3))


def segment_contexts(
    predictor, trains_s: list[np.ndarray], flow: str, network: np.ndarray | None = None, features=None
):
    """Context rows of the segments of each train (see :func:`segments`) and each row's train index.

    Segment windows: the flows' training window, times :func:`window_time_scale` of the whole train. ``network``
    and ``features``: the whole trains' network outputs and :func:`~spikeinterface_dic.features.spike_train_features`,
    when already computed (used when no train is cut).
    """
    network = network_outputs(predictor, trains_s) if network is None else network
    window = training_window_s(predictor.model_name)
    scale = window_time_scale(network, flow)
    pieces, owners = [], []
    for index, train in enumerate(trains_s):
        parts = segments(train, window * scale[index])
        pieces += parts
        owners += [index] * len(parts)
    owners = np.asarray(owners)
    whole = len(pieces) == len(trains_s)  # no train was cut: the whole-train network outputs serve
    context = train_context(predictor, pieces, network if whole else None, features if whole else None)
    return context, owners, pieces


def pooled_samples(
    posterior, context, owners, pieces, n_trains: int, n: int, flow: str, seed: int, calibrated=True, keys=None
):
    """(n_trains, n, p): each train's samples, drawn equally from its segments' posteriors (their mixture).
    ``keys``: one per segment (bytes), keying its noise; by default its own spike times."""
    # A segment's noise is keyed on its own spike times (not on the context, whose float32 network part varies in
    # its last digits with the batch), so its samples never depend on the other trains. Rounded to 1 ns so that a
    # train given with its known k (times / k) keys like the same train at k = 1.
    if keys is None:
        keys = [np.round(np.asarray(t, dtype=np.float64), 9).tobytes() for t in pieces]
    keys = np.array(keys, dtype=object)
    counts = np.bincount(owners, minlength=n_trains)
    out = np.empty((n_trains, n, len(FLOWS[flow])))
    # Trains with the same number of segments m are drawn together, ceil(n / m) samples per segment: a train's
    # samples depend on its own segments only.
    for m in np.unique(counts[counts > 0]):
        trains = np.flatnonzero(counts == m)
        rows = np.flatnonzero(np.isin(owners, trains))
        per = math.ceil(n / m)
        draws = posterior.sample(context[rows], per, flow, seed, list(keys[rows]), calibrated=calibrated)
        for index in trains:
            own = draws[owners[rows] == index]  # (m, per, p)
            # Interleaved: sample i comes from segment i mod m, so any prefix of the samples is a mixture too.
            out[index] = np.moveaxis(own, 0, 1).reshape(-1, own.shape[2])[:n]
    return out


def draw(
    posterior,
    predictor,
    trains_s: list[np.ndarray],
    n: int,
    known_k: np.ndarray,
    k_range: tuple | None = None,
    seed: int = 0,
    network: np.ndarray | None = None,
    span_source: str | None = None,
) -> np.ndarray:
    """(n_trains, n, 3) samples of (g_s, g_u, ln k) for trains of at least 4 spikes.

    Trains with a known k (``known_k`` finite) are divided by it and read by the ``known_k`` flow (ln k is then the
    given one); the others by the ``joint`` flow, restricted to ``k_range`` = (k_low, k_high) by rejection (the
    flow's prior is flat in ln k, so rejection is the exact posterior under a prior flat in ln k on that range).
    Trains longer than the flows' training window are read in segments (:func:`segments`).
    ``network``: the network's outputs for these trains (as divided), when already computed. ``span_source``: how
    the trains' spans came about, when known (:data:`.tonic_rate.SPAN_SOURCES`; None: weighed by their evidence),
    which decides how long tonic trains are read (:func:`read_by_rate`).
    """
    check_span_source(span_source)
    known_k = np.asarray(known_k, dtype=float)
    out = np.full((len(trains_s), n, 3), np.nan)
    for flow, chosen in (("known_k", np.isfinite(known_k)), ("joint", ~np.isfinite(known_k))):
        rows = np.flatnonzero(chosen)
        if not rows.size:
            continue
        trains = [trains_s[i] / (known_k[i] if flow == "known_k" else 1.0) for i in rows]
        context, owners, pieces = segment_contexts(predictor, trains, flow, None if network is None else network[rows])
        if flow == "joint":
            joint_context, joint_owners = context, owners
        if flow == "known_k":
            out[rows, :, :2] = pooled_samples(posterior, context, owners, pieces, len(rows), n, flow, seed)
            out[rows, :, 2] = np.log(known_k[rows])[:, None]
            continue
        if k_range is None:
            out[rows] = pooled_samples(posterior, context, owners, pieces, len(rows), n, flow, seed)
            continue
        low, high = (math.log(float(v)) for v in k_range)
        accepted = [[] for _ in rows]
        per_round = n
        for round_index in range(RANGE_ROUNDS):
            draws = pooled_samples(
                posterior, context, owners, pieces, len(rows), per_round, flow, seed + 1000 * round_index
            )
            for j in range(len(rows)):
                inside = draws[j][(draws[j, :, 2] >= low) & (draws[j, :, 2] <= high)]
                accepted[j].extend(inside[: n - len(accepted[j])])
            if all(len(a) >= n for a in accepted):
                break
            per_round *= 4
        for j, row in enumerate(rows):
            if len(accepted[j]) < n:
                continue  # the range holds (almost) none of the posterior: NaN, reported by the caller
            out[row] = np.asarray(accepted[j][:n])
    joint = np.flatnonzero(~np.isfinite(known_k))
    if posterior.rescaling and joint.size:
        block = out[joint]
        given_time_scale(posterior, predictor, [trains_s[i] for i in joint], block, seed)
        # the card's reported map, last (PosteriorEstimator.report): each train's class and length from its first
        # segment, as the map was fitted on single windows
        out[joint] = posterior.report(block, joint_context[np.searchsorted(joint_owners, np.arange(joint.size))])
    if posterior.tonic_rate_density is not None and joint.size:
        read_by_rate(posterior, predictor, trains_s, joint, n, seed, k_range, out, span_source)
    return out


def read_by_rate_mask(posterior, model_name: str, trains_s: list, features=None, span_source=None) -> np.ndarray:
    """(n,) whether each train, read with k unknown, takes its k from its rate (:mod:`.tonic_rate`): cards with a
    ``tonic_rate_density``, trains labelled spiking that span more than SEGMENT_WINDOWS training windows at k = 1,
    unless the caller says the spans are windows times k (``span_source`` "window": the joint flow's reading alone).

    Why that span: within one window at k = 1 the span is what a k = 1 neuron's recording could be, and the joint
    flow's reading (calibrated on such windows) is kept; beyond it the flow can explain the span only with a larger
    k (every training train spans the window times k), which for a recording is an artifact of how long it lasted.
    ``features``: the trains' :func:`~spikeinterface_dic.features.spike_train_features`, when computed.
    """
    mask = np.zeros(len(trains_s), dtype=bool)
    if posterior.tonic_rate_density is None or not len(trains_s) or check_span_source(span_source) == "window":
        return mask
    spans = np.array([t[-1] - t[0] if len(t) > 1 else 0.0 for t in trains_s], dtype=float)
    long = np.flatnonzero(spans > SEGMENT_WINDOWS * training_window_s(model_name))
    if long.size:
        labels = spike_train_features([trains_s[i] for i in long]) if features is None else features.iloc[long]
        mask[long] = labels["label"].to_numpy() == "spiking"
    return mask


def read_by_rate(posterior, predictor, trains_s, joint, n, seed, k_range, out, span_source=None) -> np.ndarray:
    """For the trains among ``joint`` that :func:`read_by_rate_mask` selects, the draws that the rate's reading
    takes (:mod:`.tonic_rate`: ln k from the rate, (g_s, g_u) from the known_k flow given each k), in place in
    ``out``: a share 1 - :func:`.tonic_rate.flow_weight` of each train's draws (keyed uniforms), the rest keeping the
    joint flow's; all of them when ``span_source`` is "recording" (the span says nothing of k), none when it is
    "window". Returns the rows read by rate (those whose rate the density reaches)."""
    from .tonic_rate import flow_weight, sample_log_k

    trains = [trains_s[i] for i in joint]
    rows = joint[read_by_rate_mask(posterior, predictor.model_name, trains, span_source=span_source)]
    if not rows.size:
        return rows
    # the mean rate of spike_train_features, (n - 1) / span: its label was read already (read_by_rate_mask)
    rates = np.array([(trains_s[i].size - 1) / (trains_s[i][-1] - trains_s[i][0]) for i in rows])
    keys = [np.round(np.asarray(trains_s[i], dtype=np.float64), 9).tobytes() for i in rows]
    log_k = sample_log_k(posterior.tonic_rate_density, np.log(rates), n, seed, keys, k_range)
    reached = np.flatnonzero(np.isfinite(log_k).all(axis=1))
    rows, rates, log_k, keys = rows[reached], rates[reached], log_k[reached], [keys[j] for j in reached]
    if not rows.size:
        return rows
    block = np.full((rows.size, n, 3), np.nan)
    block[:, :, 2] = log_k
    rule = posterior.rescaling or RESCALING_RULE
    given_time_scale(posterior, predictor, [trains_s[i] for i in rows], block, seed, rule, point_mass=True)
    window, crop = training_window_s(predictor.model_name), tuple(posterior.card["joint_crop"])
    for j, row in enumerate(rows):
        # a recording's span says nothing of k; a range of k the joint flow's posterior missed: the rate's alone
        weight = 0.0
        if span_source != "recording" and np.isfinite(out[row]).all():
            span = float(trains_s[row][-1] - trains_s[row][0])
            weight = flow_weight(posterior.tonic_rate_density, math.log(rates[j]), span, window, crop)
        entropy = int.from_bytes(hashlib.sha256(b"reading" + keys[j]).digest()[:8], "little")
        by_rate = np.random.default_rng([int(seed), entropy]).random(n) >= weight
        out[row, by_rate] = block[j, by_rate]
    return rows


def given_time_scale(
    posterior,
    predictor,
    trains_s: list[np.ndarray],
    samples: np.ndarray,
    seed: int,
    rule: dict | None = None,
    point_mass: bool = False,
) -> None:
    """The joint draws' (g_s, g_u) where k is continuous (ln k != 0) from the known_k flow given their k (in place);
    with ``point_mass`` the draws at ln k = 0 too, from the known_k flow reading the train itself. ``rule``: the
    binning (default: the card's ``rescaling``).

    Why: time scaling is exact in these models (a neuron at k fires the k = 1 neuron's train, times k), so
    p(g | train, k) = p_known_k(g | train / k): the joint flow's (g_s, g_u) given k is a slice of a 3-D density
    learned under k's whole prior, and the known_k flow read at the right time scale knows them better (DA held-out
    trains at k != 1: tonic g_u MAE 1.57 -> 1.22, bursting g_s 1.01 -> 0.90, coverage kept). Each train's continuous
    draws are binned on a fixed grid of ln k (the narrowest width, ``narrowest_bin`` doubled as needed, that gives at
    most ``max_groups`` bins); the draws of a bin take the known_k draws of the train divided by the bin's central
    k, so they keep the spread that k's uncertainty gives g (a single group at the median k under-covered: DA
    bursting g_u 0.58 at 68 %). Cost: up to ``max_groups`` more contexts (a network pass each) and n known_k draws
    per bin and train. A train's samples depend on its own draws only.
    Applied where the card asks for it (``rescaling``): DA, whose joint summaries are sampled anyway; STG's would
    lose its summary head (k unknown: 5,236 -> ~400 trains/s), which cannot read the rescaled trains.
    """
    rule = posterior.rescaling if rule is None else rule
    max_groups = int(rule["max_groups"])
    per = samples.shape[1]
    rescaled, owners, keys = [], [], []
    members = []
    for index, train in enumerate(trains_s):
        log_k = samples[index, :, 2]
        continuous = np.flatnonzero(np.isfinite(log_k) & (log_k != 0.0))  # 0: the point mass (its own rule)
        recorded = np.round(np.asarray(train, dtype=np.float64), 9).tobytes()
        at_one = np.flatnonzero(log_k == 0.0) if point_mass else np.zeros(0, dtype=np.int64)
        if at_one.size:  # the train itself, keyed apart from every bin
            rescaled.append(np.asarray(train, dtype=float))
            owners.append(index)
            keys.append(recorded + b"k=1")
            members.append(at_one)
        if not continuous.size:
            continue
        # Bins of ln k on a fixed grid, the narrowest width (doubling) that needs at most max_groups of them: a draw
        # changes bin only by crossing a grid line itself, not when other draws move (a batch's round-off).
        for level in range(64):
            width = float(rule["narrowest_bin"]) * 2.0**level
            bins = np.floor(log_k[continuous] / width).astype(np.int64)
            if np.unique(bins).size <= max_groups:
                break
        for number in np.unique(bins):
            rescaled.append(np.asarray(train, dtype=float) / math.exp((number + 0.5) * width))
            owners.append(index)
            keys.append(recorded + np.array([level, number], dtype=np.int64).tobytes())
            members.append(continuous[bins == number])
    if not rescaled:
        return
    flow = rule["flow"]
    context, segment_owners, pieces = segment_contexts(predictor, rescaled, flow)
    # Keyed on the recorded train and the bin (and the segment), never on the rescaled times.
    segment_number = np.concatenate([np.arange(c) for c in np.bincount(segment_owners, minlength=len(rescaled))])
    segment_keys = [keys[r] + int(m).to_bytes(2, "little") for r, m in zip(segment_owners, segment_number, strict=True)]
    given = pooled_samples(
        posterior, context, segment_owners, pieces, len(rescaled), per, flow, seed, keys=segment_keys
    )
    for draws, index, group in zip(given, owners, members, strict=True):
        samples[index, group, :2] = draws[group]  # draw i from known_k draw i: a draw that changes bin moves alone


def summarise(samples: np.ndarray) -> dict:
    """Per train: posterior medians, sds and 16/84 % quantiles of g_s, g_u and k (k from ln k samples)."""
    with np.errstate(invalid="ignore"):
        q16, median, q84 = np.nanquantile(samples, [0.16, 0.5, 0.84], axis=1)
        sd = np.nanstd(samples, axis=1)
    out = {}
    for p, name in enumerate(("g_s", "g_u")):
        out[name], out[f"{name}_std"] = median[:, p], sd[:, p]
        out[f"{name}_q16"], out[f"{name}_q84"] = q16[:, p], q84[:, p]
    k = np.exp(median[:, 2])
    out["time_scale"], out["time_scale_std"] = k, k * sd[:, 2]
    out["time_scale_low"], out["time_scale_high"] = np.exp(q16[:, 2]), np.exp(q84[:, 2])
    return out
