"""Web app of spikeinterface-dic for experimentalists who do not program (Panel + Bokeh).

Start it with ``spikeinterface-dic app`` (or :func:`serve`): load an NWB / CSV / neo file or the bundled example,
choose the model and the population size, run, look at the (g_s, g_u) plane, the twins' rasters and conductances and
their fidelity, and download the results as CSV (and NWB when the input was NWB). Everything is served from this
computer (``127.0.0.1`` by default), with no network access and no CDN. See ``docs/app.md``.

Needs the optional packages ``panel`` (which brings ``bokeh``).
"""

from .main import DicApp, create_app, example_data_path, serve

__all__ = ["DicApp", "create_app", "example_data_path", "serve"]
