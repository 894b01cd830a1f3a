"""Putative cell classes from DIC estimates, and how the classes' twin conductances differ."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._common import QUANTITIES, adjust_p_values, estimates_from, match_ids, result_from
from .mixture import MixtureFit, fit_mixture

UNCLASSIFIED = -1


@dataclass
class UnitClasses:
    """Result of :func:`classify_units`.

    Attributes
    ----------
    units : pandas.DataFrame
        The input estimates (index unit_id) with ``dic_class`` (int, -1 = not classified: no estimate, or excluded)
        and ``class_probability`` (posterior probability of the assigned class, NaN when unclassified).
    classes : pandas.DataFrame
        One row per class (index dic_class): n_units, weight, mean and sd of each component in g_s, g_u and ln k
        (``g_s_mean``, ``g_s_sd``, ...; intrinsic spread, measurement noise removed), ``time_scale`` (exp of the
        ln k mean), median estimates of the members, ``label`` (most common firing label), ``fraction_in_distribution``
        and, when the estimates carry positions, ``depth_min_um`` / ``depth_median_um`` / ``depth_max_um``.
    bic : pandas.Series
        BIC of every number of classes tried (index n_classes); the lowest was chosen unless n_classes was given.
    n_classes : int
    fit : MixtureFit
        The chosen mixture in standardised coordinates (see ``center`` and ``scale``).
    center, scale : numpy.ndarray
        Standardisation of (g_s, g_u, ln k): z = (value - center) / scale.
    """

    units: pd.DataFrame
    classes: pd.DataFrame
    bic: pd.Series
    n_classes: int
    fit: MixtureFit | None = None
    center: np.ndarray = field(default_factory=lambda: np.zeros(3))
    scale: np.ndarray = field(default_factory=lambda: np.ones(3))

    @property
    def dic_class(self) -> pd.Series:
        """The class of every unit (-1 = unclassified), ready for ``result.estimates["class"] = ...``."""
        return self.units["dic_class"]


def _features(estimates: pd.DataFrame, use_uncertainty: bool):
    values = estimates[list(QUANTITIES)].to_numpy(float)
    stds = estimates[[f"{q}_std" for q in QUANTITIES]].to_numpy(float)
    if not use_uncertainty:
        stds = np.zeros_like(stds)
    return values, np.nan_to_num(stds, nan=0.0, posinf=0.0)


def classify_units(
    estimates,
    max_classes: int = 6,
    seed: int = 0,
    n_classes: int | None = None,
    use_uncertainty: bool = True,
    covariance_type: str = "diag",
    min_class_size: int = 2,
    only_in_distribution: bool = False,
    reg_covar: float = 1e-3,
    n_init: int = 4,
) -> UnitClasses:
    """Group units into putative cell classes by their DICs and time scale (a Gaussian mixture chosen by BIC).

    Method. Each unit with finite (g_s, g_u, k) is a point (g_s, g_u, ln k), standardised by the mean and sd over
    those units (so the three axes weigh alike). A Gaussian mixture with K = 1 ... K_max components is fitted by
    EM for each K (:mod:`.mixture`; seeded k-means++ starts, so the result is a deterministic function of
    ``seed``) and the K with the lowest BIC is kept. With ``use_uncertainty`` each unit's estimate variance
    (g_s_std², g_u_std², sd(ln k)², standardised) is added to every component covariance for that unit
    ("extreme deconvolution", Bovy et al. 2011): uncertain units weigh less in the class means and spreads and
    cannot create classes of their own, and the BIC compares classes of the underlying DICs rather than of the
    noise. Units are assigned to their most probable class. Classes are numbered by increasing mean g_s (class 0
    is the most regenerative, typically bursting).

    Parameters
    ----------
    estimates : pandas.DataFrame | PipelineResult | SortingAnalyzer
        Per-unit estimates (output of infer_dics, run_pipeline, :func:`dics_along_probe` or the
        "dynamic_input_conductances" extension).
    max_classes : int, default: 6
        Largest number of classes tried; also at most (number of classified units) // ``min_class_size``.
    seed : int, default: 0
    n_classes : int | None, default: None
        Force this number of classes instead of choosing by BIC.
    use_uncertainty : bool, default: True
        Deconvolve the estimates' variances (see above); False treats estimates as exact.
    covariance_type : "diag" | "full", default: "diag"
        Intrinsic covariance of each class. "diag" (3 variances per class) suits tens of units; "full" (6) needs
        many more units per class before BIC accepts a second class.
    min_class_size : int, default: 2
        Caps the number of classes tried at n // min_class_size.
    only_in_distribution : bool, default: False
        Classify only units whose estimates are in distribution; the others get -1.
    reg_covar : float, default: 1e-3
        Variance added to every component (standardised units) against singular classes.

    Returns
    -------
    UnitClasses
        ``.units`` (with ``dic_class``), ``.classes`` (per-class summaries), ``.bic``.
    """
    frame = estimates_from(estimates)
    values, stds = _features(frame, use_uncertainty)
    usable = np.isfinite(values).all(axis=1)
    if only_in_distribution:
        usable &= frame["in_distribution"].to_numpy(bool)
    points = values[usable]
    n = points.shape[0]
    center = points.mean(0) if n else np.zeros(3)
    scale = points.std(0) if n > 1 else np.ones(3)
    scale = np.where(scale > 1e-12, scale, 1.0)
    z = (points - center) / scale
    noise = (stds[usable] / scale) ** 2
    largest = min(int(max_classes), max(1, n // max(1, int(min_class_size))))
    if n_classes is not None:
        if not 1 <= int(n_classes) <= max(n, 1):
            raise ValueError(f"n_classes must be between 1 and the number of classifiable units ({n}); got {n_classes}")
        candidates = [int(n_classes)]
    else:
        candidates = list(range(1, largest + 1))
    units = frame.copy()
    units["dic_class"] = UNCLASSIFIED
    units["class_probability"] = np.nan
    if n == 0:
        empty = pd.DataFrame(index=pd.Index([], name="dic_class"))
        return UnitClasses(units, empty, pd.Series(dtype=float, name="bic"), 0, None, center, scale)
    fits = {
        k: fit_mixture(z, k, noise, covariance_type, reg_covar=reg_covar, n_init=n_init, seed=seed) for k in candidates
    }
    bic = pd.Series({k: fit.bic(n) for k, fit in fits.items()}, name="bic")
    bic.index.name = "n_classes"
    chosen = int(bic.idxmin())
    fit = fits[chosen]
    order = np.argsort(fit.means[:, 0], kind="stable")  # classes by increasing g_s
    fit = MixtureFit(
        fit.weights[order],
        fit.means[order],
        fit.covariances[order],
        fit.log_likelihood,
        fit.n_iterations,
        fit.converged,
        fit.covariance_type,
    )
    probabilities = fit.responsibilities(z, noise[:, :, None] * np.eye(3)[None])
    assigned = probabilities.argmax(1)
    units.loc[units.index[usable], "dic_class"] = assigned
    units.loc[units.index[usable], "class_probability"] = probabilities.max(1)
    units["dic_class"] = units["dic_class"].astype(np.int64)
    classes = _class_table(units, fit, center, scale)
    return UnitClasses(units, classes, bic, chosen, fit, center, scale)


def _class_table(units: pd.DataFrame, fit: MixtureFit, center, scale) -> pd.DataFrame:
    rows = {}
    for k in range(fit.n_components):
        members = units[units["dic_class"] == k]
        mean = fit.means[k] * scale + center
        sd = np.sqrt(np.diag(fit.covariances[k])) * scale
        row = {"n_units": len(members), "weight": float(fit.weights[k])}
        for name, m, s in zip(QUANTITIES, mean, sd, strict=True):
            row[f"{name}_mean"], row[f"{name}_sd"] = float(m), float(s)
        row["time_scale"] = float(np.exp(mean[2]))
        for name in ("g_s", "g_u", "time_scale"):
            row[f"{name}_median"] = float(members[name].median()) if len(members) else np.nan
        labels = members["label"].astype(str)
        row["label"] = labels.mode().iloc[0] if len(labels) else ""
        row["fraction_in_distribution"] = float(members["in_distribution"].mean()) if len(members) else np.nan
        if "depth_um" in members.columns:
            depth = members["depth_um"].to_numpy(float)
            depth = depth[np.isfinite(depth)]
            row["depth_min_um"] = float(depth.min()) if depth.size else np.nan
            row["depth_median_um"] = float(np.median(depth)) if depth.size else np.nan
            row["depth_max_um"] = float(depth.max()) if depth.size else np.nan
        rows[k] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "dic_class"
    return table


def class_series(classes) -> pd.Series:
    if isinstance(classes, UnitClasses):
        return classes.dic_class
    if isinstance(classes, pd.DataFrame):
        if "dic_class" not in classes.columns:
            raise ValueError("a classes DataFrame needs a 'dic_class' column indexed by unit id")
        return classes["dic_class"]
    if isinstance(classes, dict):
        return pd.Series(classes)
    if isinstance(classes, pd.Series):
        return classes
    raise TypeError(f"classes must be UnitClasses, a DataFrame / Series with dic_class, or a dict; got {type(classes)}")


def with_classes(result, classes, column: str = "class"):
    """A copy of a PipelineResult whose estimates carry each unit's class (int, -1 = unclassified).

    :func:`spikeinterface_dic.write_nwb` writes every estimates column as ``dic_<column>``, so the classes land in
    the NWB Units table as ``dic_class`` (and ``dic_class_probability``) and :func:`read_nwb_results` reads them
    back.
    """
    import dataclasses

    result = result_from(result)
    series = class_series(classes)
    probability = classes.units["class_probability"] if isinstance(classes, UnitClasses) else None
    matched = match_ids(list(result.estimates.index), series.index)
    estimates = result.estimates.copy()
    estimates[column] = np.array(
        [int(series.loc[matched[u]]) if u in matched else UNCLASSIFIED for u in estimates.index], dtype=np.int64
    )
    if probability is not None:
        estimates[f"{column}_probability"] = [
            float(probability.loc[matched[u]]) if u in matched else np.nan for u in estimates.index
        ]
    return dataclasses.replace(result, estimates=estimates)


def class_conductance_summary(result, classes, alpha: float = 0.05, correction: str = "bonferroni") -> pd.DataFrame:
    """Compare the twin populations' maximal conductances between classes, channel by channel.

    The twins of a class are all twins of its units pooled: a sample of the conductance sets compatible with the
    class's DICs. For each channel:

    - the median and quartiles per class;
    - the two-sample Kolmogorov-Smirnov statistic D between every pair of classes (the largest is reported, with
      the pair) and its p-value, adjusted over channels (``correction``) and, with more than two classes,
      Bonferroni over the class pairs. ``differs`` is this test at ``alpha``: the classes' conductance
      distributions differ in that channel. Its p-value grows with the population size (twins are as many samples
      as one asks for), so read it with D, the effect size;
    - because twins of one unit are not independent of each other, also the Kruskal-Wallis test on per-unit
      medians (units as the observations), which needs at least 2 units per class.

    Parameters
    ----------
    result : PipelineResult | SortingAnalyzer
        With twin populations (``result.populations`` or the "twin_populations" extension).
    classes : UnitClasses | pandas.Series | pandas.DataFrame | dict
        Class of every unit (``dic_class``; -1 = unclassified units are left out).
    alpha : float, default: 0.05
    correction : "bonferroni" | "holm" | "bh" | "none", default: "bonferroni"

    Returns
    -------
    pandas.DataFrame
        One row per channel (index ``channel``): ``median_class_<c>``, ``q25_class_<c>``, ``q75_class_<c>``
        (mS/cm2) for every class, ``highest_class``, ``ks_statistic``, ``ks_classes`` ("a-b"), ``ks_pvalue``,
        ``p_adjusted``, ``kruskal_pvalue`` (per-unit medians; NaN with fewer than 2 units in some class) and
        ``differs`` (bool).
    """
    from scipy import stats

    result = result_from(result)
    series = class_series(classes)
    matched = match_ids(list(series.index), result.populations)
    pooled, unit_medians = {}, {}
    for unit_id, population_id in matched.items():
        label = int(series.loc[unit_id])
        if label < 0:
            continue
        gbar = np.asarray(result.populations[population_id], dtype=float)
        pooled.setdefault(label, []).append(gbar)
        unit_medians.setdefault(label, []).append(np.median(gbar, axis=0))
    labels = sorted(pooled)
    if not labels:
        raise ValueError("no classified unit has a twin population: run the pipeline with populations first")
    pooled = {c: np.concatenate(pooled[c]) for c in labels}
    unit_medians = {c: np.array(unit_medians[c]) for c in labels}
    pairs = [(a, b) for i, a in enumerate(labels) for b in labels[i + 1 :]]
    rows = []
    for column, channel in enumerate(result.conductance_names):
        row = {"channel": channel}
        for c in labels:
            q25, median, q75 = np.percentile(pooled[c][:, column], [25, 50, 75])
            row[f"median_class_{c}"], row[f"q25_class_{c}"], row[f"q75_class_{c}"] = median, q25, q75
        row["highest_class"] = labels[int(np.argmax([row[f"median_class_{c}"] for c in labels]))]
        best = (np.nan, "", np.nan)
        for a, b in pairs:
            test = stats.ks_2samp(pooled[a][:, column], pooled[b][:, column])
            if not best[0] >= test.statistic:
                best = (float(test.statistic), f"{a}-{b}", float(test.pvalue))
        row["ks_statistic"], row["ks_classes"], row["ks_pvalue"] = best
        groups = [unit_medians[c][:, column] for c in labels]
        enough = len(groups) > 1 and all(len(g) >= 2 for g in groups)
        varied = enough and np.ptp(np.concatenate(groups)) > 0
        row["kruskal_pvalue"] = float(stats.kruskal(*groups).pvalue) if varied else np.nan
        rows.append(row)
    table = pd.DataFrame(rows).set_index("channel")
    # Adjust over every (channel, pair) test: the reported p is the smallest of a channel's pairs.
    n_tests = max(1, len(pairs))
    table["p_adjusted"] = np.minimum(adjust_p_values(table["ks_pvalue"].to_numpy(float), correction) * n_tests, 1.0)
    if correction == "none":
        table["p_adjusted"] = table["ks_pvalue"]
    table["differs"] = table["p_adjusted"].to_numpy(float) < alpha
    return table
