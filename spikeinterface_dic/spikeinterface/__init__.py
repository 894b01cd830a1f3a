"""SpikeInterface integration: analyzer extensions, analyzers for sortings without a recording, a widget.

Importing ``spikeinterface_dic`` registers two ``SortingAnalyzer`` extensions:

- "dynamic_input_conductances" (:class:`ComputeDynamicInputConductances`): g_s, g_u and the time scale of every
  unit, with uncertainties, labels, out-of-distribution flags and refractory-violation counts.
- "twin_populations" (:class:`ComputeTwinPopulations`, depends on the first): degenerate twin populations, their
  simulated spike trains and fidelity.

The DIC extension also carries a sorting-quality gate (``sorting_quality_ok``, ``sorting_quality_reason``; see
:mod:`.quality_gate`) read from the analyzer's "quality_metrics" extension. :mod:`.ground_truth` builds probe
recordings of model neurons of known DICs (burst attenuation, drift) to validate a sorting pipeline
(docs/probe_ground_truth.md).

Example::

    import spikeinterface_dic as sdic

    analyzer = sdic.create_sorting_analyzer_from_sorting(sorting)   # or any SortingAnalyzer
    analyzer.compute("dynamic_input_conductances", model="stg")
    analyzer.compute("twin_populations", population_size=100, simulate=True, n_jobs=-1)
    analyzer.get_extension("dynamic_input_conductances").get_data()    # DataFrame indexed by unit_id
    analyzer.get_extension("twin_populations").get_population(unit_id)

Reloading: SpikeInterface does not discover third-party extensions. Load saved analyzers after
``import spikeinterface_dic`` (or with :func:`load_sorting_analyzer`); otherwise SpikeInterface only warns
"Extension 'dynamic_input_conductances' is unknown" and ``get_extension`` raises ``KeyError``.
"""

from .analyzer import create_sorting_analyzer_from_sorting, load_sorting_analyzer
from .extensions import (
    ComputeDynamicInputConductances,
    ComputeTwinPopulations,
    compute_dynamic_input_conductances,
    compute_twin_populations,
    register_extensions,
)
from .trains import infer_dics_segments, unit_spike_trains


def __getattr__(name):
    # The widget imports spikeinterface.widgets (and matplotlib): only on first use.
    if name in ("plot_dynamic_input_conductances", "DynamicInputConductancesWidget"):
        from . import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ComputeDynamicInputConductances",
    "ComputeTwinPopulations",
    "compute_dynamic_input_conductances",
    "compute_twin_populations",
    "create_sorting_analyzer_from_sorting",
    "load_sorting_analyzer",
    "register_extensions",
    "infer_dics_segments",
    "unit_spike_trains",
    "plot_dynamic_input_conductances",
    "DynamicInputConductancesWidget",
]
