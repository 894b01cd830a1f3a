"""Outputs that do not mislead and are never lost: one writer per NWB file, and every output problem found before
anything is computed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spikeinterface_dic import cli

WRITER = textwrap.dedent(
    """
    import sys
    import spikeinterface_dic as sdic

    path, seed = sys.argv[1], int(sys.argv[2])
    trains = sdic.read_spike_trains(path)
    result = sdic.run_pipeline(dict(trains), simulate=False, population_size=2, seed=seed)
    try:
        sdic.write_nwb(result, path)
    except ValueError as error:
        print("refused:", error)
    else:
        print("ok")
    """
)


def _units_nwb(path):
    from pynwb import NWBHDF5IO, NWBFile

    nwbfile = NWBFile("two units", "lock-test", datetime(2024, 1, 1, tzinfo=timezone.utc))
    rng = np.random.default_rng(0)
    for unit in range(2):
        nwbfile.add_unit(spike_times=np.sort(rng.uniform(0, 20, 80)), id=unit)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path


def test_two_processes_enriching_one_nwb_never_both_succeed(tmp_path):
    path = _units_nwb(tmp_path / "session.nwb")
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(seed)], stdout=subprocess.PIPE, text=True)
        for seed in (1, 2)
    ]
    outputs = [writer.communicate(timeout=300)[0].strip().splitlines()[-1] for writer in writers]
    assert sorted(line.split(":")[0] for line in outputs) == ["ok", "refused"], outputs
    assert "already holds DIC results" in next(line for line in outputs if line.startswith("refused"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["session.nwb"]  # no lock or temporary file left


def _run(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_existing_csv_outputs_stop_the_run_before_computing(tmp_path, capsys, monkeypatch):
    import spikeinterface_dic.distributed as distributed

    (tmp_path / "res_units.csv").write_text("kept\n")
    monkeypatch.setattr(distributed, "run_pipeline", lambda *a, **k: pytest.fail("computed before checking outputs"))
    code, _, err = _run(["run", str(cli.example_path()), "--out", str(tmp_path / "res.csv")], capsys)
    assert code == 1 and "--overwrite" in err and "res_units.csv" in err
    assert (tmp_path / "res_units.csv").read_text() == "kept\n"


def test_enriched_nwb_input_needs_overwrite_before_computing(tmp_path, capsys, monkeypatch):
    import spikeinterface_dic as sdic
    import spikeinterface_dic.distributed as distributed

    path = _units_nwb(tmp_path / "session.nwb")
    result = sdic.run_pipeline(dict(sdic.read_spike_trains(path)), simulate=False, population_size=2)
    sdic.write_nwb(result, path)
    monkeypatch.setattr(distributed, "run_pipeline", lambda *a, **k: pytest.fail("computed before checking outputs"))
    code, _, err = _run(["run", str(path), "--out", str(tmp_path / "copy.nwb")], capsys)
    assert code == 1 and "already holds DIC results" in err and "--overwrite" in err and str(path) in err
    assert not (tmp_path / "copy.nwb").exists()


def test_unwritable_output_folder_is_named_before_computing(tmp_path, capsys, monkeypatch):
    import os

    import spikeinterface_dic.distributed as distributed

    if os.geteuid() == 0:
        pytest.skip("root can write into a read-only folder")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    monkeypatch.setattr(distributed, "run_pipeline", lambda *a, **k: pytest.fail("computed before checking outputs"))
    try:
        code, _, err = _run(["run", str(cli.example_path()), "--out", str(locked / "out")], capsys)
    finally:
        locked.chmod(0o700)
    assert code == 1 and "not writable" in err


def test_dic_plot_stays_legible_with_many_units():
    import matplotlib

    matplotlib.use("Agg")
    from spikeinterface.core import NumpySorting

    import spikeinterface_dic as sdic

    rng = np.random.default_rng(1)
    trains = {f"u{i}": np.sort(rng.uniform(0, 30, 150)) for i in range(60)}
    trains.update({f"few{i}": np.array([1.0, 2.0]) for i in range(20)})
    times = np.concatenate(list(trains.values()))
    labels = np.concatenate([[u] * len(t) for u, t in trains.items()])
    order = np.argsort(times, kind="stable")
    sorting = NumpySorting.from_times_and_labels([times[order]], [labels[order]], 30_000.0, unit_ids=list(trains))
    analyzer = sdic.create_sorting_analyzer_from_sorting(sorting)
    analyzer.compute("dynamic_input_conductances")
    widget = sdic.plot_dynamic_input_conductances(analyzer)
    texts = [t.get_text() for t in widget.ax.texts]
    assert not any(text.startswith("u") for text in texts)  # 60 points: no id labels on top of each other
    note = next(text for text in texts if text.startswith("no estimate"))
    assert "(20)" in note and "and 8 more" in note and len(note) < 200


def test_compare_intervals_outside_the_recording_are_refused(capsys):
    # The bundled example spans 6-18 s; milliseconds typed for seconds must not give a table of n/a.
    code, _, err = _run(["compare", str(cli.example_path()), "--intervals", "0:1500", "1500:3000"], capsys)
    assert code == 1 and "holds no spike" in err and "milliseconds" in err


def test_adapted_time_scale_keeps_a_calibrated_spread():
    import spikeinterface_dic as sdic

    trains = sdic.read_spike_trains(cli.example_path())
    inferred = sdic.infer_dics(dict(trains))
    result = sdic.run_pipeline(dict(trains), population_size=8, duration_s=2.0, seed=0)
    adapted = result.estimates["time_scale"] != result.estimates["time_scale_network"]
    assert adapted.any()
    relative = result.estimates["time_scale_std"] / result.estimates["time_scale"]
    expected = inferred["time_scale_std"] / inferred["time_scale"]
    np.testing.assert_allclose(relative[adapted], expected[adapted], rtol=1e-9)


def test_seconds_in_a_spike2pop_csv_stop_with_the_cli_option_to_say_so(tmp_path, capsys):
    import spikeinterface_dic as sdic

    trains = sdic.read_spike_trains(Path(__file__).parent / "data" / "spike2pop_stg_set.csv")
    source = tmp_path / "seconds.csv"
    rows = [f'{unit},"[{", ".join(repr(float(t)) for t in times)}]"' for unit, times in trains.items()]
    source.write_text("id,spiking_times\n" + "\n".join(rows) + "\n")  # seconds where ms are expected
    code, _, err = _run(["run", str(source), "--out", str(tmp_path / "a"), "--no-simulate"], capsys)
    assert code == 1 and "--time-unit s" in err and err.count("seconds.csv") == 1
    code, _, _ = _run(["run", str(source), "--out", str(tmp_path / "b"), "--no-simulate", "--time-unit", "s"], capsys)
    assert code == 0
    units = pd.read_csv(tmp_path / "b" / "seconds_units.csv")
    assert units["n_spikes"].tolist() == [len(t) for t in trains.values()]
