"""Dask: units spread over a 2-worker LocalCluster give the local result; files are isolated from each other.

The cluster runs its 2 workers as threads of the test process (``processes=False``): worker processes would each
compile the simulator again (~10 s each, 45 s for this file on a loaded 2-core machine). Results still cross a
pickle round trip in one test, as they do between processes.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spikeinterface_dic import cli
from spikeinterface_dic.config import RunConfig
from spikeinterface_dic.distributed import (
    FileJob,
    file_jobs,
    local_client,
    process_files,
    run_pipeline_dask,
)
from spikeinterface_dic.io import read_spike_trains
from spikeinterface_dic.pipeline import run_pipeline
from spikeinterface_dic.result import merge_results

DATA = Path(__file__).parent / "data"
FAST = {"population_size": 4, "duration_s": 1.0, "seed": 3}


@pytest.fixture(scope="module")
def client():
    client = local_client(n_workers=2, processes=False)
    yield client
    cluster = client.cluster
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def spike_trains() -> dict:
    """11 units: the Spike2Pop STG set (int ids) and the bundled example (text ids, one at time scale 3)."""
    trains = dict(read_spike_trains(DATA / "spike2pop_stg_set.csv"))
    trains.update(read_spike_trains(cli.example_path()))
    return trains


def _assert_same_result(actual, expected) -> None:
    assert actual.equals(expected, rtol=0)
    pd.testing.assert_frame_equal(actual.estimates, expected.estimates)
    pd.testing.assert_frame_equal(actual.fidelity, expected.fidelity)
    assert list(actual.populations) == list(expected.populations)


def test_run_pipeline_dask_equals_local(client, spike_trains):
    kwargs = {**FAST, "noise_std_uA_cm2": 0.5}  # noisy twins: their noise must not depend on the chunk either
    local = run_pipeline(spike_trains, **kwargs)
    spread = run_pipeline_dask(spike_trains, client, RunConfig(**kwargs), units_per_task=4)
    _assert_same_result(spread, local)
    assert spread.unit_ids == list(spike_trains)
    assert spread.provenance["dask"]["n_tasks"] == 3
    assert set(spread.provenance["timings"]) == set(local.provenance["timings"])
    _assert_same_result(pickle.loads(pickle.dumps(spread)), local)  # what worker processes would send back

    through_pipeline = run_pipeline(spike_trains, client=client, **kwargs)  # the public entry point
    _assert_same_result(through_pipeline, local)


def test_process_files_isolates_a_corrupt_file_and_matches_local(client, tmp_path):
    corrupt = tmp_path / "corrupt.nwb"
    corrupt.write_bytes(b"\x89HDF\r\n not really")
    paths = [DATA / "spike2pop_stg_set.csv", corrupt, cli.example_path()]
    with_dask = process_files(paths, tmp_path / "dask", client=client, config=RunConfig(**FAST))
    here = process_files(paths, tmp_path / "local", config=RunConfig(**FAST))

    for summary in (with_dask, here):
        assert summary["file"].tolist() == [str(p) for p in paths]
        assert summary["status"].tolist() == ["ok", "failed", "ok"]
        assert summary["n_units"].tolist() == [5, 0, 6]
        assert summary.loc[1, "error"].startswith("cannot read the file") and "\n" not in summary.loc[1, "error"]
        assert (summary.loc[[0, 2], "error"] == "").all() and (summary["seconds"] > 0).all()
    for name in ("spike2pop_stg_set_units.csv", "spike2pop_stg_set_populations.csv", "example_units_units.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "dask" / name), pd.read_csv(tmp_path / "local" / name))
    assert not any(p.name.startswith("corrupt") for p in (tmp_path / "dask").iterdir())


def test_merge_results_keeps_unit_order(spike_trains):
    ids = list(spike_trains)
    parts = [run_pipeline({u: spike_trains[u] for u in ids[i : i + 5]}, simulate=False, **FAST) for i in (0, 5, 10)]
    merged = merge_results(parts)
    assert merged.unit_ids == ids and merged.fidelity.empty
    assert merged.provenance["timings"]["populations_s"] == pytest.approx(
        sum(p.provenance["timings"]["populations_s"] for p in parts)
    )
    with pytest.raises(ValueError, match="share unit ids"):
        merge_results([parts[0], parts[0]])


def test_file_jobs_names_outputs_uniquely(tmp_path):
    jobs = file_jobs([tmp_path / "a" / "units.csv", tmp_path / "b" / "units.csv"], tmp_path / "out")
    assert [Path(job.output).name for job in jobs] == ["units", "units_2"]
    nwb = file_jobs([tmp_path / "s.nwb"], tmp_path / "out", output_format="nwb")
    assert nwb == [FileJob(str(tmp_path / "s.nwb"), str(tmp_path / "out" / "s.nwb"), "nwb", False)]
    in_place = file_jobs([tmp_path / "s.nwb"], tmp_path / "ignored", output_format="nwb", in_place=True)
    assert in_place[0].output == str(tmp_path / "s.nwb")
    with pytest.raises(ValueError, match="NWB output only"):
        file_jobs([tmp_path / "s.csv"], tmp_path, in_place=True)


def test_nwb_output_needs_nwb_input(tmp_path):
    summary = process_files(
        [DATA / "spike2pop_stg_set.csv"], tmp_path, output_format="nwb", config=RunConfig(simulate=False, **FAST)
    )
    assert summary.loc[0, "status"] == "failed" and "NWB output needs an NWB input" in summary.loc[0, "error"]
    assert not any(tmp_path.iterdir())
    assert np.isnan(summary.loc[0, "fraction_matching"])
