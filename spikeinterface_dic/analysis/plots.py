"""Matplotlib figures of the probe, class and condition analyses. Every function returns the Figure."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..features import LABEL_COLORS

QUANTITY_TITLES = {"g_s": "g_s (slow DIC)", "g_u": "g_u (ultraslow DIC)", "log_time_scale": "ln k (time scale)"}


def _figure(figure, n_axes: int, figsize, sharey: bool = False):
    import matplotlib.pyplot as plt

    if figure is None:
        figure = plt.figure(figsize=figsize)
    else:
        figure.clear()
    axes = figure.subplots(1, n_axes, sharey=sharey, squeeze=False)[0]
    return figure, axes


def _class_colors(values) -> dict:
    import matplotlib as mpl

    cmap = mpl.colormaps["tab10"]
    return {value: ("0.6" if value == -1 else cmap(int(value) % 10)) for value in sorted(set(values))}


def _colours_and_legend(table: pd.DataFrame, classes):
    if classes is not None:
        from .classes import class_series

        series = class_series(classes)
        from ._common import match_ids

        matched = match_ids(list(table.index), series.index)
        groups = [int(series.loc[matched[u]]) if u in matched else -1 for u in table.index]
        palette = _class_colors(groups)
        names = {g: ("unclassified" if g == -1 else f"class {g}") for g in palette}
        return [palette[g] for g in groups], {names[g]: palette[g] for g in palette}
    labels = table["label"].astype(str).tolist()
    colours = [LABEL_COLORS.get(label, "tab:purple") for label in labels]
    return colours, {label: LABEL_COLORS.get(label, "tab:purple") for label in dict.fromkeys(labels)}


def _legend(ax, entries: dict) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="", color=c, label=name) for name, c in entries.items()]
    if handles:
        ax.legend(handles=handles, fontsize=8, loc="best")


def plot_dics_along_probe(source, classes=None, unit_locations=None, figure=None, figsize=(9, 5)):
    """g_s and g_u of every unit against its depth on the probe, with 1-sd error bars.

    Parameters
    ----------
    source : pandas.DataFrame | SortingAnalyzer | PipelineResult
        The output of :func:`dics_along_probe`, or what it accepts (then ``unit_locations`` is passed on).
    classes : UnitClasses | pandas.Series | dict | None, default: None
        Colour by class (:func:`classify_units`); None colours by firing label.
    figure : matplotlib.figure.Figure | None, default: None

    Out-of-distribution units are drawn hollow; units without a position are named in a note.
    """
    from .probe import dics_along_probe

    table = source if isinstance(source, pd.DataFrame) and "depth_um" in source.columns else None
    if table is None:
        table = dics_along_probe(source, unit_locations=unit_locations)
    figure, axes = _figure(figure, 2, figsize, sharey=True)
    colours, entries = _colours_and_legend(table, classes)
    located = table["has_location"].to_numpy(bool) & np.isfinite(table["g_s"].to_numpy(float))
    for ax, quantity in zip(axes, ("g_s", "g_u"), strict=True):
        for row, (_, unit) in enumerate(table.iterrows()):
            if not located[row]:
                continue
            filled = bool(unit["in_distribution"])
            ax.errorbar(
                unit[quantity],
                unit["depth_um"],
                xerr=unit[f"{quantity}_std"],
                fmt="o",
                color=colours[row],
                markerfacecolor=colours[row] if filled else "none",
                capsize=2,
                elinewidth=1,
            )
        ax.axvline(0.0, color="0.85", linewidth=0.8, zorder=0)
        ax.set_xlabel(QUANTITY_TITLES[quantity] + ", leak-normalised")
    axes[0].set_ylabel("depth (probe y, um)")
    _legend(axes[1], entries)
    missing = [str(u) for u, ok in zip(table.index, located, strict=True) if not ok]
    if missing:
        axes[0].text(0.01, 0.01, "not shown: " + ", ".join(missing), transform=axes[0].transAxes, fontsize=8)
    figure.suptitle("Dynamic input conductances along the probe")
    return figure


def plot_unit_classes(unit_classes, figure=None, figsize=(10, 4.5)):
    """Units in the (g_s, g_u) plane coloured by class, with each class's 1-sd ellipse, and the BIC curve."""
    from matplotlib.patches import Ellipse

    figure, (ax, ax_bic) = _figure(figure, 2, figsize)
    units = unit_classes.units
    palette = _class_colors(units["dic_class"])
    for group, members in units.groupby("dic_class"):
        ax.errorbar(
            members["g_s"],
            members["g_u"],
            xerr=members["g_s_std"],
            yerr=members["g_u_std"],
            fmt="o",
            color=palette[group],
            alpha=0.8,
            capsize=2,
            label="unclassified" if group == -1 else f"class {group} ({len(members)})",
        )
    for group, row in unit_classes.classes.iterrows():
        ax.add_patch(
            Ellipse(
                (row["g_s_mean"], row["g_u_mean"]),
                2 * row["g_s_sd"],
                2 * row["g_u_sd"],
                fill=False,
                edgecolor=palette.get(group, "k"),
                linestyle="--",
            )
        )
    ax.set_xlabel("g_s (leak-normalised)")
    ax.set_ylabel("g_u (leak-normalised)")
    ax.legend(fontsize=8)
    if len(unit_classes.bic):
        ax_bic.plot(unit_classes.bic.index, unit_classes.bic.to_numpy(), "o-", color="k")
        ax_bic.axvline(unit_classes.n_classes, color="tab:red", linestyle=":")
    ax_bic.set_xlabel("number of classes")
    ax_bic.set_ylabel("BIC (lower is better)")
    figure.suptitle(f"{unit_classes.n_classes} putative classes")
    return figure


def plot_class_conductances(result, classes, channels=None, figure=None, figsize=None):
    """Box plots of the twins' maximal conductances per class, one panel per channel (log scale).

    Channels whose distributions differ between classes (:func:`class_conductance_summary`) are starred.
    """
    from ._common import match_ids, result_from
    from .classes import class_conductance_summary, class_series

    result = result_from(result)
    summary = class_conductance_summary(result, classes)
    series = class_series(classes)
    channels = list(result.conductance_names if channels is None else channels)
    figure, axes = _figure(figure, len(channels), figsize or (1.8 * len(channels), 3.5))
    matched = match_ids(list(series.index), result.populations)
    groups = sorted({int(series.loc[u]) for u in matched if int(series.loc[u]) >= 0})
    palette = _class_colors(groups)
    for ax, channel in zip(axes, channels, strict=True):
        column = list(result.conductance_names).index(channel)
        data = [
            np.concatenate(
                [np.asarray(result.populations[p])[:, column] for u, p in matched.items() if int(series.loc[u]) == g]
            )
            for g in groups
        ]
        boxes = ax.boxplot(data, patch_artist=True, showfliers=False)
        for patch, group in zip(boxes["boxes"], groups, strict=True):
            patch.set_facecolor(palette[group])
        ax.set_xticks(range(1, len(groups) + 1), [str(g) for g in groups])
        if all(np.all(d > 0) for d in data if len(d)):
            ax.set_yscale("log")
        star = " *" if bool(summary.loc[channel, "differs"]) else ""
        ax.set_title(f"g_{channel}{star}", fontsize=9)
        ax.set_xlabel("class")
    axes[0].set_ylabel("maximal conductance (mS/cm2)")
    figure.suptitle("Twin conductances per class (* differ between classes)")
    figure.tight_layout()
    return figure


def plot_condition_comparison(comparison, figure=None, figsize=(11, 4.5)):
    """Arrows from condition a to b in the (g_s, g_u) plane (red: significant shift), and the relative change of
    every channel's twin-population median per unit (heat map)."""
    figure, (ax, ax_map) = _figure(figure, 2, figsize)
    units = comparison.units
    for unit_id, row in units.iterrows():
        colour = "tab:red" if row["significant"] else "0.5"
        ax.annotate(
            "",
            xy=(row["g_s_b"], row["g_u_b"]),
            xytext=(row["g_s_a"], row["g_u_a"]),
            arrowprops=dict(arrowstyle="->", color=colour),
        )
        ax.plot(row["g_s_a"], row["g_u_a"], "o", color=colour, markersize=4)
        ax.plot(row["g_s_b"], row["g_u_b"], "o", color=colour, markerfacecolor="none", markersize=4)
        # The calibrated 1-sd of the shift, drawn at b: an arrow shorter than its bars is within the noise.
        ax.errorbar(
            row["g_s_b"],
            row["g_u_b"],
            xerr=row["delta_g_s_std"],
            yerr=row["delta_g_u_std"],
            fmt="none",
            ecolor=colour,
            alpha=0.4,
            elinewidth=0.8,
        )
        ax.annotate(str(unit_id), (row["g_s_b"], row["g_u_b"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("g_s (leak-normalised)")
    ax.set_ylabel("g_u (leak-normalised)")
    ax.set_title(
        f"DIC shifts a -> b, bars: 1 sd of the shift (red: significant, {comparison.correction}, "
        f"alpha={comparison.alpha})",
        fontsize=9,
    )
    channels = comparison.channels
    if len(channels):
        grid = channels.pivot(index="unit_id", columns="channel", values="relative_shift")
        grid = grid.reindex(columns=list(dict.fromkeys(channels["channel"])))
        limit = float(np.nanmax(np.abs(grid.to_numpy(float)))) if np.isfinite(grid.to_numpy(float)).any() else 1.0
        image = ax_map.imshow(grid.to_numpy(float), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        ax_map.set_xticks(range(grid.shape[1]), list(grid.columns), rotation=45)
        ax_map.set_yticks(range(grid.shape[0]), [str(u) for u in grid.index])
        figure.colorbar(image, ax=ax_map, label="relative change of the twins' median")
    else:
        ax_map.text(0.5, 0.5, "no twin populations", ha="center", va="center", transform=ax_map.transAxes)
    ax_map.set_title("Twin populations: b vs a", fontsize=9)
    figure.tight_layout()
    return figure


def plot_dics_over_time(time_course: pd.DataFrame, unit_ids=None, figure=None, figsize=(10, 7)):
    """g_s, g_u and ln k of each unit against time (window centres), with 1-sd bands (:func:`dics_over_time`)."""
    import matplotlib.pyplot as plt

    if figure is None:
        figure = plt.figure(figsize=figsize)
    else:
        figure.clear()
    axes = figure.subplots(3, 1, sharex=True)
    units = list(dict.fromkeys(time_course["unit_id"])) if unit_ids is None else list(unit_ids)
    for unit_id in units:
        rows = time_course[time_course["unit_id"] == unit_id].sort_values("t_center_s")
        t = rows["t_center_s"].to_numpy(float)
        for ax, quantity in zip(axes, ("g_s", "g_u", "log_time_scale"), strict=True):
            value, std = rows[quantity].to_numpy(float), rows[f"{quantity}_std"].to_numpy(float)
            (line,) = ax.plot(t, value, "o-", markersize=3, label=str(unit_id))
            ax.fill_between(t, value - std, value + std, color=line.get_color(), alpha=0.2)
    for ax, quantity in zip(axes, ("g_s", "g_u", "ln k"), strict=True):
        ax.set_ylabel(quantity)
    axes[0].axhline(0.0, color="0.85", linewidth=0.8, zorder=0)
    axes[-1].set_xlabel("time (s, window centre)")
    if len(units) <= 10:
        axes[0].legend(fontsize=8, title="unit")
    figure.suptitle("DICs over time")
    return figure
