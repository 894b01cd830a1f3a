"""Command line: help, the bundled example, run with CSV and NWB outputs, bad inputs, generate-data and train.

Commands run in-process through ``main([...])`` (the simulator compiles once for the whole module); one test runs
the module as a subprocess to check the real exit code and stderr.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spikeinterface_dic import cli
from spikeinterface_dic.cli import main
from spikeinterface_dic.io import read_spike_trains

DATA = Path(__file__).parent / "data"
FAST = ["--population-size", "4", "--duration-s", "1.0", "--quiet"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _make_nwb(path: Path, spikes: dict) -> Path:
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.misc import Units

    nwbfile = NWBFile(
        session_description="units for the CLI tests",
        identifier="test-dic-cli",
        session_start_time=datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
    )
    nwbfile.units = Units(name="units", description="sorted units")
    for unit_id, times in spikes.items():
        nwbfile.add_unit(spike_times=np.asarray(times, dtype=float), id=unit_id)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def example_trains():
    return read_spike_trains(cli.example_path())


# ------------------------------------------------------------------------------------------------------ help
@pytest.mark.parametrize("command", [[], ["run"], ["example"], ["generate-data"], ["train"], ["compare"], ["app"]])
def test_help_of_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: spikeinterface-dic" in capsys.readouterr().out


def test_app_rejects_a_bad_port():
    with pytest.raises(SystemExit) as exit_info:
        main(["app", "--port", "0"])
    assert exit_info.value.code == 2


def test_bundled_example_is_small_and_readable(example_trains):
    assert cli.example_path().stat().st_size < 50_000
    assert len(example_trains) == 6 and not example_trains.problems
    assert all(len(train) > 50 for train in example_trains.values())


# --------------------------------------------------------------------------------------------------- example
def test_example_end_to_end(tmp_path, capsys):
    out = tmp_path / "example"
    assert main(["example", "--out", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    units = pd.read_csv(out / "example_results_units.csv")
    assert len(units) == 6 and {"g_s", "g_u", "time_scale", "label", "fraction_matching"} <= set(units.columns)
    assert len(pd.read_csv(out / "example_results_populations.csv")) == 6 * 4
    assert str(out) in printed and "example_results_units.csv" in printed and "bursting_slow_k3" in printed
    slow = units.set_index("unit_id").loc["bursting_slow_k3", "time_scale"]
    assert 2.0 < slow < 5.0  # simulated with time_scale=3


# ------------------------------------------------------------------------------------------------------- run
def test_run_csv_output(tmp_path, capsys):
    assert main(["run", str(cli.example_path()), "--out", str(tmp_path / "res.csv"), *FAST]) == 0
    printed = capsys.readouterr().out
    units = pd.read_csv(tmp_path / "res_units.csv")
    assert units["unit_id"].tolist() == list(read_spike_trains(cli.example_path()))
    assert (tmp_path / "res_populations.csv").is_file()
    for column in ("units", "labels", "in-distribution", "matching twins", "no twins", "targets clipped", "time (s)"):
        assert column in printed
    assert "example_units.csv" in printed and "ok" in printed


def test_run_with_a_known_time_scale(tmp_path, capsys):
    assert main(["run", str(cli.example_path()), "--out", str(tmp_path / "k.csv"), "--time-scale", "2", *FAST]) == 0
    units = pd.read_csv(tmp_path / "k_units.csv")
    assert np.allclose(units["time_scale"].dropna(), 2.0) and units["time_scale"].notna().any()
    with pytest.raises(SystemExit):
        main(["run", str(cli.example_path()), "--time-scale", "0"])
    assert "--time-scale" in capsys.readouterr().err


def test_run_nwb_output_is_an_enriched_copy(tmp_path, example_trains, capsys):
    from spikeinterface_dic.nwb import read_nwb_results

    spikes = {index: example_trains[name] for index, name in enumerate(["tonic", "bursting", "bursting_slow_k3"])}
    source = _make_nwb(tmp_path / "session.nwb", spikes)
    before = _sha256(source)
    out = tmp_path / "enriched" / "session_dic.nwb"
    assert main(["run", str(source), "--out", str(out), *FAST]) == 0
    assert _sha256(source) == before  # the input is never modified
    result = read_nwb_results(out)
    assert result.unit_ids == [0, 1, 2] and len(result.populations[1]) == 4
    assert list(result.estimates["label"]) == ["spiking", "bursting", "bursting"]
    assert read_spike_trains(out).keys() == spikes.keys()

    capsys.readouterr()
    assert main(["run", str(source), "--out", str(out), *FAST]) == 1  # exists: refuses without --overwrite
    error = capsys.readouterr().err
    assert len(_error_lines(error)) == 1 and "--overwrite" in error
    assert main(["run", str(source), "--out", str(out), "--overwrite", *FAST]) == 0

    assert main(["run", str(source), "--in-place", *FAST]) == 0
    assert _sha256(source) != before and read_nwb_results(source).unit_ids == [0, 1, 2]


def test_run_folder_output_on_test_data(tmp_path, capsys):
    inputs = [DATA / "spike2pop_stg_set.csv", DATA / "current_clamp_steps.csv"]
    out = tmp_path / "results"
    assert main(["run", *map(str, inputs), "--out", str(out), "--no-simulate", *FAST]) == 0
    printed = capsys.readouterr().out
    assert len(pd.read_csv(out / "spike2pop_stg_set_units.csv")) == 5
    clamp = pd.read_csv(out / "current_clamp_steps_units.csv")
    assert len(clamp) == 33 and "fraction_matching" not in clamp.columns  # --no-simulate
    assert "spike2pop_stg_set.csv" in printed and "current_clamp_steps.csv" in printed


def test_run_recurses_into_folders(tmp_path, capsys):
    folder = tmp_path / "in" / "nested"
    folder.mkdir(parents=True)
    (folder / "a.csv").write_bytes((DATA / "spike2pop_stg_set.csv").read_bytes())
    (folder / "notes.txt").write_text("not spike trains")
    (tmp_path / "in" / ".hidden.csv").write_text("ID,spiking_times\n")
    assert main(["run", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--no-simulate", *FAST]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_columns.csv", "a_populations.csv", "a_units.csv"]


# ------------------------------------------------------------------------------------------------ bad inputs
def test_missing_file_is_one_line_error(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.nwb"), *FAST]) == 1
    captured = capsys.readouterr()
    assert _error_lines(captured.err) == [f"spikeinterface-dic: error: input not found: {tmp_path / 'nope.nwb'}"]
    assert captured.out == ""


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(cli.CommandError, match="input not found"):
        main(["run", str(tmp_path / "nope.csv"), "--debug"])


def test_empty_units_table(tmp_path, capsys):
    source = _make_nwb(tmp_path / "empty.nwb", {})
    assert main(["run", str(source), "--out", str(tmp_path / "out"), *FAST]) == 1
    captured = capsys.readouterr()
    lines = _error_lines(captured.err)
    assert len(lines) == 1 and "empty.nwb" in lines[0] and "empty" in lines[0].split("empty.nwb", 1)[1]
    assert "Traceback" not in captured.err and captured.out == ""


def test_malformed_rows_are_reported_and_good_rows_processed(tmp_path, capsys):
    good = (DATA / "spike2pop_stg_set.csv").read_text().splitlines()
    lines = [good[0], good[1], '7,"[1.0, oops, 3.0]"', good[2], '8,"[5.0, 4.0, 3.0]"', "9"]
    source = tmp_path / "partly_bad.csv"
    source.write_text("\n".join(lines) + "\n")
    assert main(["run", str(source), "--out", str(tmp_path / "out"), "--no-simulate", *FAST]) == 0
    captured = capsys.readouterr()
    warnings = _error_lines(captured.err)
    assert len(warnings) == 3 and all("warning: " in line and "partly_bad.csv" in line for line in warnings)
    assert [line.split("partly_bad.csv: ")[1].split(":")[0] for line in warnings] == ["line 3", "line 5", "line 6"]
    assert "sorted" in warnings[1]  # unsorted times are sorted and said so (the same policy as every reader)
    units = pd.read_csv(tmp_path / "out" / "partly_bad_units.csv")
    assert units["unit_id"].tolist() == [1, 2, 8]


def test_one_corrupt_file_among_good_ones(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.nwb"
    corrupt.write_bytes(b"this is not an HDF5 file")
    source = DATA / "spike2pop_stg_set.csv"
    code = main(["run", str(source), str(corrupt), "--out", str(tmp_path / "out"), "--no-simulate", *FAST])
    captured = capsys.readouterr()
    assert code == 1
    assert (tmp_path / "out" / "spike2pop_stg_set_units.csv").is_file()
    assert "failed" in captured.out and "ok" in captured.out
    errors = _error_lines(captured.err)
    assert len(errors) == 1 and "corrupt.nwb" in errors[0]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--out", "x.nwb"], "names one output"),
        (["--in-place", "--out", "folder"], "--in-place"),
    ],
)
def test_inconsistent_outputs(tmp_path, capsys, arguments, message):
    inputs = [str(DATA / "spike2pop_stg_set.csv"), str(DATA / "current_clamp_steps.csv")]
    assert main(["run", *inputs, *arguments, "--quiet"]) == 1
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and message in lines[0]


def test_unusable_argument_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(DATA / "spike2pop_stg_set.csv"), "--population-size", "0"])
    assert exit_info.value.code == 2
    assert "positive integer" in capsys.readouterr().err


def test_subprocess_exit_code_and_stderr(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "spikeinterface_dic.cli", "run", str(tmp_path / "missing.csv")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 1
    assert _error_lines(completed.stderr) == [f"spikeinterface-dic: error: input not found: {tmp_path / 'missing.csv'}"]


# ----------------------------------------------------------------------------------------- generate-data, train
def test_generate_data_then_train(tmp_path, capsys):
    data = tmp_path / "data"
    arguments = [
        "--model",
        "stg",
        "--out",
        str(data),
        "--n-targets",
        "6",
        "--population-size",
        "3",
        "--chunk-size",
        "3",
        "--duration-s",
        "2.0",
        "--transient-s",
        "1.0",
        "--quiet",
    ]
    assert main(["generate-data", *arguments]) == 0
    assert sorted(p.name for p in data.glob("chunk_*.npz")) == ["chunk_00000.npz", "chunk_00001.npz"]
    assert "2 chunk(s)" in capsys.readouterr().out

    weights = tmp_path / "weights"
    code = main(
        [
            "train",
            str(data),
            "--out",
            str(weights),
            "--max-epochs",
            "1",
            "--batch-size",
            "4",
            "--width",
            "8",
            "--validation-fraction",
            "0.34",
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert code == 0
    assert {"stg.pt", "stg.json", "stg_reference.npz"} <= {p.name for p in weights.iterdir()}
    assert "trained stg for 1 epoch" in capsys.readouterr().out
    with np.load(weights / "stg_reference.npz") as reference:  # too few bursting trains for a time-scale library
        assert "library_shapes" not in reference

    assert main(["train", str(data), "--out", str(weights), "--model", "da", "--quiet"]) == 1
    assert "holds stg data" in capsys.readouterr().err
