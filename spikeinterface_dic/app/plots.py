"""Bokeh figures of the web app: the (g_s, g_u) plane, recorded vs twin rasters, twin conductance histograms.

Each function takes plain data (a :class:`~spikeinterface_dic.result.PipelineResult`, arrays) and returns a Bokeh
object, so the figures can be built and checked without a browser or a Panel server.
"""

from __future__ import annotations

import numpy as np
from bokeh.layouts import gridplot
from bokeh.models import BoxAnnotation, ColumnDataSource, HoverTool, Label, LabelSet, Legend, Range1d, TapTool
from bokeh.plotting import figure

BURSTING_COLOR = "#d95f02"
TONIC_COLOR = "#1b9e77"
OOD_COLOR = "#c0392b"
SELECTED_COLOR = "#f1c40f"
TWIN_COLOR = "#3b6fb6"
TOOLS = "pan,wheel_zoom,box_zoom,reset,save"
MAX_POINT_LABELS = 12


def _fmt(value, digits: int = 2) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{value:.{digits}f}" if np.isfinite(value) else "n/a"


def plane_data(result) -> dict:
    """Columns of the plane's data source: one row per unit with a finite (g_s, g_u) estimate."""
    estimates = result.estimates
    finite = np.isfinite(estimates["g_s"].to_numpy(float)) & np.isfinite(estimates["g_u"].to_numpy(float))
    rows = estimates[finite]
    g_s = rows["g_s"].to_numpy(float)
    g_u = rows["g_u"].to_numpy(float)
    g_s_std = np.nan_to_num(rows["g_s_std"].to_numpy(float), nan=0.0)
    g_u_std = np.nan_to_num(rows["g_u_std"].to_numpy(float), nan=0.0)
    in_distribution = rows["in_distribution"].to_numpy(bool)
    reasons = [str(r) if isinstance(r, str) else "" for r in rows.get("ood_reason", [""] * len(rows))]
    fidelity = result.fidelity if result.fidelity is not None else None
    matching = []
    for unit_id in rows.index:
        if fidelity is not None and len(fidelity) and unit_id in fidelity.index:
            matching.append(_fmt(fidelity.loc[unit_id, "fraction_matching"]))
        else:
            matching.append("not simulated")
    low = rows["time_scale_low"] if "time_scale_low" in rows else rows["time_scale"]
    high = rows["time_scale_high"] if "time_scale_high" in rows else rows["time_scale"]
    return {
        "unit": [str(u) for u in rows.index],
        "g_s": g_s,
        "g_u": g_u,
        "g_s_low": g_s - g_s_std,
        "g_s_high": g_s + g_s_std,
        "g_u_low": g_u - g_u_std,
        "g_u_high": g_u + g_u_std,
        "g_s_text": [f"{_fmt(a)} ± {_fmt(b)}" for a, b in zip(g_s, g_s_std, strict=True)],
        "g_u_text": [f"{_fmt(a)} ± {_fmt(b)}" for a, b in zip(g_u, g_u_std, strict=True)],
        "time_scale_text": [
            f"{_fmt(k)} ({_fmt(lo)}–{_fmt(hi)})" for k, lo, hi in zip(rows["time_scale"], low, high, strict=True)
        ],
        "label": [str(v) for v in rows["label"]],
        "status": [
            "in distribution" if ok else f"OUT OF DISTRIBUTION: {r}"
            for ok, r in zip(in_distribution, reasons, strict=True)
        ],
        "matching": matching,
        "in_distribution": in_distribution,
        "color": [
            (BURSTING_COLOR if label == "bursting" else TONIC_COLOR) if ok else OOD_COLOR
            for label, ok in zip(rows["label"], in_distribution, strict=True)
        ],
    }


def plane_figure(result, model, selected=None):
    """The (g_s, g_u) plane: every unit with ± 1 std error bars over the model's firing-pattern regions.

    The background shades the network's training range (``model.extra["training_g_s"]`` x ``["training_g_u"]``):
    g_s < 0 "bursting", g_s > 0 "tonic spiking". Out-of-distribution units are red crosses. Returns
    ``(figure, highlight_source, point_sources)``; set ``highlight_source.data`` with :func:`highlight_data` to
    ring another unit; ``point_sources`` (in / out of distribution) carry the tap selection.
    """
    g_s_range = tuple(float(v) for v in model.extra["training_g_s"])
    g_u_range = tuple(float(v) for v in model.extra["training_g_u"])
    data = plane_data(result)
    units = ColumnDataSource(data)
    x_values = np.concatenate([g_s_range, data["g_s_low"], data["g_s_high"]])
    y_values = np.concatenate([g_u_range, data["g_u_low"], data["g_u_high"]])
    x_pad = 0.05 * (x_values.max() - x_values.min())
    y_pad = 0.05 * (y_values.max() - y_values.min())
    p = figure(
        title=f"Dynamic input conductances ({model.name.upper()} model)",
        x_axis_label="g_s (slow DIC, normalised)",
        y_axis_label="g_u (ultraslow DIC, normalised)",
        x_range=Range1d(x_values.min() - x_pad, x_values.max() + x_pad),
        y_range=Range1d(y_values.min() - y_pad, y_values.max() + y_pad),
        tools=TOOLS,
        height=460,
        sizing_mode="stretch_width",
        min_width=400,
    )
    p.add_layout(
        BoxAnnotation(
            left=g_s_range[0],
            right=0,
            bottom=g_u_range[0],
            top=g_u_range[1],
            fill_color=BURSTING_COLOR,
            fill_alpha=0.10,
            line_alpha=0,
        ),
    )
    p.add_layout(
        BoxAnnotation(
            left=0,
            right=g_s_range[1],
            bottom=g_u_range[0],
            top=g_u_range[1],
            fill_color=TONIC_COLOR,
            fill_alpha=0.10,
            line_alpha=0,
        ),
    )
    p.add_layout(
        BoxAnnotation(
            left=g_s_range[0],
            right=g_s_range[1],
            bottom=g_u_range[0],
            top=g_u_range[1],
            fill_alpha=0,
            line_color="#555555",
            line_dash="dashed",
            line_width=1,
        ),
    )
    text = {"text_font_size": "11pt", "text_font_style": "italic", "text_alpha": 0.8, "y": g_u_range[1]}
    p.add_layout(Label(x=g_s_range[0], text="  bursting (g_s < 0)", text_color=BURSTING_COLOR, y_offset=-20, **text))
    p.add_layout(Label(x=0, text="  tonic spiking (g_s > 0)", text_color=TONIC_COLOR, y_offset=-20, **text))
    p.add_layout(
        Label(
            x=g_s_range[0],
            y=g_u_range[0],
            text="  dashed box: range the network was trained on",
            text_font_size="9pt",
            text_color="#555555",
            y_offset=4,
        )
    )

    p.segment(
        x0="g_s_low",
        y0="g_u",
        x1="g_s_high",
        y1="g_u",
        source=units,
        line_color="color",
        line_width=1.5,
        line_alpha=0.7,
    )
    p.segment(
        x0="g_s",
        y0="g_u_low",
        x1="g_s",
        y1="g_u_high",
        source=units,
        line_color="color",
        line_width=1.5,
        line_alpha=0.7,
    )
    inside = ColumnDataSource(
        {k: [v for v, ok in zip(vals, data["in_distribution"], strict=True) if ok] for k, vals in data.items()}
    )
    outside = ColumnDataSource(
        {k: [v for v, ok in zip(vals, data["in_distribution"], strict=True) if not ok] for k, vals in data.items()}
    )
    in_points = p.scatter("g_s", "g_u", source=inside, size=11, fill_color="color", line_color="black", marker="circle")
    out_points = p.scatter("g_s", "g_u", source=outside, size=14, line_color=OOD_COLOR, line_width=3, marker="x")
    for renderer in (in_points, out_points):  # a click selects a unit (ringed in yellow); nothing is faded
        renderer.selection_glyph = renderer.glyph.clone()
        renderer.nonselection_glyph = renderer.glyph.clone()
    p.add_tools(TapTool(renderers=[in_points, out_points]))
    highlight = ColumnDataSource(highlight_data(data, selected))
    p.scatter(
        "g_s", "g_u", source=highlight, size=24, fill_alpha=0, line_color=SELECTED_COLOR, line_width=3, marker="circle"
    )
    if len(data["unit"]) <= MAX_POINT_LABELS:  # more names than this overlap; hovering still gives them
        p.add_layout(
            LabelSet(
                x="g_s",
                y="g_u",
                text="unit",
                source=units,
                x_offset=7,
                y_offset=5,
                text_font_size="9pt",
                text_color="#333333",
            )
        )
    legend_items = []
    if len(inside.data["unit"]):
        legend_items.append(("unit (± 1 std)", [in_points]))
    if len(outside.data["unit"]):
        legend_items.append(("out of distribution", [out_points]))
    if legend_items:
        p.add_layout(Legend(items=legend_items, location="bottom_right"))
    p.add_tools(
        HoverTool(
            renderers=[in_points, out_points],
            tooltips=[
                ("unit", "@unit"),
                ("g_s", "@g_s_text"),
                ("g_u", "@g_u_text"),
                ("time scale", "@time_scale_text"),
                ("pattern", "@label"),
                ("status", "@status"),
                ("twins matching", "@matching"),
            ],
        )
    )
    p.toolbar.logo = None
    return p, highlight, [inside, outside]


def highlight_data(data: dict, selected) -> dict:
    """The one-row (or empty) source that rings the selected unit in the plane."""
    if selected is not None and str(selected) in data["unit"]:
        i = data["unit"].index(str(selected))
        return {"g_s": [data["g_s"][i]], "g_u": [data["g_u"][i]]}
    return {"g_s": [], "g_u": []}


def twin_window_s(result, unit_id) -> float:
    """Length (s, real time) of the window the twins of ``unit_id`` were recorded in."""
    from ..models import get_model

    duration = result.parameters.get("duration_s")
    if duration is not None:
        return float(duration)
    model = get_model(result.model_name)
    k = float(result.estimates.loc[unit_id, "time_scale"]) if unit_id in result.estimates.index else 1.0
    k = k if np.isfinite(k) else 1.0
    return (model.default_duration_ms - model.default_transient_ms) / 1000.0 * k


def raster_figure(unit_id, recorded, twins, window_s: float | None = None, n_twins: int = 6):
    """Recorded spike train (top row) against the first ``n_twins`` simulated twins of one unit.

    Every row starts at its own first spike (twins and recording are not synchronised) and shows ``window_s``
    seconds (default: the twins' recording window, or the recording's span).
    """
    recorded = np.sort(np.asarray(recorded, dtype=float))
    rows = [("recorded", recorded)] + [(f"twin {i + 1}", np.asarray(t, float)) for i, t in enumerate(twins[:n_twins])]
    if window_s is None or not np.isfinite(window_s) or window_s <= 0:
        window_s = float(recorded[-1] - recorded[0]) if len(recorded) > 1 else 1.0
    xs, y0, y1, names, colors, times = [], [], [], [], [], []
    for row, (name, train) in enumerate(rows):
        if len(train) == 0:
            continue
        shifted = train - train[0]
        shifted = shifted[shifted <= window_s]
        y = len(rows) - 1 - row
        xs.extend(shifted)
        y0.extend([y - 0.38] * len(shifted))
        y1.extend([y + 0.38] * len(shifted))
        names.extend([name] * len(shifted))
        colors.extend(["black" if row == 0 else TWIN_COLOR] * len(shifted))
        times.extend(train[: len(shifted)])
    source = ColumnDataSource({"x": xs, "y0": y0, "y1": y1, "row": names, "color": colors, "t": times})
    p = figure(
        title=f"Unit {unit_id}: recorded spikes vs {len(rows) - 1} twin(s)",
        x_axis_label="time from each train's first spike (s)",
        x_range=Range1d(-0.02 * window_s, window_s * 1.02),
        y_range=Range1d(-0.6, len(rows) - 0.4),
        tools=TOOLS,
        height=90 + 34 * len(rows),
        sizing_mode="stretch_width",
        min_width=400,
    )
    glyph = p.segment(x0="x", y0="y0", x1="x", y1="y1", source=source, line_color="color", line_width=1.4)
    p.yaxis.ticker = list(range(len(rows)))
    p.yaxis.major_label_overrides = {len(rows) - 1 - i: name for i, (name, _) in enumerate(rows)}
    p.ygrid.grid_line_color = None
    p.add_tools(HoverTool(renderers=[glyph], tooltips=[("train", "@row"), ("time (s)", "@t{0.000}")]))
    if len(rows) == 1:
        p.add_layout(
            Label(
                x=0,
                y=0,
                text="  no simulated twins (simulation was off or no population)",
                y_offset=-25,
                text_font_size="10pt",
                text_color="#555555",
            )
        )
    p.toolbar.logo = None
    return p


def histograms_figure(unit_id, gbar, conductance_names, ncols: int = 4):
    """One histogram per maximal conductance of a unit's twin population (mS/cm2), in a grid."""
    gbar = np.atleast_2d(np.asarray(gbar, dtype=float))
    figures = []
    for column, name in enumerate(conductance_names):
        values = gbar[:, column]
        values = values[np.isfinite(values)]
        if len(values) == 0:
            continue
        low, high = float(values.min()), float(values.max())
        if high <= low:
            low, high = low - 0.5 * max(abs(low), 1e-3), high + 0.5 * max(abs(high), 1e-3)
        counts, edges = np.histogram(values, bins=min(12, max(4, len(values) // 2)), range=(low, high))
        source = ColumnDataSource({"left": edges[:-1], "right": edges[1:], "count": counts})
        p = figure(
            title=f"g_{name}",
            height=170,
            width=230,
            tools="pan,wheel_zoom,reset",
            x_axis_label="mS/cm²",
            y_axis_label="twins" if column % ncols == 0 else None,
        )
        quads = p.quad(
            left="left",
            right="right",
            bottom=0,
            top="count",
            source=source,
            fill_color=TWIN_COLOR,
            fill_alpha=0.7,
            line_color="white",
        )
        p.add_tools(
            HoverTool(renderers=[quads], tooltips=[(f"g_{name}", "@left{0.000} – @right{0.000}"), ("twins", "@count")])
        )
        p.title.text_font_size = "10pt"
        p.toolbar.logo = None
        figures.append(p)
    return gridplot(figures, ncols=ncols, toolbar_location=None)
