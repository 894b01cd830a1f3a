"""Compare the same units in two conditions (before / after a drug, two epochs): DIC shifts and twin changes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._common import (
    QUANTITIES,
    TWIN_EXTENSION,
    adjust_p_values,
    estimates_from,
    is_sorting_analyzer,
    match_ids,
    result_from,
)


@dataclass
class ConditionComparison:
    """Result of :func:`compare_conditions`.

    Attributes
    ----------
    units : pandas.DataFrame
        One row per unit present in both conditions (index unit_id, the ids of condition a). For q in g_s, g_u,
        log_time_scale: ``<q>_a``, ``<q>_b``, ``delta_<q>`` (b - a), ``delta_<q>_std`` (sqrt of the summed
        variances), ``z_<q>``, ``p_<q>`` (two-sided z-test), ``p_<q>_adjusted`` (across units), ``significant_<q>``
        and ``direction_<q>`` ("increase" | "decrease" | "" when not significant). The joint shift:
        ``chi2`` (sum of the z², ``dof`` quantities), ``p_value``, ``p_adjusted``, ``significant``. From the twin
        populations (empty when a condition has none): ``channels_increase`` / ``channels_decrease`` (the channels
        whose population median must rise / fall to move the unit from a to b, comma-separated).
    channels : pandas.DataFrame
        One row per (unit, channel) with populations in both conditions: median_a, median_b (mS/cm2),
        median_shift (b - a), relative_shift (shift / median_a), ks_statistic, ks_pvalue (two-sample KS between the
        two populations), p_adjusted (over the unit's channels), changes (bool) and direction.
    missing_units : list
        Units present in only one condition (left out).
    alpha : float
    correction : str
    """

    units: pd.DataFrame
    channels: pd.DataFrame
    missing_units: list
    alpha: float
    correction: str

    def channel_summary(self, significant_only: bool = True) -> pd.DataFrame:
        """Per channel, over units (those with a significant DIC shift by default): how many must increase or
        decrease it, and the median relative shift."""
        table = self.channels
        if significant_only and len(table):
            keep = set(self.units.index[self.units["significant"].to_numpy(bool)])
            table = table[table["unit_id"].isin(keep)]
        if not len(table):
            return pd.DataFrame(columns=["n_units", "n_increase", "n_decrease", "median_relative_shift"])
        grouped = table.groupby("channel", sort=False)
        return pd.DataFrame(
            {
                "n_units": grouped.size(),
                "n_increase": grouped.apply(lambda g: int((g["changes"] & (g["median_shift"] > 0)).sum())),
                "n_decrease": grouped.apply(lambda g: int((g["changes"] & (g["median_shift"] < 0)).sum())),
                "median_relative_shift": grouped["relative_shift"].median(),
            }
        )


def _direction(delta: np.ndarray, significant: np.ndarray) -> np.ndarray:
    return np.where(significant & (delta > 0), "increase", np.where(significant & (delta < 0), "decrease", ""))


def _dic_shifts(a: pd.DataFrame, b: pd.DataFrame, alpha: float, correction: str) -> pd.DataFrame:
    from scipy import stats

    out = pd.DataFrame(index=a.index)
    chi2 = np.zeros(len(a))
    dof = np.zeros(len(a), dtype=np.int64)
    for q in QUANTITIES:
        value_a, value_b = a[q].to_numpy(float), b[q].to_numpy(float)
        std = np.hypot(a[f"{q}_std"].to_numpy(float), b[f"{q}_std"].to_numpy(float))
        delta = value_b - value_a
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(std > 0, delta / std, np.nan)
        p = 2.0 * stats.norm.sf(np.abs(z))
        adjusted = adjust_p_values(p, correction)
        significant = np.nan_to_num(adjusted, nan=1.0) < alpha
        out[f"{q}_a"], out[f"{q}_b"] = value_a, value_b
        out[f"delta_{q}"], out[f"delta_{q}_std"], out[f"z_{q}"] = delta, std, z
        out[f"p_{q}"], out[f"p_{q}_adjusted"], out[f"significant_{q}"] = p, adjusted, significant
        out[f"direction_{q}"] = _direction(delta, significant)
        finite = np.isfinite(z)
        chi2 += np.where(finite, z, 0.0) ** 2
        dof += finite
    with np.errstate(invalid="ignore"):
        p_joint = np.where(dof > 0, stats.chi2.sf(chi2, np.maximum(dof, 1)), np.nan)
    out["chi2"], out["dof"], out["p_value"] = np.where(dof > 0, chi2, np.nan), dof, p_joint
    out["p_adjusted"] = adjust_p_values(p_joint, correction)
    out["significant"] = np.nan_to_num(out["p_adjusted"].to_numpy(float), nan=1.0) < alpha
    return out


def _population_changes(result_a, result_b, unit_pairs, alpha: float, min_relative_shift: float) -> pd.DataFrame:
    from scipy import stats

    rows = []
    names = tuple(result_a.conductance_names)
    if tuple(result_b.conductance_names) != names:
        raise ValueError(f"the conditions use different models: channels {names} vs {result_b.conductance_names}")
    for unit_a, unit_b in unit_pairs:
        gbar_a = result_a.populations.get(unit_a)
        gbar_b = result_b.populations.get(unit_b)
        if gbar_a is None or gbar_b is None or not len(gbar_a) or not len(gbar_b):
            continue
        gbar_a, gbar_b = np.asarray(gbar_a, float), np.asarray(gbar_b, float)
        unit_rows = []
        for column, channel in enumerate(names):
            median_a, median_b = float(np.median(gbar_a[:, column])), float(np.median(gbar_b[:, column]))
            same = np.array_equal(np.sort(gbar_a[:, column]), np.sort(gbar_b[:, column]))
            test = stats.ks_2samp(gbar_a[:, column], gbar_b[:, column])
            shift = median_b - median_a
            unit_rows.append(
                {
                    "unit_id": unit_a,
                    "channel": channel,
                    "median_a": median_a,
                    "median_b": median_b,
                    "median_shift": shift,
                    "relative_shift": shift / median_a if median_a != 0 else np.nan,
                    "ks_statistic": 0.0 if same else float(test.statistic),
                    "ks_pvalue": 1.0 if same else float(test.pvalue),
                }
            )
        adjusted = adjust_p_values([r["ks_pvalue"] for r in unit_rows], "bonferroni")
        for row, p in zip(unit_rows, adjusted, strict=True):
            relative = abs(row["relative_shift"]) if np.isfinite(row["relative_shift"]) else np.inf
            row["p_adjusted"] = p
            row["changes"] = bool(p < alpha and relative >= min_relative_shift and row["median_shift"] != 0)
            row["direction"] = ("increase" if row["median_shift"] > 0 else "decrease") if row["changes"] else ""
        rows += unit_rows
    columns = ["unit_id", "channel", "median_a", "median_b", "median_shift", "relative_shift", "ks_statistic"]
    columns += ["ks_pvalue", "p_adjusted", "changes", "direction"]
    return pd.DataFrame(rows, columns=columns)


def compare_conditions(
    result_a,
    result_b,
    alpha: float = 0.05,
    correction: str = "bh",
    min_relative_shift: float = 0.05,
) -> ConditionComparison:
    """Per-unit shifts of (g_s, g_u, ln k) between two conditions, and the conductance changes they imply.

    DIC shift. For each unit in both conditions and each quantity q in (g_s, g_u, ln k): delta = q_b - q_a with
    sd sqrt(sd_a² + sd_b²) (the two estimates come from disjoint spike trains, so they are independent), a
    two-sided z-test, and p-values adjusted across units (``correction``; Benjamini-Hochberg by default, which
    controls the false discovery rate over units; "bonferroni" / "holm" control the family-wise error). The joint
    shift of the three quantities is tested by chi² = sum z² with as many degrees of freedom (diagonal covariance,
    as the network reports independent sds), adjusted the same way: ``significant``.

    Twin populations. For each unit with twins in both conditions and each channel: the population medians, their
    shift, and a two-sample Kolmogorov-Smirnov test (Bonferroni over the channels). A channel ``changes`` when
    the test rejects at ``alpha`` and the median moves by at least ``min_relative_shift``: those channels (up or
    down) are how the twins moved the unit from a to b. Populations generated with the same seed share their
    base draws, so uncompensated channels do not move at all and the changes name the compensated channels.

    Parameters
    ----------
    result_a, result_b : PipelineResult | SortingAnalyzer | pandas.DataFrame
        The two conditions, same unit ids (matched exactly, or as text), same model. Analyzers give their
        "dynamic_input_conductances" (and "twin_populations" when computed); a DataFrame of estimates gives no
        population comparison.
    alpha : float, default: 0.05
    correction : "bh" | "bonferroni" | "holm" | "none", default: "bh"
    min_relative_shift : float, default: 0.05
        Smallest relative change of a population median that counts as a channel change.

    Returns
    -------
    ConditionComparison
        ``.units`` (per-unit shifts and tests), ``.channels`` (per unit and channel), ``.missing_units``.

    Examples
    --------
    >>> before, after = split_by_intervals(trains, [(0, 600), (900, 1500)])  # doctest: +SKIP
    >>> comparison = compare_conditions(run_pipeline(before), run_pipeline(after))  # doctest: +SKIP
    >>> comparison.units.loc[comparison.units["significant"], ["delta_g_s", "channels_increase"]]  # doctest: +SKIP
    """
    from ..result import PipelineResult

    as_results = [
        result_from(r) if is_sorting_analyzer(r) and r.has_extension(TWIN_EXTENSION) else r
        for r in (result_a, result_b)
    ]
    a, b = (estimates_from(r) for r in as_results)
    matched = match_ids(list(a.index), list(b.index))
    common = [u for u in a.index if u in matched]
    missing = [u for u in a.index if u not in matched]
    matched_b = set(matched.values())
    missing += [u for u in b.index if u not in matched_b]
    units = _dic_shifts(a.loc[common], b.loc[[matched[u] for u in common]].set_axis(common), alpha, correction)
    channels = pd.DataFrame(columns=["unit_id", "channel", "median_shift", "changes", "direction"])
    if all(isinstance(r, PipelineResult) for r in as_results):
        channels = _population_changes(*as_results, [(u, matched[u]) for u in common], alpha, min_relative_shift)
    for direction in ("increase", "decrease"):
        chosen = channels[channels["direction"] == direction] if len(channels) else channels
        names = chosen.groupby("unit_id", sort=False)["channel"].agg(",".join) if len(chosen) else {}
        units[f"channels_{direction}"] = [names.get(u, "") for u in units.index]
    return ConditionComparison(units, channels.reset_index(drop=True), missing, float(alpha), correction)


def split_by_intervals(spike_trains: dict, intervals, relative: bool = False):
    """Cut every unit's train into epochs (e.g. before / after a drug) for :func:`compare_conditions`.

    Parameters
    ----------
    spike_trains : dict
        {unit_id: spike times in s}.
    intervals : sequence of (start_s, stop_s) | dict
        Epochs [start, stop) in seconds; a dict {name: (start_s, stop_s)} names them.
    relative : bool, default: False
        Shift every epoch's times to start at 0 (ISIs, hence estimates, do not change).

    Returns
    -------
    list of dict | dict
        One {unit_id: times} per interval (a dict of them, keyed by name, when ``intervals`` is a dict). Every unit
        appears in every epoch, possibly with no spikes (its estimate is then NaN, never an error).
    """
    named = isinstance(intervals, dict)
    items = list(intervals.items()) if named else list(enumerate(intervals))
    spikes = [np.asarray(t, dtype=float).reshape(-1) for t in spike_trains.values()]
    spikes = np.concatenate(spikes) if spikes else np.empty(0)
    spikes = spikes[np.isfinite(spikes)]
    first, last = (float(spikes.min()), float(spikes.max())) if spikes.size else (np.nan, np.nan)
    epochs = {}
    for name, interval in items:
        start, stop = (float(v) for v in np.asarray(interval, dtype=float).reshape(-1)[:2])
        if not (np.isfinite(start) and np.isfinite(stop) and stop > start):
            raise ValueError(f"interval {name!r} must be (start_s, stop_s) with stop > start; got {interval}")
        if spikes.size and (start > last or stop <= first):
            hint = " (intervals are in seconds: were milliseconds typed?)" if stop > 20 * last else ""
            raise ValueError(
                f"interval {name!r} [{start:g}, {stop:g}) s holds no spike: the spikes span [{first:g}, {last:g}] s"
                + hint
            )
        epoch = {}
        for unit_id, train in spike_trains.items():
            train = np.sort(np.asarray(train, dtype=float).reshape(-1))
            selected = train[(train >= start) & (train < stop)]
            epoch[unit_id] = selected - start if relative else selected
        epochs[name] = epoch
    return epochs if named else [epochs[i] for i in range(len(items))]
