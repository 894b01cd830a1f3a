"""Quick start: DICs, twin populations and fidelity for the units of a CSV (Spike2Pop format, times in ms).

Run: python examples/quickstart.py [path/to/units.csv]
"""

import sys
from pathlib import Path

import spikeinterface_dic as sdic

path = (
    Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "tests/data/spike2pop_stg_set.csv"
)
trains = sdic.read_spike_trains(path)  # {unit_id: spike times in seconds}
result = sdic.run_pipeline(trains, model="stg", population_size=32, simulate=True, seed=0)

columns = ["label", "g_s", "g_s_std", "g_u", "g_u_std", "time_scale", "in_distribution"]
print(result.estimates[columns].round(2).to_string())
print(result.fidelity[["fraction_matching", "main_frequency_hz", "twin_main_frequency_hz"]].round(2).to_string())

units_csv, populations_csv, columns_csv = sdic.write_csv(result, "quickstart")
print(f"wrote {units_csv} and {populations_csv}")
