"""Figure for docs/time_scale.md: one slowed burster, its twins before and after time-scale adaptation.

Run: python examples/plot_time_scale.py  (writes docs/time_scale.png)
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import spikeinterface_dic as sdic  # noqa: E402

S4 = list(sdic.get_model("stg").extra["example_sets"]["S4"])  # spec section 9
TRUE_K = 2.0

recorded = sdic.simulate("stg", [S4], duration_s=6.0, transient_s=3.0)[0] * TRUE_K  # a 2x slower burster
# Twin selection is off so that the panels show what adaptation alone does to one and the same population.
before = sdic.run_pipeline({"unit": recorded}, population_size=6, seed=0, adapt_time_scale=False, twin_selection=False)
after = sdic.run_pipeline({"unit": recorded}, population_size=6, seed=0, adapt_time_scale=True, twin_selection=False)
window = 6.0
fig, axes = plt.subplots(2, 1, figsize=(9, 4.5), sharex=True)
for axis, result, title in ((axes[0], before, "twins at the network's k"), (axes[1], after, "after adaptation")):
    k = result.estimates.loc["unit", "time_scale"]
    match = result.fidelity.loc["unit", "fraction_matching"]
    axis.eventplot([recorded[recorded < window]], lineoffsets=[0], colors="k", linelengths=0.8)
    twins = [t[t < window] for t in result.twin_spike_trains["unit"]]
    axis.eventplot(twins, lineoffsets=np.arange(1, len(twins) + 1), colors="tab:blue", linelengths=0.8)
    axis.set_yticks([0, 3.5], ["recorded", "twins"])
    axis.set_title(f"{title}: k = {k:.2f} (true {TRUE_K}), {100 * match:.0f} % of twins match", fontsize=10)
axes[1].set_xlabel("time (s)")
fig.tight_layout()
out = Path(__file__).resolve().parents[1] / "docs" / "time_scale.png"
fig.savefig(out, dpi=110)
print(f"wrote {out}")
for name, result in (("network k", before), ("adapted k", after)):
    row = result.estimates.loc["unit"]
    print(
        f"{name}: k = {row['time_scale']:.2f}, g_s = {row['g_s']:.1f}, g_u = {row['g_u']:.1f}, "
        f"matching = {result.fidelity.loc['unit', 'fraction_matching']:.2f}"
    )
