"""The web app's callbacks and figures, without a browser (the browser test is tests/browser/test_app_e2e.py)."""

from __future__ import annotations

import dataclasses
import signal
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

pn = pytest.importorskip("panel", reason="the web app needs panel (pip install panel)")

from bokeh.models import HoverTool  # noqa: E402

from spikeinterface_dic import get_model, read_spike_trains  # noqa: E402
from spikeinterface_dic.app import DicApp, create_app, example_data_path, plots  # noqa: E402
from spikeinterface_dic.app import main as app_main  # noqa: E402

EXAMPLE_UNITS = {"tonic", "tonic_fast", "bursting", "bursting_strong", "bursting_slow_k3", "bursting_noisy"}


@pytest.fixture
def app():
    app = DicApp()
    yield app
    app.close()


@pytest.fixture(scope="module")
def ran_app():
    """The example, run once with small populations and simulation on (shared by the result tests)."""
    page = create_app()
    app = page.dic_app
    assert app.load_example()
    app.population_input.value = 4
    assert app.run(), app.alert.object
    yield app
    app.close()


def _hover_tooltips(figure) -> str:
    return " ".join(str(t) for tool in figure.tools if isinstance(tool, HoverTool) for t in tool.tooltips)


def test_example_data_is_found():
    path = example_data_path()
    assert path is not None and path.is_file()
    assert len(read_spike_trains(path)) > 0


def test_create_app_returns_a_page_with_its_controller():
    page = create_app()
    try:
        assert isinstance(page, pn.template.BaseTemplate)
        assert isinstance(page.dic_app, DicApp)
        assert page.dic_app.run_button.disabled  # nothing loaded yet
        assert page.dic_app.population_input.value == 16
        assert page.dic_app.simulate_checkbox.value is True
    finally:
        page.dic_app.close()


def test_load_example_fills_the_units_table(app):
    assert app.load_example()
    table = app.units_table.value
    assert list(table.columns) == ["unit", "spikes", "rate (Hz)", "firing pattern"]
    assert set(table["unit"]) == EXAMPLE_UNITS
    assert (table["spikes"] > 0).all() and (table["rate (Hz)"] > 0).all()
    assert set(table["firing pattern"]) == {"spiking", "bursting"}
    assert app.units_card.visible and not app.alert.visible
    assert not app.run_button.disabled
    assert app.model_select.value == "stg"


def test_run_shows_every_result(ran_app):
    app = ran_app
    result = app.result
    assert app.results.visible and not app.alert.visible and not app.busy
    assert set(map(str, result.estimates.index)) == EXAMPLE_UNITS
    assert "6 unit(s)" in app.summary.object
    # the plane: every unit, error bars and hover with the unit and its values
    plane = app.plane_pane.object
    tooltips = _hover_tooltips(plane)
    for field in ("@unit", "@g_s_text", "@g_u_text", "@status"):
        assert field in tooltips
    data = plots.plane_data(result)
    assert set(data["unit"]) == EXAMPLE_UNITS
    assert np.all(data["g_s_low"] <= data["g_s"]) and np.all(data["g_s"] <= data["g_s_high"])
    # the estimates and fidelity tables
    assert set(app.estimates_table.value["unit"]) == EXAMPLE_UNITS
    fidelity = app.fidelity_table.value
    assert set(fidelity["unit"]) == EXAMPLE_UNITS and fidelity["fraction_matching"].between(0, 1).all()
    # the selected unit: raster and histograms of its twins
    assert app.unit_select.value in EXAMPLE_UNITS
    assert app.raster_pane.object is not None and app.histogram_pane.visible
    # downloads: the CSV files exist and hold the results; no NWB for a CSV input
    units = pd.read_csv(app.units_download.file)
    assert app.units_download.filename == "example_units_dic_units.csv"
    assert set(units["unit_id"]) == EXAMPLE_UNITS
    assert {"g_s", "g_u", "g_s_std", "g_u_std", "label", "in_distribution", "fraction_matching"} <= set(units)
    populations = pd.read_csv(app.populations_download.file)
    assert len(populations) == 4 * len(EXAMPLE_UNITS)
    assert not app.nwb_download.visible


def test_selecting_a_unit_updates_its_views(ran_app):
    app = ran_app
    app.unit_select.value = "bursting_slow_k3"
    assert "bursting_slow_k3" in app.raster_pane.object.title.text
    assert "bursting_slow_k3" in app.histogram_note.object
    ring = app._highlight.data
    estimate = app.result.estimates.loc["bursting_slow_k3"]
    assert ring["g_s"] == [pytest.approx(estimate["g_s"])] and ring["g_u"] == [pytest.approx(estimate["g_u"])]
    # a click on a row of the estimates table selects that unit too
    row = list(app.estimates_table.value["unit"]).index("tonic")
    app._on_estimates_click(type("Event", (), {"row": row})())
    assert app.unit_select.value == "tonic"


def test_out_of_distribution_units_are_marked(ran_app):
    result = ran_app.result
    estimates = result.estimates.copy()
    estimates.loc["tonic", "in_distribution"] = False
    estimates.loc["tonic", "ood_reason"] = "rate far from the training set"
    changed = dataclasses.replace(result, estimates=estimates)
    _, _, (inside, outside) = plots.plane_figure(changed, get_model("stg"))
    assert outside.data["unit"] == ["tonic"] and "tonic" not in inside.data["unit"]
    assert "rate far from the training set" in outside.data["status"][0]
    output = app_main.RunOutput(changed, ran_app.output.units_csv, ran_app.output.populations_csv, None, "", 1.0)
    ran_app.show_result(output)
    try:
        assert ran_app.ood_alert.visible and "rate far from the training set" in ran_app.ood_alert.object
        assert "1 out of distribution" in ran_app.summary.object
    finally:
        ran_app.show_result(app_main.RunOutput(result, output.units_csv, output.populations_csv, None, "", 1.0))


def test_unreadable_upload_shows_an_error(app):
    assert not app.load_upload("notes.txt", b"this is not a recording\n")
    assert app.alert.visible and "Could not read" in app.alert.object and "notes.txt" in app.alert.object
    assert app.run_button.disabled and not app.units_card.visible
    # the upload callback itself never raises either
    app.file_input.filename = "garbage.nwb"
    app._on_upload(type("Event", (), {"new": b"\x00\x01garbage"})())
    assert app.alert.visible and "garbage.nwb" in app.alert.object


def test_file_without_units_shows_an_error(app):
    assert not app.load_upload("empty.csv", b"ID,spiking_times\n")
    assert app.alert.visible and "empty.csv" in app.alert.object


def test_all_silent_units_are_refused_in_plain_words(app):
    content = b'ID,spiking_times\na,"[]"\nb,"[5.0]"\n'
    assert not app.load_upload("silent.csv", content)
    assert app.alert.visible and "silent" in app.alert.object and "nothing to analyse" in app.alert.object
    assert app.run_button.disabled
    assert not app.run()  # running anyway is refused with a message, not an exception
    assert app.alert.visible and "silent" in app.alert.object


def test_some_silent_units_are_announced(app):
    example = example_data_path().read_text()
    content = (example.rstrip("\n") + '\nquiet,"[1.0, 2.0]"\n').encode()
    assert app.load_upload("with_quiet.csv", content)
    assert app.notice.visible and "quiet" in app.notice.object
    assert not app.alert.visible and not app.run_button.disabled


def test_run_without_data_or_with_bad_settings_explains(app):
    assert not app.run()
    assert "Load a file" in app.alert.object
    assert app.load_example()
    app.population_input.value = 0
    app._on_run_click()  # outside a server the button runs synchronously; it never raises
    assert "population size" in app.alert.object and not app.busy
    app.population_input.value = 2
    app.k_low_input.value = 3.0
    app._on_run_click()
    assert "both ends of the time-scale range" in app.alert.object
    app.k_high_input.value = 2.0
    app._on_run_click()
    assert "0 &lt; from &lt; to" in app.alert.object and not app.busy
    app.k_low_input.value, app.k_high_input.value = 0.5, 4.0
    assert app._prepare_run()["config"].time_scale_range == (0.5, 4.0)
    assert app._prepare_run()["config"].span_source is None  # unknown unless the user says
    app.span_select.value = "recording"
    assert app._prepare_run()["config"].span_source == "recording"


def test_a_failing_analysis_is_reported(app, monkeypatch):
    import spikeinterface_dic.pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("the simulator exploded")

    monkeypatch.setattr(spikeinterface_dic.pipeline, "run_pipeline", broken)
    assert app.load_example()
    assert not app.run()
    assert "analysis failed" in app.alert.object and "simulator exploded" in app.alert.object
    assert not app.busy and not app.run_button.disabled and not app.results.visible


def _make_nwb(path, trains: dict) -> None:
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.misc import Units

    nwbfile = NWBFile(
        session_description="app test",
        identifier="app-test",
        session_start_time=datetime(2024, 1, 2, tzinfo=timezone.utc),
    )
    nwbfile.units = Units(name="units", description="sorted units")
    for unit_id, times in trains.items():
        nwbfile.add_unit(spike_times=times, id=unit_id)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)


def test_nwb_upload_offers_an_enriched_nwb_file(app, tmp_path):
    pytest.importorskip("pynwb")
    from spikeinterface_dic import read_nwb_results

    example = read_spike_trains(example_data_path())
    trains = {i: example[name] for i, name in enumerate(["tonic", "bursting"])}
    source = tmp_path / "session.nwb"
    _make_nwb(source, trains)
    assert app.load_upload("session.nwb", source.read_bytes()), app.alert.object
    assert app.input_is_nwb
    app.population_input.value = 3
    app.simulate_checkbox.value = False
    assert app.run(), app.alert.object
    assert app.nwb_download.visible and app.nwb_download.filename == "session_dic.nwb"
    back = read_nwb_results(app.nwb_download.file)
    assert sorted(map(int, back.estimates.index)) == [0, 1]
    assert "Simulation was off" in app.fidelity_note.object and not app.fidelity_table.visible
    app.unit_select.value = "1"  # NWB ids are integers; the selector shows them as text
    assert app.raster_pane.object is not None


def test_figures_build_from_plain_data():
    raster = plots.raster_figure("u", [0.1, 0.2, 0.9], [np.array([0.0, 0.5]), np.array([])], window_s=1.0)
    assert "u" in raster.title.text and "@row" in _hover_tooltips(raster)
    alone = plots.raster_figure("v", [0.1, 0.2], [], window_s=None)
    assert "0 twin" in alone.title.text
    grid = plots.histograms_figure("u", np.ones((3, 2)), ("Na", "leak"))
    assert len(grid.children) == 2


def test_serve_is_local_only_and_inline(monkeypatch, capsys):
    calls = {}

    class FakeLoop:
        def add_callback(self, function, *args):
            calls["browser"] = (function, args)

        def start(self):
            raise KeyboardInterrupt  # Ctrl+C

    class FakeServer:
        port = 5123
        io_loop = FakeLoop()

        def start(self):
            calls["started"] = True

        def stop(self):
            calls["stopped"] = True

    def fake_serve(panels, **kwargs):
        calls["panels"] = panels
        calls.update(kwargs)
        return FakeServer()

    monkeypatch.setattr(app_main.pn, "serve", fake_serve)
    previous_handler = signal.getsignal(signal.SIGTERM)
    app_main.serve(port=5123, open_browser=True, warm_up=False)
    assert calls["panels"] is create_app
    assert calls["address"] == "127.0.0.1" and calls["port"] == 5123 and calls["show"] is False
    assert "127.0.0.1:5123" in calls["websocket_origin"] and "localhost:5123" in calls["websocket_origin"]
    assert calls["started"] and calls["stopped"]
    assert calls["browser"][1] == ("http://127.0.0.1:5123/",)
    assert signal.getsignal(signal.SIGTERM) is previous_handler  # restored
    assert app_main._SESSIONS_DIR is None
    assert "http://127.0.0.1:5123/" in capsys.readouterr().out
    assert pn.config.inline is True


def test_twin_tools_show_traces_and_export(ran_app):
    """The selected unit's twins: voltage traces on request and a zip of model files (docs/export.md)."""
    import io
    import zipfile

    tools = ran_app.twin_tools
    unit = next(str(u) for u in ran_app.result.populations)
    ran_app.unit_select.value = unit
    assert tools.view.visible and tools.twin_choice.value == "0,1,2"
    assert tools.show_traces(), tools.traces_note.object
    assert tools.traces_box.visible and tools.traces_pane.object is not None
    tools.format_select.value = "neuron"
    names = zipfile.ZipFile(io.BytesIO(tools._export().getvalue())).namelist()
    assert "twins_neuron.py" in names and "twins.json" in names
    assert tools.export_download.filename.endswith("_neuron.zip")
    tools.twin_choice.value = "0,99"
    assert not tools.show_traces() and "twins" in tools.traces_note.object
