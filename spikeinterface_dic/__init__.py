"""spikeinterface-dic: Dynamic Input Conductances and degenerate twin populations from spike times.

Heavy dependencies (torch, spikeinterface, pynwb, brian2, dask) are imported only where they are used, so
``import spikeinterface_dic`` stays fast; it also registers the SpikeInterface analyzer extensions when
SpikeInterface is installed.
"""

from .config import RunConfig
from .dic import compute_dics, compute_threshold, sensitivity_matrix
from .export import export_twins
from .features import isi_distance, pattern_matches, spike_train_features
from .inference.predict import infer_dics, sample_posterior
from .io import SpikeTrains, read_spike_trains, write_csv
from .models import get_model
from .nwb import read_nwb_results, write_nwb
from .pipeline import run_pipeline
from .population import Population, default_compensation_channels, generate_population, generate_spiking_population
from .result import PipelineResult
from .simulate import simulate
from .traces import twin_traces
from .version import __version__

__all__ = [
    "__version__",
    "get_model",
    "compute_dics",
    "compute_threshold",
    "sensitivity_matrix",
    "generate_population",
    "generate_spiking_population",
    "default_compensation_channels",
    "Population",
    "simulate",
    "spike_train_features",
    "isi_distance",
    "pattern_matches",
    "infer_dics",
    "sample_posterior",
    "run_pipeline",
    "RunConfig",
    "PipelineResult",
    "read_spike_trains",
    "SpikeTrains",
    "write_csv",
    "write_nwb",
    "read_nwb_results",
    "export_twins",
    "twin_traces",
]

try:  # SpikeInterface is optional at run time; when present, register the analyzer extensions
    import spikeinterface as _spikeinterface  # noqa: F401
except ImportError:
    pass
else:
    from .spikeinterface import create_sorting_analyzer_from_sorting, load_sorting_analyzer, register_extensions

    register_extensions()
    __all__ += ["create_sorting_analyzer_from_sorting", "load_sorting_analyzer"]


def __getattr__(name):
    # The widget pulls in SpikeInterface's widget machinery: load it only when asked for.
    if name == "plot_dynamic_input_conductances":
        from .spikeinterface.widgets import plot_dynamic_input_conductances

        return plot_dynamic_input_conductances
    raise AttributeError(f"module 'spikeinterface_dic' has no attribute {name!r}")
