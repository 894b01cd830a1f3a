"""The web app's view of a unit's individual twins: their voltage traces (regenerated on request by
:func:`spikeinterface_dic.twin_traces`) and a download of the twins as NEURON, NeuroML2 or Brian2 files
(:func:`spikeinterface_dic.export_twins`), zipped.

Traces are computed only when asked for (a button): a few twins take a fraction of a second, but doing it on every
unit change would slow browsing down.
"""

from __future__ import annotations

import html
import io
import logging
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import panel as pn

_logger = logging.getLogger(__name__)
TWINS_SHOWN_BY_DEFAULT = 3
EXPORT_FORMATS = {"NEURON (mechanisms + script)": "neuron", "NeuroML2": "neuroml", "Brian2 script": "brian2"}


def traces_figure(unit_text, spike_trains, traces, window_s: float = 2.0):
    """Bokeh column of the twins' voltage traces (the first ``window_s`` seconds), spikes marked above."""
    from bokeh.layouts import column
    from bokeh.plotting import figure

    plots = []
    for row in range(traces.data.shape[0]):
        plot = figure(
            height=160,
            sizing_mode="stretch_width",
            title=f"unit {unit_text}, twin {int(traces.rows[row])}" if row == 0 else f"twin {int(traces.rows[row])}",
            x_axis_label="time (s)" if row == traces.data.shape[0] - 1 else None,
            y_axis_label="V (mV)",
            tools="pan,wheel_zoom,box_zoom,reset,save",
            **({"x_range": plots[0].x_range} if plots else {}),
        )
        t = traces.time_of(row)
        keep = t <= window_s
        plot.line(t[keep], traces.values("V", row)[keep], line_width=1, color="black")
        train = np.asarray(spike_trains[row], dtype=float)
        train = train[train <= window_s]
        plot.scatter(train, np.full(train.size, 55.0), marker="dash", angle=np.pi / 2, size=7, color="#c0392b")
        plots.append(plot)
    return column(*plots, sizing_mode="stretch_width")


def export_zip(result, unit_id, format_name: str, twins) -> io.BytesIO:
    """The unit's twins exported in ``format_name`` ("neuron" | "neuroml" | "brian2"), as a zip in memory."""
    from ..export import export_twins

    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as folder:
        written = export_twins(result, unit_id, format=format_name, folder=folder, twins=twins)
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in written:
                archive.write(path, arcname=Path(path).name)
    buffer.seek(0)
    return buffer


class TwinTools:
    """Widgets of the "twins of this unit" block; :meth:`set_unit` points them at a unit of a result."""

    def __init__(self):
        self.result = None
        self.unit_id = None
        self.n_twins = 0
        self.unit_text = ""
        # A text field and radio buttons rather than <select> widgets: the page's end-to-end test picks the unit
        # selector as the last <select> on the page.
        self.twin_choice = pn.widgets.TextInput(name="Twins (indices, comma-separated)", value="0,1,2", width=300)
        self.traces_button = pn.widgets.Button(name="Show voltage traces", button_type="default", width=200)
        self.traces_button.on_click(self._on_traces)
        self.traces_note = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.traces_pane = pn.pane.Bokeh(None, sizing_mode="stretch_width")
        # Shown and hidden through a container: a Bokeh pane's own ``visible`` follows the figure it is given.
        self.traces_box = pn.Column(self.traces_pane, visible=False, sizing_mode="stretch_width")
        self.format_select = pn.widgets.RadioButtonGroup(name="Export format", options=EXPORT_FORMATS, width=420)
        self.export_download = pn.widgets.FileDownload(
            label="Download the twins as model files (zip)", callback=self._export, filename="twins.zip", width=300
        )
        self.format_select.param.watch(self._update_filename, "value")
        self.view = pn.Column(
            pn.pane.Markdown(
                "Voltage traces of chosen twins (re-simulated exactly as in the run), and the twins as NEURON, "
                "NeuroML2 or Brian2 files for your own simulations (see docs/export.md).",
                sizing_mode="stretch_width",
            ),
            pn.Row(self.twin_choice, self.traces_button),
            self.traces_note,
            self.traces_box,
            pn.Row(self.format_select, self.export_download),
            visible=False,
            sizing_mode="stretch_width",
        )

    def set_unit(self, result, unit_id, unit_text) -> None:
        self.result, self.unit_id, self.unit_text = result, unit_id, str(unit_text)
        has_population = unit_id in result.populations
        self.view.visible = has_population
        self.traces_box.visible = False
        self.traces_note.object = ""
        if not has_population:
            return
        self.n_twins = len(result.populations[unit_id])
        self.twin_choice.value = ",".join(str(i) for i in range(min(TWINS_SHOWN_BY_DEFAULT, self.n_twins)))
        self._update_filename()

    def _twins(self) -> list[int]:
        """The twin indices typed in, within the population (ValueError with a plain message otherwise)."""
        try:
            twins = [int(text) for text in self.twin_choice.value.replace(" ", "").split(",") if text]
        except ValueError:
            raise ValueError(
                f"twins are indices separated by commas, e.g. 0,1,2; got {self.twin_choice.value!r}"
            ) from None
        if not twins or min(twins) < 0 or max(twins) >= self.n_twins:
            raise ValueError(f"this unit has {self.n_twins} twins: give indices from 0 to {self.n_twins - 1}")
        return twins

    def show_traces(self) -> bool:
        from ..traces import twin_traces

        try:
            twins = self._twins()
            spikes, traces = twin_traces(self.result, self.unit_id, twins=twins, record_every_ms=0.2)
            figure = traces_figure(self.unit_text, spikes, traces)
        except Exception as error:
            _logger.exception("twin traces failed")
            self.traces_note.object = f"The traces could not be computed: {html.escape(str(error))}"
            return False
        self.traces_pane.object = figure
        self.traces_box.visible = True
        self.traces_note.object = "Spikes (red) are the run's twin spike times; zoom to see single spikes."
        return True

    def _on_traces(self, event=None) -> None:
        self.show_traces()

    def _update_filename(self, event=None) -> None:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.unit_text)
        self.export_download.filename = f"twins_unit_{safe}_{self.format_select.value}.zip"

    def _export(self):
        try:
            twins = self._twins()
        except ValueError as error:  # a download cannot show an error: export every twin and say why
            self.traces_note.object = f"{html.escape(str(error))}; the download holds every twin of the unit."
            twins = None
        return export_zip(self.result, self.unit_id, self.format_select.value, twins)
