"""Multi-unit analyses of DIC estimates: along the probe, putative cell classes, conditions and time courses.

- :func:`dics_along_probe`: every unit's (g_s, g_u, k) with its x / depth on the probe.
- :func:`classify_units`: putative classes, a Gaussian mixture on (g_s, g_u, ln k) with the estimates' variances
  deconvolved and the number of classes chosen by BIC; :func:`class_conductance_summary` compares the classes'
  twin conductances channel by channel; :func:`with_classes` adds them to a result (NWB column ``dic_class``).
- :func:`compare_conditions`: per-unit shifts between two conditions with z-tests corrected across units, and the
  channels the twins must change; :func:`split_by_intervals` cuts a recording into epochs; :func:`read_result`
  reads ``run``'s NWB / CSV outputs back and :func:`write_comparison` writes a comparison as CSV.
- :func:`dics_over_time`: windowed estimates for drift and neuromodulation time courses.
- ``plot_*``: matplotlib figures of each (matplotlib is imported only when a plot is drawn).

Example::

    import spikeinterface_dic as sdic
    from spikeinterface_dic.analysis import classify_units, dics_along_probe, plot_dics_along_probe

    analyzer.compute(["random_spikes", "templates", "unit_locations"])
    analyzer.compute("dynamic_input_conductances", model="stg")
    table = dics_along_probe(analyzer)
    classes = classify_units(table)
    classes.classes[["n_units", "g_s_mean", "g_u_mean", "depth_min_um", "depth_max_um"]]
    plot_dics_along_probe(table, classes=classes)
"""

from .classes import UnitClasses, class_conductance_summary, classify_units, with_classes
from .conditions import ConditionComparison, compare_conditions, split_by_intervals
from .mixture import MixtureFit, fit_mixture
from .plots import (
    plot_class_conductances,
    plot_condition_comparison,
    plot_dics_along_probe,
    plot_dics_over_time,
    plot_unit_classes,
)
from .probe import dics_along_probe
from .results_io import read_result, write_comparison
from .time_course import dics_over_time
from .trace_plots import plot_twin_traces, plot_twins_with_raster

__all__ = [
    "plot_twin_traces",
    "plot_twins_with_raster",
    "dics_along_probe",
    "classify_units",
    "UnitClasses",
    "class_conductance_summary",
    "with_classes",
    "compare_conditions",
    "ConditionComparison",
    "split_by_intervals",
    "read_result",
    "write_comparison",
    "dics_over_time",
    "fit_mixture",
    "MixtureFit",
    "plot_dics_along_probe",
    "plot_unit_classes",
    "plot_class_conductances",
    "plot_condition_comparison",
    "plot_dics_over_time",
]
