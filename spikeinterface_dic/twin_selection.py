"""Twin selection: replace twins that miss the unit's pattern by further members drawn for the same DICs.

See :func:`select_matching_twins`; :func:`spikeinterface_dic.run_pipeline` and the SpikeInterface extension call it
after scoring the first population (``twin_selection=True``, the default).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .features import pattern_matches, spike_train_features
from .twin_simulation import fidelity_table, simulate_twins, unit_population

# Twin selection budget: candidates per round are 1.5 x missing / (acceptance so far), at most this many candidates
# per twin over all rounds, in at most SELECTION_ROUNDS rounds.
MAX_CANDIDATES_PER_TWIN = 16.0
SELECTION_ROUNDS = 3


def _candidate_count(size: int, matched: int, simulated: int, accepted: int, spent: int) -> int:
    """Candidates for the next round of one unit (0: stop). ``simulated``/``accepted``: members simulated so far
    (first population included) and how many of them matched; ``spent``: candidates already simulated."""
    missing = size - matched
    budget = int(MAX_CANDIDATES_PER_TWIN * size) - spent
    if missing <= 0 or budget <= 0:
        return 0
    if accepted == 0:
        # Nothing matched yet: one population's worth once, then give up (an unmatched unit is reported as such).
        return min(size, budget) if spent == 0 else 0
    return min(math.ceil(1.5 * missing * simulated / accepted), budget)


def select_matching_twins(
    config, spike_trains, populations: dict, twin_trains: dict, estimates: pd.DataFrame, fidelity: pd.DataFrame
):
    """Replace the twins that do not fire in the unit's pattern by further members, drawn for the same DICs, that do.

    Why: the DICs fix the excitability at threshold, not every detail of a conductance-based model's dynamics, so
    part of a degenerate population (same g_s, g_u) fires in another pattern or at another frequency. Spike2Pop
    returns them as they come; here each unit whose first population is not fully matching gets candidate members
    drawn for the SAME DIC target (same population generator, seed (seed, unit id, round)), simulated at the unit's
    (adapted) time scale, and its non-matching twins are replaced by matching candidates, in order. Units are never
    given twins of other DICs, and when too few candidates match, the unmatched first-population twins stay.

    Cost: rounds of ceil(1.5 m / a) candidates for a unit with m missing twins and acceptance a so far, at most
    ``MAX_CANDIDATES_PER_TWIN`` x population size in ``SELECTION_ROUNDS`` rounds; a unit none of whose first
    population matches gets one population's worth of candidates, then no more. The extra simulation is spent where
    it is needed: fully matching units cost nothing.

    Returns (populations, twin trains, fidelity), updated; fidelity gains ``fraction_matching_before_selection``,
    ``n_candidates`` (extra twins simulated) and ``candidate_acceptance`` (fraction of them that matched).
    """
    populations, twin_trains = dict(populations), dict(twin_trains)
    fidelity = fidelity.copy()
    fidelity["fraction_matching_before_selection"] = fidelity["fraction_matching"]
    fidelity["n_candidates"] = 0
    fidelity["candidate_acceptance"] = np.nan
    recorded = spike_train_features({u: np.asarray(spike_trains[u], dtype=float) for u in twin_trains})
    # Per unit: matching members kept so far (gbar blocks, trains), the first population's non-matching leftovers,
    # the population size, members simulated / accepted so far (first population included), candidates spent.
    state = {}
    for unit_id, twins in twin_trains.items():
        fraction = fidelity.loc[unit_id, "fraction_matching"]
        if not np.isfinite(fraction) or fraction >= 1.0 or len(twins) == 0:
            continue
        matches = pattern_matches(recorded.loc[unit_id], spike_train_features(twins), **config.pattern_tolerances())
        kept = np.flatnonzero(matches)
        leftovers = np.flatnonzero(~matches)
        state[unit_id] = dict(
            gbar=[populations[unit_id][kept]],
            trains=[twins[i] for i in kept],
            leftover_gbar=populations[unit_id][leftovers],
            leftover_trains=[twins[i] for i in leftovers],
            size=len(twins),
            simulated=len(twins),
            accepted=int(kept.size),
            spent=0,
            candidates_accepted=0,
        )
    for selection_round in range(1, SELECTION_ROUNDS + 1):
        candidates = {}
        for unit_id, unit in state.items():
            matched = len(unit["trains"])
            count = _candidate_count(unit["size"], matched, unit["simulated"], unit["accepted"], unit["spent"])
            if count == 0:
                continue
            gbar, _, _, _ = unit_population(config, unit_id, estimates.loc[unit_id], count, selection_round)
            if gbar is not None:  # the first population was reachable; a failure here only means no selection
                candidates[unit_id] = gbar
        if not candidates:
            break
        candidate_trains = simulate_twins(config, candidates, estimates, selection_round=selection_round)
        for unit_id in candidates:
            unit = state[unit_id]
            matches = pattern_matches(
                recorded.loc[unit_id], spike_train_features(candidate_trains[unit_id]), **config.pattern_tolerances()
            )
            take = np.flatnonzero(matches)[: unit["size"] - len(unit["trains"])]
            unit["gbar"].append(candidates[unit_id][take])
            unit["trains"] += [candidate_trains[unit_id][i] for i in take]
            unit["simulated"] += len(matches)
            unit["accepted"] += int(matches.sum())
            unit["candidates_accepted"] += int(matches.sum())
            unit["spent"] += len(matches)
    for unit_id, unit in state.items():
        fill = unit["size"] - len(unit["trains"])
        populations[unit_id] = np.concatenate(unit["gbar"] + [unit["leftover_gbar"][:fill]])
        twin_trains[unit_id] = unit["trains"] + unit["leftover_trains"][:fill]
        fidelity.loc[unit_id, "n_candidates"] = unit["spent"]
        fidelity.loc[unit_id, "candidate_acceptance"] = (
            unit["candidates_accepted"] / unit["spent"] if unit["spent"] else np.nan
        )
    changed = [u for u in state if state[u]["spent"]]
    if changed:
        rescored = fidelity_table(config, spike_trains, {u: twin_trains[u] for u in changed})
        for column in rescored.columns:
            fidelity.loc[changed, column] = rescored.loc[changed, column].to_numpy()
    return populations, twin_trains, fidelity
