"""Trace recording: the trace kernel gives exactly the spike-only kernel's spikes, records physically consistent
currents, and twin_traces reproduces a run's stored twin trains.

Cost: ~20 s on 2 cores (trace kernels compile once per machine, then come from numba's disk cache).
"""

from pathlib import Path

import numpy as np
import pytest

import spikeinterface_dic as sdic
from spikeinterface_dic.models import get_model
from spikeinterface_dic.simulate import simulate
from spikeinterface_dic.simulate.codegen import kernel_source, record_names
from spikeinterface_dic.traces import twin_traces

EXAMPLE_UNITS = Path(sdic.__file__).parent / "data" / "example_units.csv"


def _example_sets(model):
    return np.array(list(get_model(model).extra["example_sets"].values()))


@pytest.mark.parametrize("model", ["stg", "da"])
@pytest.mark.parametrize("time_scale, noise_std", [(1.0, 0.0), (2.0, 1.5)])
def test_trace_run_gives_the_spike_only_spikes_exactly(model, time_scale, noise_std):
    gbar = _example_sets(model)
    kwargs = dict(duration_s=2.5 * time_scale, transient_s=1.0 * time_scale, time_scale=time_scale)
    kwargs.update(noise_std=noise_std, seed=11)
    spikes_only = simulate(model, gbar, **kwargs)
    with_traces, traces = simulate(model, gbar, record=[2, 0], record_every_ms=0.5, **kwargs)
    assert all(np.array_equal(a, b) for a, b in zip(spikes_only, with_traces, strict=True))
    assert sum(a.size for a in spikes_only) > 10
    assert traces.names == record_names(get_model(model))
    assert traces.data.shape == (2, traces.t_s.size, len(traces.names))
    assert traces.rows.tolist() == [2, 0]
    np.testing.assert_allclose(np.diff(traces.t_s), 0.5e-3, rtol=1e-9)  # real-time step, whatever k
    assert traces.t_s[0] == 0.0 and traces.t_s[-1] < 1.5 * time_scale
    # Every recorded spike of a row is a V excursion above the onset threshold in its trace.
    v = traces["V"][1]
    for spike in with_traces[0][:5]:
        near = np.abs(traces.t_s - spike) < 2e-3 * time_scale
        assert v[near].max() > get_model(model).spike_up_mV


def test_the_spike_only_kernel_source_is_unchanged_by_the_trace_option():
    model = get_model("stg")
    plain, traced = kernel_source(model, "staggered"), kernel_source(model, "staggered", record=True)
    assert "record_out" not in plain and "record_out" in traced
    # The trace kernel is the spike-only kernel plus read-only recording lines.
    assert set(plain.splitlines()) - set(traced.splitlines()) == {
        line for line in plain.splitlines() if line.startswith("           trace")
    }


def test_currents_are_the_declared_ohmic_currents():
    """At rest-like samples the recorded currents balance the membrane equation: C dV/dt = -sum(I) + I_noise."""
    model = get_model("stg")
    _, traces = simulate("stg", _example_sets("stg")[:1], duration_s=1.2, transient_s=1.0, record=[0])
    v = traces["V"][0]
    total = sum(traces[name][0] for name in traces.current_names) - traces["I_noise"][0]
    dv_dt = np.gradient(v, traces.t_s * 1000.0)
    slow = np.abs(dv_dt) < 0.5  # mV/ms: away from spikes, where the midpoint conductances equal those at t_n
    residual = model.capacitance_uF_cm2 * dv_dt[slow] + total[slow]
    assert np.median(np.abs(residual)) < 0.02 * np.median(np.abs(traces["I_leak"][0][slow]) + 1.0)
    ca = traces["Ca"][0]
    assert (ca > 0).all() and ca.max() > 2 * ca.min()  # calcium rises during spikes


def test_record_input_errors():
    gbar = _example_sets("stg")
    with pytest.raises(ValueError, match="row indices"):
        simulate("stg", gbar, duration_s=0.1, transient_s=0.0, record=[9])
    with pytest.raises(ValueError, match="not both"):
        simulate("stg", gbar, duration_s=0.1, transient_s=0.0, record=[0], return_voltage_of=0)
    with pytest.raises(ValueError, match="record_every_ms"):
        simulate("stg", gbar, duration_s=0.1, transient_s=0.0, record=[0], record_every_ms=0.0)
    with pytest.raises(ValueError, match="brian2"):
        simulate("stg", gbar, duration_s=0.1, transient_s=0.0, record=[0], backend="brian2")


@pytest.mark.parametrize(
    "settings",
    [
        # The default: twins drawn from the posterior, each with its own k (no noise: later rounds' seeds are not kept).
        dict(population_size=4, duration_s=1.5, seed=3),
        # Point sampling with noise, no twin selection: the first population's seeds.
        dict(population_size=4, duration_s=1.5, seed=3, twin_sampling="point", twin_selection=False, noise_std=0.5),
    ],
    ids=["posterior", "point-noise"],
)
def test_twin_traces_reproduce_the_stored_twin_trains(settings):
    trains = sdic.read_spike_trains(EXAMPLE_UNITS)
    units = list(trains)[:2]
    result = sdic.run_pipeline({u: trains[u] for u in units}, adapt_time_scale=False, **settings)
    unit = units[0]
    spikes, traces = twin_traces(result, unit, twins=[0, 3], record_every_ms=0.2)
    stored = result.twin_spike_trains[unit]
    assert sum(stored[i].size for i in (0, 3)) > 5
    for twin, train in zip([0, 3], spikes, strict=True):
        np.testing.assert_allclose(train, stored[twin], rtol=1e-12, atol=1e-12)
    assert traces["V"].shape[0] == 2 and np.nanmax(traces.t_s) < 1.5
    assert traces.values("V", 1).size == traces.time_of(1).size
    with pytest.raises(KeyError, match="no twin population"):
        twin_traces(result, "no-such-unit")
    with pytest.raises(ValueError, match="4 twins"):
        twin_traces(result, unit, twins=[4])


def test_twin_traces_after_time_scale_adaptation():
    """With an adapted k the stored trains were rescaled and cut at the window simulated before adaptation: they
    are the start of the regenerated ones."""
    trains = sdic.read_spike_trains(EXAMPLE_UNITS)
    unit = list(trains)[0]
    adapted = sdic.run_pipeline({unit: trains[unit]}, population_size=4, duration_s=1.5, seed=3, twin_sampling="point")
    spikes, _ = twin_traces(adapted, unit, twins=[1])
    stored = adapted.twin_spike_trains[unit][1]
    assert stored.size > 5
    np.testing.assert_allclose(spikes[0][: stored.size], stored, rtol=1e-12, atol=1e-12)


def test_trace_plots_draw():
    import matplotlib

    matplotlib.use("Agg")
    from spikeinterface_dic.analysis import plot_twin_traces, plot_twins_with_raster

    gbar = _example_sets("stg")
    trains, traces = simulate("stg", gbar, duration_s=1.5, transient_s=1.0, record=[0, 1], record_every_ms=0.2)
    figure = plot_twin_traces(traces, twin=1, window_s=(0.0, 0.3))
    assert len(figure.axes) == 3  # V, currents, calcium
    figure = plot_twins_with_raster(trains[2], trains[:2], traces, unit_label="u")
    assert len(figure.axes) == 3  # raster + two twins
