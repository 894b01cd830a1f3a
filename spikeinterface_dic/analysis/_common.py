"""Shared helpers of the analysis modules: where estimates and populations come from, ids, multiple testing."""

from __future__ import annotations

import numpy as np
import pandas as pd

DIC_EXTENSION = "dynamic_input_conductances"
TWIN_EXTENSION = "twin_populations"
REQUIRED_COLUMNS = ("g_s", "g_u", "g_s_std", "g_u_std", "time_scale", "time_scale_std")
#: The three quantities every analysis works with: the two DICs and the log of the time scale k.
QUANTITIES = ("g_s", "g_u", "log_time_scale")
CORRECTIONS = ("bh", "bonferroni", "holm", "none")


def is_sorting_analyzer(source) -> bool:
    return hasattr(source, "get_extension") and hasattr(source, "has_extension") and hasattr(source, "sorting")


def estimates_from(source) -> pd.DataFrame:
    """The per-unit DIC table of a SortingAnalyzer, a PipelineResult or a DataFrame, with log k and its sd added.

    ``log_time_scale`` is ln k and ``log_time_scale_std`` its sd, ``time_scale_std / time_scale`` (the network
    predicts ln k; ``infer_dics`` reports ``time_scale_std = k * sd(ln k)``).
    """
    from ..result import PipelineResult

    if isinstance(source, PipelineResult):
        frame = source.estimates.copy()
    elif isinstance(source, pd.DataFrame):
        frame = source.copy()
    elif is_sorting_analyzer(source):
        if not source.has_extension(DIC_EXTENSION):
            raise ValueError(
                f"the analyzer has no {DIC_EXTENSION!r} extension: run "
                f"analyzer.compute({DIC_EXTENSION!r}, model='stg') (after `import spikeinterface_dic`) first"
            )
        frame = source.get_extension(DIC_EXTENSION).get_data().copy()
    else:
        raise TypeError(
            f"expected a SortingAnalyzer, a PipelineResult or a DataFrame of DIC estimates; got {type(source).__name__}"
        )
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(
            f"the estimates lack the columns {missing}; give the output of infer_dics, run_pipeline or the "
            f"{DIC_EXTENSION!r} extension"
        )
    for column in REQUIRED_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = frame["time_scale"].to_numpy(float)
        frame["log_time_scale"] = np.where(k > 0, np.log(np.where(k > 0, k, 1.0)), np.nan)
        frame["log_time_scale_std"] = frame["time_scale_std"].to_numpy(float) / np.where(k > 0, k, np.nan)
    if "label" not in frame.columns:
        frame["label"] = ""
    if "in_distribution" not in frame.columns:
        frame["in_distribution"] = np.isfinite(frame["g_s"].to_numpy(float))
    frame.index.name = frame.index.name or "unit_id"
    return frame


def result_from(source):
    """A PipelineResult from a PipelineResult or an analyzer with the twin_populations extension."""
    from ..result import PipelineResult

    if isinstance(source, PipelineResult):
        return source
    if is_sorting_analyzer(source):
        if not source.has_extension(TWIN_EXTENSION):
            raise ValueError(
                f"the analyzer has no {TWIN_EXTENSION!r} extension: run analyzer.compute({TWIN_EXTENSION!r}, "
                "population_size=100) first"
            )
        return source.get_extension(TWIN_EXTENSION).to_pipeline_result()
    raise TypeError(
        f"expected a PipelineResult or a SortingAnalyzer with twin populations; got {type(source).__name__}"
    )


def match_ids(wanted, available) -> dict:
    """{wanted id: available id}, matching exactly or else by ``str(id)`` (NWB and CSV may turn ids into text)."""
    available = list(available)
    exact = set(available)
    by_text = {str(unit_id): unit_id for unit_id in available}
    out = {}
    for unit_id in wanted:
        if unit_id in exact:
            out[unit_id] = unit_id
        elif str(unit_id) in by_text:
            out[unit_id] = by_text[str(unit_id)]
    return out


def adjust_p_values(p_values, method: str = "bh") -> np.ndarray:
    """Multiple-testing adjusted p-values; NaN entries are left NaN and not counted as tests.

    "bh": Benjamini-Hochberg (false discovery rate), "bonferroni", "holm" (step-down Bonferroni, family-wise error),
    "none".
    """
    if method not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}; got {method!r}")
    p_values = np.asarray(p_values, dtype=float)
    adjusted = np.full(p_values.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p_values))
    m = finite.size
    if m == 0:
        return adjusted
    p = p_values[finite]
    if method == "none":
        out = p
    elif method == "bonferroni":
        out = np.minimum(p * m, 1.0)
    else:
        order = np.argsort(p, kind="stable")
        ranked = p[order]
        if method == "holm":
            steps = np.maximum.accumulate(ranked * (m - np.arange(m)))
        else:
            steps = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
        out = np.empty(m)
        out[order] = np.minimum(steps, 1.0)
    adjusted[finite] = out
    return adjusted
