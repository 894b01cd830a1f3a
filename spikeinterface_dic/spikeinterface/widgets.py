"""SpikeInterface widget: the units in the (g_s, g_u) plane."""

from __future__ import annotations

import numpy as np
from spikeinterface.widgets.base import BaseWidget, to_attr

from ..features import LABEL_COLORS

# Beyond this many units, ids are not written next to every point and points shrink: the plot stays readable.
ANNOTATE_UP_TO = 30
# Units named in the "no estimate" note before it says "and N more".
NAMED_MISSING = 12


class DynamicInputConductancesWidget(BaseWidget):
    """Plots the estimated (g_s, g_u) of units with 1-sd error bars, coloured by firing label.

    Out-of-distribution units (``in_distribution`` False) are drawn hollow with a red edge: their estimates are
    extrapolations. Units without an estimate (fewer than 3 spikes) are listed in a note. The dashed box is the
    region the network was trained on.

    Parameters
    ----------
    sorting_analyzer : SortingAnalyzer
        An analyzer with the "dynamic_input_conductances" extension computed.
    unit_ids : list | None, default: None
        Units to plot; None plots all.
    annotate : bool | "auto", default: "auto"
        Write each unit's id next to its point ("auto": when at most 30 units have a point).
    backend : "matplotlib" | None, default: None
        None uses SpikeInterface's default plotter backend.
    **backend_kwargs
        Matplotlib backend keywords (``ax``, ``figure``, ``figsize``, ``figtitle``).
    """

    def __init__(self, sorting_analyzer, unit_ids=None, annotate="auto", backend: str | None = None, **backend_kwargs):
        sorting_analyzer = self.ensure_sorting_analyzer(sorting_analyzer)
        self.check_extensions(sorting_analyzer, "dynamic_input_conductances")
        extension = sorting_analyzer.get_extension("dynamic_input_conductances")
        estimates = extension.get_data()
        if unit_ids is not None:
            estimates = estimates.loc[list(unit_ids)]
        from ..models import get_model

        model = get_model(extension.params["model"])
        data_plot = dict(
            estimates=estimates,
            model_name=model.name,
            annotate=annotate,
            training_g_s=model.extra.get("training_g_s"),
            training_g_u=model.extra.get("training_g_u"),
        )
        BaseWidget.__init__(self, data_plot, backend=backend, **backend_kwargs)

    def plot_matplotlib(self, data_plot, **backend_kwargs):
        from matplotlib.lines import Line2D
        from matplotlib.patches import Rectangle
        from spikeinterface.widgets.utils_matplotlib import make_mpl_figure

        dp = to_attr(data_plot)
        self.figure, self.axes, self.ax = make_mpl_figure(**backend_kwargs)
        ax = self.ax
        estimates = dp.estimates
        finite = np.isfinite(estimates["g_s"].to_numpy(float)) & np.isfinite(estimates["g_u"].to_numpy(float))
        crowded = int(finite.sum()) > ANNOTATE_UP_TO
        annotate = (not crowded) if dp.annotate == "auto" else bool(dp.annotate)
        marker_size, bar_alpha = (4.5, 0.35) if crowded else (7, 0.8)
        if dp.training_g_s is not None and dp.training_g_u is not None:
            (s0, s1), (u0, u1) = dp.training_g_s, dp.training_g_u
            ax.add_patch(
                Rectangle((s0, u0), s1 - s0, u1 - u0, fill=False, linestyle="--", edgecolor="0.6", linewidth=0.8)
            )
        for unit_id, row in estimates[finite].iterrows():
            color = LABEL_COLORS.get(str(row["label"]), "tab:purple")
            in_distribution = bool(row["in_distribution"])
            ax.errorbar(
                row["g_s"],
                row["g_u"],
                xerr=row["g_s_std"],
                yerr=row["g_u_std"],
                fmt="none",
                ecolor=color,
                elinewidth=1,
                capsize=0 if crowded else 2,
                alpha=bar_alpha,
            )
            ax.plot(
                row["g_s"],
                row["g_u"],
                "o",
                markersize=marker_size,
                markerfacecolor=color if in_distribution else "none",
                markeredgecolor=color if in_distribution else "red",
                markeredgewidth=1.5,
            )
            if annotate:
                ax.annotate(
                    str(unit_id), (row["g_s"], row["g_u"]), textcoords="offset points", xytext=(4, 4), fontsize=8
                )
        handles = [
            Line2D([], [], marker="o", linestyle="", color=color, label=label)
            for label, color in LABEL_COLORS.items()
            if label in set(estimates.loc[finite, "label"])
        ]
        if (~estimates.loc[finite, "in_distribution"].to_numpy(bool)).any():
            handles.append(
                Line2D(
                    [],
                    [],
                    marker="o",
                    linestyle="",
                    markerfacecolor="none",
                    markeredgecolor="red",
                    label="out of distribution",
                )
            )
        if handles:
            ax.legend(handles=handles, loc="best", fontsize=8)
        missing = [str(unit_id) for unit_id in estimates.index[~finite]]
        if missing:
            named = ", ".join(missing[:NAMED_MISSING])
            more = f" and {len(missing) - NAMED_MISSING} more" if len(missing) > NAMED_MISSING else ""
            ax.text(
                0.01,
                0.01,
                f"no estimate ({len(missing)}): {named}{more}",
                transform=ax.transAxes,
                fontsize=8,
                va="bottom",
                ha="left",
                color="0.4",
            )
        ax.set_xlabel("g_s (slow DIC, leak-normalised)")
        ax.set_ylabel("g_u (ultraslow DIC, leak-normalised)")
        ax.axvline(0.0, color="0.85", linewidth=0.8, zorder=0)
        ax.set_title(f"Dynamic input conductances ({dp.model_name}, {int(finite.sum())} units)")


plot_dynamic_input_conductances = DynamicInputConductancesWidget
