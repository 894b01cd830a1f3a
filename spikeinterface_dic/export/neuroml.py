"""NeuroML2 export (libNeuroML): channels, the calcium pool and one cell per twin, generated from the declaration.

What is expressed, and how
    Each gate of a channel is a ``gateHHtauInf`` whose steady state and time course are small LEMS ComponentTypes
    (extending ``baseVoltageDepVariable`` / ``baseVoltageDepTime``, or their ``ConcDep`` forms when the expression
    reads the calcium concentration) with the declaration's expression as a DerivedVariable: the STG and DA rate
    functions are not all of NeuroML's standard HH forms (e.g. tau = 1.32 - 1.26 / (1 + exp(...))), so every one is
    written out rather than fitted. Comparisons (DA's guard of a removable pole in tau_mNa) become LEMS ``H()``
    (Heaviside). Instantaneous gates (DA's Mg block of NMDA) are ``gateHHInstantaneous``. The time scale k multiplies
    every time constant (inside the ComponentType) and the specific capacitance (C k).
    STG calcium: a ``decayingPoolConcentrationModel`` (resting concentration beta, decay constant k tau) fed by the
    channels the declaration lists as its sources (ChannelDensity ion "ca", fixed erev = E_Ca: the model has no
    Nernst potential); its shell thickness is computed so that NeuroML's influx i_Ca / (2 F V_shell) equals the
    declaration's alpha I / (k tau) for the exported soma (area 100 um2). The model's calcium numbers are carried as
    mM, NeuroML's concentration unit, so KCa's Ca / (Ca + 3) reads the same numbers.

    Coupled gates (DA's 3-state ERG channel, whose relaxation targets read each other) become an ``ionChannelKS``:
    the transition rates are recovered symbolically from the declared relaxations (:mod:`.kinetic_scheme`; for ERG
    exactly Qian et al.'s a0, b0, a_i, b_i), each a ``baseVoltageDepRate`` ComponentType divided by k.

What is not expressed (skipped, listed in the document's notes and returned by :func:`unexpressed_channels`)
    Coupled gates that are not an affine system with non-negative rates (none in the STG and DA models), and the
    noise current of the kernel.

Validation: the document is checked by libNeuroML (``validate_neuroml2``) and against the NeuroML 2.3.1 XML schema
bundled with libNeuroML (lxml), offline. The files are not simulated here (jNeuroML / pyNeuroML are not dependencies):
the NEURON export is the cross-checked one.
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import numpy as np

from ..models import Model
from .expressions import Dialect, expression_names, print_expression

FARADAY_C_PER_MOL = 96485.33212
SOMA_AREA_UM2 = 100.0


class _LemsDialect(Dialect):
    power = "^"
    functions = {"exp": "exp", "abs": "abs"}

    def compare(self, kind: str, left: str, right: str) -> str:
        # H(x) is LEMS's Heaviside step; equality has measure zero in these models.
        return f"H({right} - {left})" if kind in ("lt", "le") else f"H({left} - {right})"


def unexpressed_channels(model: Model) -> dict:
    """{channel: reason} for the channels the NeuroML export skips (coupled gates that are not a kinetic scheme
    :func:`.kinetic_scheme.kinetic_scheme` can recover)."""
    from .kinetic_scheme import coupled_gates, kinetic_scheme

    skipped = {}
    for channel in model.channels:
        if not coupled_gates(model, channel):
            continue
        try:
            kinetic_scheme(model, channel)
        except ValueError as error:
            skipped[channel.name] = f"coupled gates that are not a kinetic scheme NeuroML can express ({error})"
    return skipped


def _rate_type(model: Model, channel, source: str, target: str, expression: str, time_scale: float):
    """A LEMS rate (baseVoltageDepRate, 1/time) of a kinetic-scheme transition, slowed by k."""
    import neuroml

    names = {"V": "(v / VOLT_SCALE)", **{name: float(value) for name, value in model.constants.items()}}
    value = print_expression(expression, _LemsDialect(names))
    return neuroml.ComponentType(
        name=f"{model.name}_{channel.name}_{source}_to_{target}" + f"_k{time_scale:g}".replace(".", "p"),
        extends="baseVoltageDepRate",
        Constant=[
            neuroml.Constant(name="VOLT_SCALE", dimension="voltage", value="1 mV"),
            neuroml.Constant(name="TIME_SCALE", dimension="time", value="1 ms"),
        ],
        Dynamics=[
            neuroml.Dynamics(
                DerivedVariable=[
                    neuroml.DerivedVariable(
                        name="r",
                        dimension="per_time",
                        exposure="r",
                        value=f"{value} / ({float(time_scale)!r} * TIME_SCALE)",
                    )
                ]
            )
        ],
    )


def _kinetic_channel(model: Model, channel, time_scale: float, component_types: list):
    """An ionChannelKS for a channel of coupled gates (one gateKS, its transitions as rate ComponentTypes)."""
    import neuroml

    from .kinetic_scheme import kinetic_scheme

    scheme = kinetic_scheme(model, channel)
    gate = neuroml.GateKS(
        id=f"{channel.name}_scheme",
        instances=1,
        open_states=[neuroml.OpenState(id=state) for state in scheme.open_states],
        closed_states=[neuroml.ClosedState(id=state) for state in scheme.states if state not in scheme.open_states],
    )
    pairs = sorted({tuple(sorted(pair)) for pair in scheme.rates})
    for first, second in pairs:
        transitions = []
        for source, target in ((first, second), (second, first)):
            rate = _rate_type(model, channel, source, target, scheme.rates.get((source, target), "0.0"), time_scale)
            component_types.append(rate)
            transitions.append(neuroml.HHRate(type=rate.name))  # written as <rate type=...> (see write_neuroml)
        identifier = f"{first}_{second}"
        gate.forward_transition.append(
            neuroml.ForwardTransition(id=identifier, from_=first, to=second, anytypeobjs_=[transitions[0]])
        )
        gate.reverse_transition.append(
            neuroml.ReverseTransition(id=identifier, from_=first, to=second, anytypeobjs_=[transitions[1]])
        )
    return neuroml.IonChannelKS(id=f"{model.name}_{channel.name}", conductance="10pS", gate_kses=[gate])


def _component_type(model: Model, gate, kind: str, expression: str, time_scale: float):
    import neuroml

    reads_concentration = any(c.name in expression_names(expression) for c in model.concentrations)
    names = {"V": "(v / VOLT_SCALE)", **{name: float(value) for name, value in model.constants.items()}}
    names.update({c.name: "(caConc / CONC_SCALE)" for c in model.concentrations})
    value = print_expression(expression, _LemsDialect(names))
    base = "baseVoltageConcDep" if reads_concentration else "baseVoltageDep"
    constants = [neuroml.Constant(name="VOLT_SCALE", dimension="voltage", value="1 mV")]
    if reads_concentration:
        constants.append(neuroml.Constant(name="CONC_SCALE", dimension="concentration", value="1 mM"))
    if kind == "steady":
        variable = neuroml.DerivedVariable(name="x", dimension="none", exposure="x", value=value)
        extends = f"{base}Variable"
    else:
        constants.append(neuroml.Constant(name="TIME_SCALE", dimension="time", value="1 ms"))
        variable = neuroml.DerivedVariable(
            name="t", dimension="time", exposure="t", value=f"{value} * {float(time_scale)!r} * TIME_SCALE"
        )
        extends = f"{base}Time"
    name = f"{model.name}_{gate.name}_{kind}" + (f"_k{time_scale:g}".replace(".", "p") if kind == "tau" else "")
    return neuroml.ComponentType(
        name=name, extends=extends, Constant=constants, Dynamics=[neuroml.Dynamics(DerivedVariable=[variable])]
    )


def _shell_thickness_um(concentration, time_scale: float) -> float:
    """Shell thickness giving NeuroML's decaying pool the declaration's influx alpha * I / (k tau) on a sphere of the
    soma's area (NeuroML: dC/dt = i_Ca / (2 F V_shell) - (C - rest) / decay; I in uA/cm2 = 1e-2 A/m2, C in mM =
    mol/m3, t in ms)."""
    influx_si = concentration.alpha / (time_scale * concentration.tau_ms) * 1e3 / 1e-2  # (mol/m3/s) per (A/m2)
    area_m2 = SOMA_AREA_UM2 * 1e-12
    shell_volume_m3 = area_m2 / (2.0 * FARADAY_C_PER_MOL * influx_si)
    radius_m = math.sqrt(area_m2 / (4.0 * math.pi))
    inner_m = (radius_m**3 - 3.0 * shell_volume_m3 / (4.0 * math.pi)) ** (1.0 / 3.0)
    return (radius_m - inner_m) * 1e6


def _k_suffix(time_scale: float) -> str:
    return f"_k{time_scale:g}".replace(".", "p").replace("-", "m")


def _channels_and_pools(model: Model, document, skipped: dict, time_scale: float, suffix: str, types: dict) -> dict:
    """Add the channels and concentration pools of one time scale to ``document`` (ids ending in ``suffix``); new
    ComponentTypes go to ``types`` (by name: the steady states are shared by every k). Returns the pools."""
    import neuroml

    from .kinetic_scheme import coupled_gates

    def keep(component_type):
        types.setdefault(component_type.name, component_type)
        return component_type

    for channel in model.channels:
        if channel.name in skipped:
            continue
        if coupled_gates(model, channel):
            kinetic_types: list = []
            ks = _kinetic_channel(model, channel, time_scale, kinetic_types)
            ks.id += suffix
            document.ion_channel_kses.append(ks)
            for component_type in kinetic_types:
                keep(component_type)
            continue
        ion = "ca" if any(channel.name in c.source_channels for c in model.concentrations) else "non_specific"
        hh = neuroml.IonChannelHH(
            id=f"{model.name}_{channel.name}{suffix}", conductance="10pS", species=ion if ion == "ca" else None
        )
        if not channel.gates:
            hh.type = "ionChannelPassive"
        for gate_name, power in channel.gates:
            gate = model.gate_by_name[gate_name]
            steady = keep(_component_type(model, gate, "steady", gate.inf, time_scale))
            if gate.tau_ms is None:
                hh.gate_hh_instantaneouses.append(
                    neuroml.GateHHInstantaneous(
                        id=gate_name, instances=power, steady_state=neuroml.HHVariable(type=steady.name)
                    )
                )
                continue
            tau = keep(_component_type(model, gate, "tau", gate.tau_ms, time_scale))
            hh.gate_hh_tau_infs.append(
                neuroml.GateHHTauInf(
                    id=gate_name,
                    instances=power,
                    time_course=neuroml.HHTime(type=tau.name),
                    steady_state=neuroml.HHVariable(type=steady.name),
                )
            )
        document.ion_channel_hhs.append(hh)
    pools = []
    for c in model.concentrations:
        pool = neuroml.DecayingPoolConcentrationModel(
            id=f"{model.name}_{c.name}_pool{suffix}",
            ion="ca",
            resting_conc=f"{float(c.beta)!r} mM",
            decay_constant=f"{float(c.tau_ms) * time_scale!r} ms",
            shell_thickness=f"{_shell_thickness_um(c, time_scale)!r} um",
        )
        document.decaying_pool_concentration_models.append(pool)
        pools.append((c, pool))
    return pools


def neuroml_document(model: Model, unit_id, gbar, indices, time_scale):
    """(NeuroMLDocument, {skipped channel: reason}). ``time_scale``: one k, or one per twin (twins drawn from the
    posterior); channels and pools are written once per distinct k (ids suffixed ``_k<k>`` when there are several)."""
    import neuroml

    skipped = unexpressed_channels(model)
    if len(model.concentrations) > 1:
        raise ValueError(f"model {model.name!r}: the NeuroML export handles one concentration (calcium) at most")
    time_scales = np.broadcast_to(np.asarray(time_scale, dtype=float), (len(gbar),))
    distinct = np.unique(time_scales)
    document = neuroml.NeuroMLDocument(id=f"{model.name}_twins_unit_{unit_id}".replace(" ", "_"))
    document.notes = (
        f"Twins of unit {unit_id} of model {model.name!r} (time scale k = "
        f"{', '.join(f'{k:g}' for k in distinct)}), generated by "
        f"spikeinterface-dic from the model declaration (sha256 {model.digest[:16]}...). Not expressed: "
        + ("; ".join(f"{name}: {reason}" for name, reason in skipped.items()) or "nothing")
        + "; the noise current."
    )
    types: dict = {}
    suffixes = {float(k): (_k_suffix(k) if distinct.size > 1 else "") for k in distinct}
    pools_by_k = {
        float(k): _channels_and_pools(model, document, skipped, float(k), suffixes[float(k)], types) for k in distinct
    }
    document.ComponentType.extend(types.values())
    diameter_um = math.sqrt(SOMA_AREA_UM2 / math.pi)  # lateral area pi d L = 100 um2 with L = d
    for row, index, k in zip(np.asarray(gbar, dtype=float), indices, time_scales, strict=True):
        suffix, pools = suffixes[float(k)], pools_by_k[float(k)]
        cell = neuroml.Cell(id=f"{model.name}_unit_{unit_id}_twin_{int(index)}".replace(" ", "_"))
        cell.morphology = neuroml.Morphology(id=f"{cell.id}_morphology")
        cell.morphology.segments.append(
            neuroml.Segment(
                id=0,
                name="soma",
                proximal=neuroml.Point3DWithDiam(x=0.0, y=0.0, z=0.0, diameter=diameter_um),
                distal=neuroml.Point3DWithDiam(x=diameter_um, y=0.0, z=0.0, diameter=diameter_um),
            )
        )
        densities = []
        for channel, conductance in zip(model.channels, row, strict=True):
            if channel.name in skipped:
                continue
            ion = "ca" if any(channel.name in c.source_channels for c in model.concentrations) else "non_specific"
            densities.append(
                neuroml.ChannelDensity(
                    id=f"{channel.name}_density",
                    ion_channel=f"{model.name}_{channel.name}{suffix}",
                    cond_density=f"{float(conductance)!r} mS_per_cm2",
                    erev=f"{float(model.constants[channel.reversal])!r} mV",
                    ion=ion,
                )
            )
        membrane = neuroml.MembraneProperties(
            channel_densities=densities,
            spike_threshes=[neuroml.SpikeThresh(value=f"{float(model.spike_up_mV)!r} mV")],
            specific_capacitances=[
                neuroml.SpecificCapacitance(value=f"{float(model.capacitance_uF_cm2) * float(k)!r} uF_per_cm2")
            ],
            init_memb_potentials=[neuroml.InitMembPotential(value=f"{float(model.v_init_mV)!r} mV")],
        )
        species = [
            neuroml.Species(
                id="ca",
                ion="ca",
                concentration_model=pool.id,
                initial_concentration=f"{float(c.initial)!r} mM",
                initial_ext_concentration="3.0 mM",  # unused: the channels have fixed reversal potentials
            )
            for c, pool in pools
        ]
        intracellular = neuroml.IntracellularProperties(
            species=species, resistivities=[neuroml.Resistivity(value="100.0 ohm_cm")]
        )
        cell.biophysical_properties = neuroml.BiophysicalProperties(
            id=f"{cell.id}_biophysics", membrane_properties=membrane, intracellular_properties=intracellular
        )
        document.cells.append(cell)
    return document, skipped


def validate(path: Path) -> None:
    """Raise ValueError unless ``path`` passes libNeuroML's validation and the bundled NeuroML 2.3.1 XML schema."""
    import neuroml
    from lxml import etree
    from neuroml.utils import validate_neuroml2

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "It's valid!"
        validate_neuroml2(str(path))
    schema_path = Path(neuroml.__file__).parent / "nml" / "NeuroML_v2.3.1.xsd"
    schema = etree.XMLSchema(etree.parse(str(schema_path)))
    document = etree.parse(str(path))
    if not schema.validate(document):
        errors = "; ".join(str(error) for error in list(schema.error_log)[:5])
        raise ValueError(f"{path} does not validate against {schema_path.name}: {errors}")


def _fix_kinetic_schemes(path: Path) -> None:
    """Two fixes of libNeuroML's output for kinetic schemes, which the NeuroML schema and LEMS need: each forward
    transition directly followed by its reverse (libNeuroML writes all forward ones first), and the rate element
    named ``rate`` (libNeuroML names it after its class, HHRate)."""
    from lxml import etree

    tree = etree.parse(str(path))
    namespace = tree.getroot().nsmap.get(None, "")
    tag = (lambda name: f"{{{namespace}}}{name}") if namespace else (lambda name: name)
    for gate in tree.iter(tag("gateKS")):
        forward = list(gate.iterfind(tag("forwardTransition")))
        reverse = list(gate.iterfind(tag("reverseTransition")))
        for element in forward + reverse:
            gate.remove(element)
            for rate in element.iterfind(tag("HHRate")):
                rate.tag = tag("rate")
        for first, second in zip(forward, reverse, strict=True):
            gate.append(first)
            gate.append(second)
    tree.write(str(path), xml_declaration=True, encoding="UTF-8", pretty_print=True)


def write_neuroml(model: Model, unit_id, gbar, indices, time_scale, folder: Path) -> list[Path]:
    """Write ``<model>_twins.cell.nml`` into ``folder`` and validate it; return [path]."""
    try:
        import neuroml  # noqa: F401
        from neuroml.writers import NeuroMLWriter
    except ImportError as error:
        raise ImportError("the NeuroML export needs libNeuroML: pip install libNeuroML") from error
    document, _ = neuroml_document(model, unit_id, gbar, indices, time_scale)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{model.name}_twins.cell.nml"
    temporary = folder / f".{path.name}.tmp"
    NeuroMLWriter.write(document, str(temporary))
    _fix_kinetic_schemes(temporary)
    try:
        validate(temporary)
    except Exception:
        temporary.unlink(missing_ok=True)
        raise
    temporary.replace(path)
    return [path]
