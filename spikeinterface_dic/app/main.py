"""The Panel web app: load spike trains, run the pipeline, look at the results, download them.

:class:`DicApp` holds the widgets and the callbacks of one browser session (one per page load when served); its
``template`` is the page. Callbacks never raise: every problem is shown in the page in plain words.
"""

from __future__ import annotations

import html
import logging
import re
import shutil
import signal
import tempfile
import threading
import time
import warnings
import webbrowser
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import panel as pn

from . import plots
from .twin_tools import TwinTools

TITLE = "spikeinterface-dic"
EXAMPLE_FILE = "example_units.csv"
FALLBACK_EXAMPLE = Path("tests") / "data" / "spike2pop_stg_set.csv"
DEFAULT_POPULATION_SIZE = 16
MAX_POPULATION_SIZE = 1000
OOD_LINES_SHOWN = 5  # out-of-distribution units listed before "show more"
MAX_UPLOAD_BYTES = 1024**3  # largest upload accepted by the server (the file travels over the websocket)
MODELS = {"STG: stomatogastric neuron (crab)": "stg", "DA: midbrain dopaminergic neuron": "da"}
# RunConfig.span_source in words (tonic_rate.SPAN_SOURCES): what the user knows of how the trains' spans came about.
SPAN_SOURCE_CHOICES = {
    "unknown (weighed by the evidence)": None,
    "as long as their recording lasted": "recording",
    "simulated windows × k (generate-data)": "window",
}
SUPPORTED = (
    "NWB files (.nwb, Units table), Spike2Pop CSV files (columns ID and spiking_times in ms), long CSV files "
    "(columns unit_id and spike_time_s) and single-file formats read by neo"
)

# FileDownload (Panel 1.9) renders every colour as "default": colour the main download buttons with CSS
_PRIMARY_CSS = (
    ".bk-btn { background-color: #0072b5 !important; border-color: #0072b5 !important; color: white !important; }"
)
_RUN_LOCK = threading.Lock()  # one analysis at a time in the server: the numba kernel is not re-entrant
_SESSIONS_DIR: Path | None = None  # set by serve(): every session's folder lives there and goes with the server
_logger = logging.getLogger(__name__)

pn.config.inline = True  # resources from this package, never a CDN: the app works with no network


def _label(text: str) -> dict:
    """Widget label keyword: ``label`` from Panel 1.9 on, ``name`` before."""
    return {"label": text} if "label" in pn.widgets.Select.param else {"name": text}


def _color(name: str) -> dict:
    """Button colour keyword: ``color`` from Panel 1.9 on, ``button_type`` before."""
    return {"color": name} if "color" in pn.widgets.Button.param else {"button_type": name}


class UserError(Exception):
    """A problem to show to the user as it is (no traceback)."""


@dataclass
class RunOutput:
    result: object
    units_csv: Path
    populations_csv: Path
    nwb_path: Path | None
    nwb_error: str
    seconds: float


def example_data_path() -> Path | None:
    """Path of the bundled example (``spikeinterface_dic/data/example_units.csv``), or of the repository's
    ``tests/data/spike2pop_stg_set.csv`` when the package data is missing; None when neither exists."""
    try:
        candidate = resources.files("spikeinterface_dic") / "data" / EXAMPLE_FILE
        if candidate.is_file():
            with resources.as_file(candidate) as path:
                if Path(path).is_file():
                    return Path(path)
    except (ModuleNotFoundError, FileNotFoundError, OSError):  # pragma: no cover - broken installs
        pass
    for parent in Path(__file__).resolve().parents:
        if (parent / FALLBACK_EXAMPLE).is_file():
            return parent / FALLBACK_EXAMPLE
    return None


def _safe_name(filename: str) -> str:
    """A file name without folders or odd characters, keeping the suffix (readers dispatch on it)."""
    name = Path(str(filename or "upload")).name
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "upload"
    return name[-120:]


def _plain(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text if len(text) < 600 else text[:600] + "…"


def _units_frame(trains, features: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unit": [str(u) for u in features.index],
            "spikes": features["n_spikes"].astype(int).to_numpy(),
            "rate (Hz)": features["mean_rate_hz"].astype(float).round(2).fillna(0.0).to_numpy(),
            "firing pattern": features["label"].astype(str).to_numpy(),
        }
    )


def _estimates_frame(result) -> pd.DataFrame:
    e = result.estimates
    frame = pd.DataFrame(
        {
            "unit": [str(u) for u in e.index],
            "pattern": e["label"].astype(str).to_numpy(),
            "g_s": e["g_s"].round(2).to_numpy(),
            "g_s std": e["g_s_std"].round(2).to_numpy(),
            "g_u": e["g_u"].round(2).to_numpy(),
            "g_u std": e["g_u_std"].round(2).to_numpy(),
            "time scale": e["time_scale"].round(2).to_numpy(),
            "in distribution": e["in_distribution"].astype(bool).to_numpy(),
            "reason (if out of distribution)": e["ood_reason"].fillna("").astype(str).to_numpy(),
        }
    )
    if "sorting_quality_ok" in e.columns:  # results of the analyzer extension (sorting-quality gate)
        frame["sorting quality ok"] = e["sorting_quality_ok"].astype(bool).to_numpy()
        frame["reason (if flagged)"] = e["sorting_quality_reason"].fillna("").astype(str).to_numpy()
    return frame


def _fidelity_frame(result) -> pd.DataFrame:
    fidelity = result.fidelity
    if fidelity is None or not len(fidelity):
        return pd.DataFrame({"unit": [], "fraction_matching": []})
    frame = fidelity.copy()
    frame.index = [str(u) for u in frame.index]
    frame.index.name = "unit"
    return frame.reset_index().round(3)


def _set_table(table, frame: pd.DataFrame, page_size: int = 12) -> None:
    """Show ``frame`` in a Tabulator, with pages only when it has more rows than one page."""
    table.pagination = "local" if len(frame) > page_size else None
    table.value = frame


class DicApp:
    """One session of the web app: widgets, state and callbacks. ``template`` is the page."""

    def __init__(self):
        self.workdir = Path(tempfile.mkdtemp(prefix="spikeinterface-dic-app-", dir=_SESSIONS_DIR))
        self.trains: dict | None = None
        self.source_name = ""
        self.input_path: Path | None = None
        self.input_is_nwb = False
        self.result = None
        self.output: RunOutput | None = None
        self.busy = False
        self._run_count = 0
        self._started = 0.0
        self._waiting = False
        self._units_by_text: dict = {}
        self._highlight = None
        self._plane_data: dict = {}
        self._periodic = None
        self._build_widgets()
        self.template = self._build_template()

    # ------------------------------------------------------------------------------------------------ layout
    def _build_widgets(self) -> None:
        self.file_input = pn.widgets.FileInput(multiple=False, sizing_mode="stretch_width")
        self.file_input.param.watch(self._on_upload, "value")
        self.example_button = pn.widgets.Button(
            **_label("Load example"), **_color("primary"), sizing_mode="stretch_width"
        )
        self.example_button.on_click(self._on_example)
        self.data_info = pn.pane.Markdown("No data loaded yet.", sizing_mode="stretch_width")

        self.model_select = pn.widgets.Select(
            **_label("Neuron model"), options=MODELS, value="stg", sizing_mode="stretch_width"
        )
        self.population_input = pn.widgets.IntInput(
            **_label("Twins per unit (population size)"),
            value=DEFAULT_POPULATION_SIZE,
            start=1,
            end=MAX_POPULATION_SIZE,
            step=1,
            sizing_mode="stretch_width",
        )
        self.simulate_checkbox = pn.widgets.Checkbox(**_label("Simulate the twins and check their firing"), value=True)
        self.seed_input = pn.widgets.IntInput(
            **_label("Random seed"), value=0, start=0, step=1, sizing_mode="stretch_width"
        )
        # What the user knows of k (e.g. from the recording temperature): both empty = estimate k freely.
        self.k_low_input = pn.widgets.FloatInput(
            **_label("Time scale k from (optional)"), value=None, start=0.0, step=0.5, sizing_mode="stretch_width"
        )
        self.k_high_input = pn.widgets.FloatInput(
            **_label("Time scale k to (optional)"), value=None, start=0.0, step=0.5, sizing_mode="stretch_width"
        )
        # How the trains came to span what they span (RunConfig.span_source): it decides how long tonic trains of
        # models with a rate density are read.
        self.span_select = pn.widgets.Select(
            **_label("The trains span"), options=SPAN_SOURCE_CHOICES, value=None, sizing_mode="stretch_width"
        )
        self.run_button = pn.widgets.Button(
            **_label("Run analysis"),
            **_color("success"),
            disabled=True,
            sizing_mode="stretch_width",
        )
        self.run_button.on_click(self._on_run_click)
        self.spinner = pn.indicators.LoadingSpinner(value=False, size=28, visible=False)
        self.progress = pn.pane.Markdown("", sizing_mode="stretch_width", css_classes=["dic-progress"])

        self.alert = pn.pane.Alert(
            "", alert_type="danger", visible=False, sizing_mode="stretch_width", css_classes=["dic-alert"]
        )
        self.notice = pn.pane.Alert(
            "", alert_type="warning", visible=False, sizing_mode="stretch_width", css_classes=["dic-notice"]
        )
        self.intro = pn.pane.Markdown(
            "**Start here:** upload a file with spike times (left) or press **Load example**, then press "
            "**Run analysis**. The app estimates each unit's dynamic input conductances (g_s, g_u), builds a "
            "population of conductance-based *twins* that fire like it, and checks them by simulation.",
            sizing_mode="stretch_width",
        )
        self.units_table = pn.widgets.Tabulator(
            pd.DataFrame(),
            disabled=True,
            show_index=False,
            layout="fit_data_table",
            page_size=12,
            sizing_mode="stretch_width",
        )
        self.units_card = pn.Column(
            "## Units in the file", self.units_table, visible=False, sizing_mode="stretch_width"
        )

        self.summary = pn.pane.Markdown("", sizing_mode="stretch_width", css_classes=["dic-summary"])
        self.ood_alert = pn.pane.Alert(
            "", alert_type="warning", visible=False, sizing_mode="stretch_width", css_classes=["dic-ood"]
        )
        self.plane_pane = pn.pane.Bokeh(None, sizing_mode="stretch_width")
        self.estimates_table = pn.widgets.Tabulator(
            pd.DataFrame(),
            disabled=True,
            show_index=False,
            layout="fit_data_table",
            page_size=12,
            sizing_mode="stretch_width",
        )
        self.estimates_table.on_click(self._on_estimates_click)
        self.unit_select = pn.widgets.Select(**_label("Unit to inspect"), options=[], width=320)
        self.unit_select.param.watch(self._on_unit_change, "value")
        self.raster_pane = pn.pane.Bokeh(None, sizing_mode="stretch_width")
        self.histogram_note = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.histogram_pane = pn.pane.Bokeh(None)
        self.twin_tools = TwinTools()  # traces and model-file export of the selected unit's twins
        self.fidelity_note = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.fidelity_table = pn.widgets.Tabulator(
            pd.DataFrame(),
            disabled=True,
            show_index=False,
            layout="fit_data_table",
            page_size=12,
            sizing_mode="stretch_width",
        )
        self.units_download = pn.widgets.FileDownload(
            label="Download results per unit (CSV)", **_color("primary"), width=300, stylesheets=[_PRIMARY_CSS]
        )
        self.populations_download = pn.widgets.FileDownload(
            label="Download twin populations (CSV)", **_color("default"), width=300
        )
        self.nwb_download = pn.widgets.FileDownload(
            label="Download NWB file with results",
            **_color("primary"),
            width=300,
            visible=False,
            stylesheets=[_PRIMARY_CSS],
        )
        self.download_note = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.results = pn.Column(
            "## Results",
            self.summary,
            self.ood_alert,
            "### Conductance plane",
            pn.pane.Markdown(
                "Each dot is a unit at its estimated (g_s, g_u), with bars of ± 1 standard deviation. Shaded: the "
                "region the network was trained on, orange where models burst (g_s < 0), green where they fire "
                "tonically (g_s > 0). Red crosses: units outside what the network knows (their estimates are not "
                "reliable). Hover over a unit for its values; click it to inspect it below.",
                sizing_mode="stretch_width",
            ),
            self.plane_pane,
            self.estimates_table,
            "### One unit and its twins",
            self.unit_select,
            self.raster_pane,
            self.histogram_note,
            self.histogram_pane,
            self.twin_tools.view,
            "### Fidelity of the twins",
            self.fidelity_note,
            self.fidelity_table,
            "### Download",
            pn.Row(self.units_download, self.populations_download, self.nwb_download),
            self.download_note,
            visible=False,
            sizing_mode="stretch_width",
        )

    def _build_template(self):
        sidebar = [
            pn.pane.Markdown("### 1. Load spike trains"),
            pn.pane.Markdown(f"Upload a file: {SUPPORTED}.", styles={"font-size": "0.85em"}),
            self.file_input,
            pn.pane.Markdown("or"),
            self.example_button,
            self.data_info,
            pn.pane.Markdown("### 2. Settings"),
            self.model_select,
            self.population_input,
            self.simulate_checkbox,
            self.seed_input,
            self.k_low_input,
            self.k_high_input,
            self.span_select,
            pn.pane.Markdown("### 3. Run"),
            self.run_button,
            self.spinner,
            self.progress,
        ]
        template = pn.template.BootstrapTemplate(
            title="spikeinterface-dic: conductances and twin neurons from spike times",
            sidebar=sidebar,
            main=[self.alert, self.notice, self.intro, self.results, self.units_card],
            sidebar_width=340,
            header_background="#2c5d8a",
        )
        return template

    # -------------------------------------------------------------------------------------------- messages
    def _error(self, message: str) -> None:
        self.alert.object = message
        self.alert.visible = True

    def _clear_messages(self) -> None:
        self.alert.visible = False
        self.alert.object = ""
        self.notice.visible = False
        self.notice.object = ""

    def _warn(self, message: str) -> None:
        self.notice.object = message
        self.notice.visible = True

    # ------------------------------------------------------------------------------------------------ loading
    def _on_example(self, event=None) -> None:
        try:
            self.load_example()
        except Exception as error:  # the app must never die
            _logger.exception("loading the example failed")
            self._error(f"Could not load the example: {html.escape(_plain(error))}")

    def load_example(self) -> bool:
        """Load the bundled example (copied into this session's folder). True when units were loaded."""
        source = example_data_path()
        if source is None:
            self._clear_messages()
            self._error("The bundled example file is missing from this installation; reinstall spikeinterface-dic.")
            return False
        target = self.workdir / "inputs" / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        self.model_select.value = "stg"  # the example units come from the STG model
        try:  # forget a previously chosen upload, so the page does not show its name next to the example
            self.file_input.clear()
        except Exception:  # pragma: no cover - older Panel
            pass
        return self.load_path(target, display_name=f"example ({source.name})")

    def _on_upload(self, event) -> None:
        if event.new is None:
            return
        try:
            self.load_upload(self.file_input.filename or "upload", event.new)
        except Exception as error:
            _logger.exception("reading the upload failed")
            self._error(f"Could not read the uploaded file: {html.escape(_plain(error))}")

    def load_upload(self, filename: str, content: bytes) -> bool:
        """Write uploaded bytes to this session's folder (keeping the file suffix) and load them."""
        self._run_count += 1
        target = self.workdir / "inputs" / f"upload{self._run_count}" / _safe_name(filename)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(bytes(content))
        return self.load_path(target, display_name=Path(str(filename)).name)

    def load_path(self, path, display_name: str | None = None) -> bool:
        """Read spike trains from ``path`` and show its units. True when at least one unit can be analysed."""
        from ..features import spike_train_features
        from ..io import read_spike_trains

        path = Path(path)
        display_name = html.escape(display_name or path.name)
        self._clear_messages()
        self._reset_data()
        if self.busy:
            self._error("An analysis is running; wait for it to finish before loading another file.")
            return False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trains = read_spike_trains(path)
        except Exception as error:
            self._error(
                f"<b>Could not read “{display_name}”.</b> It is not a recording in a format this app understands, "
                f"or it is damaged.<br>Supported: {SUPPORTED}.<br><small>Details: {html.escape(_plain(error))}</small>"
            )
            self.data_info.object = "No data loaded."
            return False
        if len(trains) == 0:
            self._error(f"<b>“{display_name}” contains no units</b> (no spike trains were found in it).")
            self.data_info.object = "No data loaded."
            return False
        features = spike_train_features({u: np.asarray(t, dtype=float) for u, t in trains.items()})
        self.trains = {u: np.asarray(t, dtype=float) for u, t in trains.items()}
        self.source_name = display_name
        self.input_path = path
        self.input_is_nwb = getattr(trains, "file_format", "") == "nwb"
        _set_table(self.units_table, _units_frame(trains, features))
        self.units_card.visible = True
        self.intro.visible = False
        n_spikes = int(features["n_spikes"].sum())
        self.data_info.object = (
            f"Loaded **{display_name}**: {len(trains)} unit(s), {n_spikes} spikes"
            f" ({getattr(trains, 'file_format', '') or 'file'})."
        )
        silent = [str(u) for u, label in features["label"].items() if label == "silent"]
        messages = []
        if getattr(trains, "problems", None):
            skipped = "; ".join(html.escape(p) for p in trains.problems[:5])
            messages.append(f"Some entries of the file were skipped: {skipped}.")
        if len(silent) == len(trains):
            self._error(
                f"<b>All {len(trains)} unit(s) in “{display_name}” are silent</b> (fewer than 3 spikes each): "
                "there is nothing to analyse. Check that the file holds the right recording and that its spike "
                "times are in the expected unit."
            )
            self.run_button.disabled = True
            return False
        if silent:
            messages.append(
                f"{len(silent)} silent unit(s) (fewer than 3 spikes) will get no estimate: "
                f"{html.escape(', '.join(silent[:20]))}{'…' if len(silent) > 20 else ''}."
            )
        if messages:
            self._warn("<br>".join(messages))
        self.run_button.disabled = False
        return True

    def _reset_data(self) -> None:
        self.trains = None
        self.result = None
        self.output = None
        self.input_path = None
        self.input_is_nwb = False
        self.run_button.disabled = True
        self.results.visible = False
        self.units_card.visible = False

    # ---------------------------------------------------------------------------------------------- running
    def _prepare_run(self) -> dict:
        if self.busy:
            raise UserError("An analysis is already running.")
        if not self.trains:
            raise UserError("Load a file or the example first.")
        population_size = self.population_input.value
        if population_size is None or not 1 <= int(population_size) <= MAX_POPULATION_SIZE:
            raise UserError(f"The population size must be between 1 and {MAX_POPULATION_SIZE}.")
        seed = self.seed_input.value
        if seed is None or int(seed) < 0:
            raise UserError("The random seed must be a whole number ≥ 0.")
        if all(len(t) < 3 for t in self.trains.values()):
            raise UserError("All units are silent (fewer than 3 spikes each): there is nothing to analyse.")
        from ..config import RunConfig

        bounds = (self.k_low_input.value, self.k_high_input.value)
        if (bounds[0] is None) != (bounds[1] is None):
            raise UserError("Give both ends of the time-scale range (or neither, to estimate k freely).")
        if bounds[0] is not None and not 0 < bounds[0] < bounds[1]:
            raise UserError("The time-scale range needs 0 < from < to (for example from 2 to 6).")
        try:
            config = RunConfig(
                model=self.model_select.value,
                population_size=int(population_size),
                simulate=bool(self.simulate_checkbox.value),
                seed=int(seed),
                time_scale_range=None if bounds[0] is None else bounds,
                span_source=self.span_select.value,
            )
        except ValueError as error:
            raise UserError(f"Settings: {error}.") from None
        self._run_count += 1
        stem = _safe_name(Path(self.input_path.name).stem if self.input_path else "results")
        return {
            "trains": dict(self.trains),
            "config": config,
            "out_dir": self.workdir / f"run{self._run_count}",
            "stem": stem,
            "input_path": self.input_path,
            "input_is_nwb": self.input_is_nwb,
        }

    def _compute(self, job: dict) -> RunOutput:
        """The analysis itself (no widget is touched: it may run in a worker thread)."""
        from ..io import write_csv
        from ..pipeline import run_pipeline

        started = time.perf_counter()
        self._waiting = not _RUN_LOCK.acquire(blocking=False)
        if self._waiting:
            _RUN_LOCK.acquire()
            self._waiting = False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = run_pipeline(job["trains"], job["config"])
        finally:
            _RUN_LOCK.release()
        out_dir = Path(job["out_dir"])
        out_dir.mkdir(parents=True, exist_ok=True)
        units_csv, populations_csv, _ = write_csv(result, out_dir / f"{job['stem']}_dic")
        nwb_path, nwb_error = None, ""
        if job["input_is_nwb"] and job["input_path"] is not None:
            from ..nwb import write_nwb

            nwb_path = out_dir / f"{job['stem']}_dic.nwb"
            try:
                shutil.copyfile(job["input_path"], nwb_path)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    write_nwb(result, nwb_path, overwrite=True)
            except Exception as error:
                _logger.exception("writing the enriched NWB file failed")
                nwb_path, nwb_error = None, _plain(error)
        return RunOutput(result, units_csv, populations_csv, nwb_path, nwb_error, time.perf_counter() - started)

    def run(self) -> bool:
        """Run the analysis synchronously (scripts and tests); True when results are shown."""
        try:
            job = self._prepare_run()
        except UserError as error:
            self._error(html.escape(str(error)))
            return False
        self._set_busy(True)
        return self._finish(self._outcome(job))

    def _on_run_click(self, event=None) -> None:
        """Run button: in a server the analysis runs in a worker thread, so the page stays responsive; its
        results are shown by a callback scheduled on the session's document (which holds the document lock)."""
        try:
            job = self._prepare_run()
        except UserError as error:
            self._error(html.escape(str(error)))
            return
        except Exception as error:
            _logger.exception("could not start the analysis")
            self._error(f"Could not start the analysis: {html.escape(_plain(error))}")
            return
        self._set_busy(True)
        if not self._in_server():
            self._finish(self._outcome(job))
            return
        doc = pn.state.curdoc
        threading.Thread(target=self._work, args=(job, doc), name="spikeinterface-dic-run", daemon=True).start()

    def _outcome(self, job: dict):
        """RunOutput, or the exception the analysis raised."""
        try:
            return self._compute(job)
        except Exception as error:
            _logger.exception("the analysis failed")
            return error

    def _work(self, job: dict, doc) -> None:
        outcome = self._outcome(job)
        try:
            doc.add_next_tick_callback(partial(self._finish, outcome))
        except Exception:  # pragma: no cover - the page was closed meanwhile
            _logger.info("the session ended before its analysis finished")

    def _finish(self, outcome) -> bool:
        self._set_busy(False)
        if isinstance(outcome, BaseException):
            self._error(f"<b>The analysis failed.</b> {html.escape(_plain(outcome))}")
            return False
        return self._show_safely(outcome)

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        for widget in (
            self.run_button,
            self.example_button,
            self.file_input,
            self.model_select,
            self.population_input,
            self.simulate_checkbox,
            self.seed_input,
            self.k_low_input,
            self.k_high_input,
            self.span_select,
        ):
            widget.disabled = busy
        self.run_button.param.update(**_label("Running…" if busy else "Run analysis"))
        self.spinner.value = busy
        self.spinner.visible = busy
        if busy:
            self._clear_messages()
            self._started = time.perf_counter()
            self._tick()
            if self._in_server():
                self._periodic = pn.state.add_periodic_callback(self._tick, period=1000)
        else:
            if self._periodic is not None:
                self._periodic.stop()
                self._periodic = None
            self.progress.object = ""
            self.run_button.disabled = not self.trains

    def _tick(self) -> None:
        elapsed = time.perf_counter() - self._started
        if self._waiting:
            step = "waiting for the simulator (another analysis or its first start-up)"
        else:
            step = "estimating conductances, building twins" + (
                " and simulating them" if self.simulate_checkbox.value else ""
            )
        self.progress.object = f"**Running… {elapsed:.0f} s** — {step}."

    @staticmethod
    def _in_server() -> bool:
        doc = pn.state.curdoc
        return doc is not None and getattr(doc, "session_context", None) is not None

    # ---------------------------------------------------------------------------------------------- results
    def _show_safely(self, output: RunOutput) -> bool:
        try:
            self.show_result(output)
        except Exception as error:
            _logger.exception("showing the results failed")
            self._error(f"The analysis finished but its results could not be shown: {html.escape(_plain(error))}")
            return False
        return True

    def show_result(self, output: RunOutput) -> None:
        from ..models import get_model

        result = output.result
        self.output = output
        self.result = result
        model = get_model(result.model_name)
        estimates = result.estimates
        n_units = len(estimates)
        n_in = int(estimates["in_distribution"].astype(bool).sum())
        fidelity_text = ""
        if result.fidelity is not None and len(result.fidelity):
            median = float(np.nanmedian(result.fidelity["fraction_matching"].to_numpy(float)))
            fidelity_text = f" Median share of twins that fire like their unit: **{median:.0%}**."
        self.summary.object = (
            f"**{n_units} unit(s)** from {self.source_name} analysed with the **{result.model_name.upper()}** model "
            f"in {output.seconds:.1f} s ({result.parameters.get('population_size')} twins per unit, "
            f"seed {result.parameters.get('seed')}). {n_in} in distribution, {n_units - n_in} out of distribution."
            + fidelity_text
        )
        ood = estimates[~estimates["in_distribution"].astype(bool)]
        if len(ood):
            lines = [
                f"<li><b>{html.escape(str(u))}</b>: {html.escape(str(r) or 'outside the training range')}</li>"
                for u, r in zip(ood.index, ood["ood_reason"].fillna(""), strict=True)
            ]
            shown, rest = lines[:OOD_LINES_SHOWN], lines[OOD_LINES_SHOWN:]
            more = (
                f"<details><summary>… and {len(rest)} more (click to show)</summary><ul>{''.join(rest)}</ul></details>"
                if rest
                else ""
            )
            self.ood_alert.object = (
                f"<b>{len(ood)} unit(s) out of distribution</b> (red crosses in the plane; units with too few spikes "
                f"are not plotted). Their values are not reliable:<ul style='margin-bottom:0'>{''.join(shown)}</ul>"
                + more
            )
            self.ood_alert.visible = True
        else:
            self.ood_alert.visible = False

        self._units_by_text = {str(u): u for u in estimates.index}
        finite = [str(u) for u in estimates.index if np.isfinite(estimates.loc[u, "g_s"])]
        with_population = [str(u) for u in result.populations]
        first = next((u for u in with_population if u in finite), finite[0] if finite else None)
        figure, self._highlight, sources = plots.plane_figure(result, model, selected=first)
        self._plane_data = plots.plane_data(result)
        for source in sources:
            source.selected.on_change("indices", self._tap_handler(source))
        self.plane_pane.object = figure
        _set_table(self.estimates_table, _estimates_frame(result))

        if result.fidelity is not None and len(result.fidelity):
            self.fidelity_note.object = (
                "For each unit: **fraction_matching**, the share of its twins whose firing pattern matches the "
                "recording (same pattern, main frequency within 10 %, and spikes per burst for bursters); "
                "median ISI distance (0 = identical intervals) and main frequencies of recording and twins."
            )
            _set_table(self.fidelity_table, _fidelity_frame(result))
            self.fidelity_table.visible = True
        else:
            self.fidelity_note.object = "Simulation was off: the twins were not simulated, so there is no fidelity."
            self.fidelity_table.visible = False

        self.unit_select.options = finite or [str(u) for u in estimates.index]
        if first is not None and self.unit_select.value == first:
            self._show_unit(first)
        else:
            self.unit_select.value = first

        self.units_download.file = str(output.units_csv)
        self.units_download.filename = output.units_csv.name
        self.populations_download.file = str(output.populations_csv)
        self.populations_download.filename = output.populations_csv.name
        notes = [
            f"**{output.units_csv.name}**: one row per unit (DICs, time scale, label, fidelity). "
            f"**{output.populations_csv.name}**: one row per twin (maximal conductances, mS/cm²)."
        ]
        if output.nwb_path is not None:
            self.nwb_download.file = str(output.nwb_path)
            self.nwb_download.filename = output.nwb_path.name
            self.nwb_download.visible = True
            notes.append(f"**{output.nwb_path.name}**: your NWB file with the results added to its Units table.")
        else:
            self.nwb_download.visible = False
            if output.nwb_error:
                notes.append(f"The NWB file with results could not be written: {html.escape(output.nwb_error)}")
            elif not self.input_is_nwb:
                notes.append("An NWB file with the results is offered when the input is an NWB file.")
        self.download_note.object = "<br>".join(notes)
        self.results.visible = True

    def _tap_handler(self, source):
        def handler(attr, old, new):
            try:
                if new:
                    unit = source.data["unit"][new[0]]
                    if unit in self.unit_select.options:
                        self.unit_select.value = unit
            except Exception:  # pragma: no cover - a click must never break the page
                _logger.exception("selecting a unit from the plane failed")

        return handler

    def _on_estimates_click(self, event) -> None:
        try:
            unit = str(self.estimates_table.value.iloc[event.row]["unit"])
            if unit in self.unit_select.options:
                self.unit_select.value = unit
        except Exception:  # pragma: no cover
            _logger.exception("selecting a unit from the table failed")

    def _on_unit_change(self, event) -> None:
        if event.new is None or self.result is None:
            return
        try:
            self._show_unit(event.new)
        except Exception as error:
            _logger.exception("showing a unit failed")
            self._error(f"Could not show unit {html.escape(str(event.new))}: {html.escape(_plain(error))}")

    def _show_unit(self, unit_text: str) -> None:
        result = self.result
        unit_id = self._units_by_text.get(str(unit_text), unit_text)
        if self._highlight is not None:
            self._highlight.data = plots.highlight_data(self._plane_data, str(unit_text))
        recorded = self.trains.get(unit_id, np.array([])) if self.trains else np.array([])
        twins = result.twin_spike_trains.get(unit_id, [])
        self.raster_pane.object = plots.raster_figure(
            unit_text, recorded, twins, window_s=plots.twin_window_s(result, unit_id)
        )
        if unit_id in result.populations:
            gbar = result.populations[unit_id]
            self.histogram_note.object = (
                f"Maximal conductances of the {len(gbar)} twins of unit **{html.escape(str(unit_text))}** "
                "(mS/cm²): different combinations that share the unit's dynamic input conductances."
            )
            self.histogram_pane.object = plots.histograms_figure(unit_text, gbar, result.conductance_names)
            self.histogram_pane.visible = True
            self.twin_tools.set_unit(result, unit_id, unit_text)
        else:
            reason = (
                str(result.estimates.loc[unit_id].get("population_error", "") or "")
                if (unit_id in result.estimates.index)
                else ""
            )
            self.histogram_note.object = f"Unit **{html.escape(str(unit_text))}** has no twin population. {reason}"
            self.histogram_pane.visible = False
            self.twin_tools.set_unit(result, unit_id, unit_text)

    # ----------------------------------------------------------------------------------------------- cleanup
    def close(self) -> None:
        """Delete this session's files (uploads and results)."""
        shutil.rmtree(self.workdir, ignore_errors=True)


def create_app():
    """Build one session of the web app and return its page (a Panel template); ``page.dic_app`` is the
    :class:`DicApp` behind it."""
    pn.extension("tabulator", inline=True)
    app = DicApp()
    if DicApp._in_server():
        pn.state.on_session_destroyed(lambda context: app.close())
    app.template.dic_app = app
    return app.template


def _warm_up() -> None:
    """Import the heavy modules and compile the STG simulator once, so the first analysis is fast."""
    try:
        with _RUN_LOCK:
            from ..inference.predict import load_predictor
            from ..models import get_model
            from ..population import generate_population
            from ..simulate import simulate

            load_predictor("stg")
            model = get_model("stg")
            population = generate_population(model, g_s=-4.0, g_u=5.0, n=1, seed=0)
            simulate(model, population.gbar, duration_s=0.02, transient_s=0.01)
    except Exception:  # pragma: no cover - warm-up is an optimisation only
        _logger.exception("warm-up failed (the first analysis will be slower)")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def serve(port: int = 5006, open_browser: bool = True, address: str = "127.0.0.1", warm_up: bool = True, **kwargs):
    """Start the web app and block until interrupted (Ctrl+C).

    Parameters
    ----------
    port : int, default: 5006
    open_browser : bool, default: True
        Open the page in the default web browser.
    address : str, default: "127.0.0.1"
        Interface to listen on; the default accepts connections from this computer only.
    warm_up : bool, default: True
        Prepare the simulator in the background right away so that the first analysis is fast.
    **kwargs
        Passed to :func:`panel.serve`.

    Raises
    ------
    OSError
        When the port is taken ("Address already in use").
    """
    pn.config.inline = True
    origins = {f"{address}:{port}"}
    if address in ("127.0.0.1", "localhost", "::1"):
        origins |= {f"localhost:{port}", f"127.0.0.1:{port}"}
    options = {
        "port": port,
        "address": address,
        "title": TITLE,
        "websocket_origin": sorted(origins),
        "websocket_max_message_size": MAX_UPLOAD_BYTES,
        "verbose": False,
    }
    options.update(kwargs)
    options.update(show=False, start=False, threaded=False)
    global _SESSIONS_DIR
    server = pn.serve(create_app, **options)  # listens from here on: a taken port raises now
    _SESSIONS_DIR = Path(tempfile.mkdtemp(prefix="spikeinterface-dic-app-sessions-"))
    try:  # a plain `kill` (SIGTERM) stops the server like Ctrl+C, so that the session folders are removed
        previous_handler = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # pragma: no cover - not in the main thread
        previous_handler = None
    if warm_up:
        threading.Thread(target=_warm_up, name="spikeinterface-dic-warm-up", daemon=True).start()
    host = "127.0.0.1" if address in ("0.0.0.0", "", "::") else address
    url = f"http://{host}:{server.port}/"
    print(f"spikeinterface-dic app: {url}  (press Ctrl+C to stop)", flush=True)
    if open_browser:
        server.io_loop.add_callback(webbrowser.open, url)
    server.start()
    try:
        server.io_loop.start()  # returns on Ctrl+C (Panel stops the loop) or raises KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        shutil.rmtree(_SESSIONS_DIR, ignore_errors=True)
        _SESSIONS_DIR = None
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
        print("spikeinterface-dic app: stopped", flush=True)
