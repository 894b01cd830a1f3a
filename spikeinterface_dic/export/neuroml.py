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

What is not expressed (skipped, listed in the document's notes and returned by :func:`write_neuroml`)
    Channels with a gate whose relaxation target reads another gate (DA's 3-state ERG channel: do/dt and di/dt are
    coupled). NeuroML2 expresses such a channel as a kinetic scheme (``ionChannelKS``) with one transition per rate
    pair; that translation is not generated here, so DA cells lack the ERG current and are NOT the twins' dynamics.
    The noise current of the kernel is not exported.

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
    """{channel: reason} for the channels the NeuroML export skips."""
    gate_names = {gate.name for gate in model.gates}
    skipped = {}
    for channel in model.channels:
        for gate_name, _ in channel.gates:
            gate = model.gate_by_name[gate_name]
            coupled = expression_names(gate.dynamic_inf or gate.inf) & gate_names
            if coupled:
                skipped[channel.name] = (
                    f"gate {gate_name}'s relaxation target reads gate(s) {', '.join(sorted(coupled))} (a coupled "
                    "kinetic scheme; NeuroML needs an ionChannelKS, not generated)"
                )
    return skipped


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


def neuroml_document(model: Model, unit_id, gbar, indices, time_scale: float):
    """(NeuroMLDocument, {skipped channel: reason})."""
    import neuroml

    skipped = unexpressed_channels(model)
    if len(model.concentrations) > 1:
        raise ValueError(f"model {model.name!r}: the NeuroML export handles one concentration (calcium) at most")
    document = neuroml.NeuroMLDocument(id=f"{model.name}_twins_unit_{unit_id}".replace(" ", "_"))
    document.notes = (
        f"Twins of unit {unit_id} of model {model.name!r} (time scale k = {time_scale!r}), generated by "
        f"spikeinterface-dic from the model declaration (sha256 {model.digest[:16]}...). Not expressed: "
        + ("; ".join(f"{name}: {reason}" for name, reason in skipped.items()) or "nothing")
        + "; the noise current."
    )
    component_types = []
    for channel in model.channels:
        if channel.name in skipped:
            continue
        channel_id = f"{model.name}_{channel.name}"
        ion = "ca" if any(channel.name in c.source_channels for c in model.concentrations) else "non_specific"
        hh = neuroml.IonChannelHH(id=channel_id, conductance="10pS", species=ion if ion == "ca" else None)
        if not channel.gates:
            hh.type = "ionChannelPassive"
        for gate_name, power in channel.gates:
            gate = model.gate_by_name[gate_name]
            steady = _component_type(model, gate, "steady", gate.inf, time_scale)
            component_types.append(steady)
            if gate.tau_ms is None:
                hh.gate_hh_instantaneouses.append(
                    neuroml.GateHHInstantaneous(
                        id=gate_name, instances=power, steady_state=neuroml.HHVariable(type=steady.name)
                    )
                )
                continue
            tau = _component_type(model, gate, "tau", gate.tau_ms, time_scale)
            component_types.append(tau)
            hh.gate_hh_tau_infs.append(
                neuroml.GateHHTauInf(
                    id=gate_name,
                    instances=power,
                    time_course=neuroml.HHTime(type=tau.name),
                    steady_state=neuroml.HHVariable(type=steady.name),
                )
            )
        document.ion_channel_hhs.append(hh)
    document.ComponentType.extend(component_types)
    pools = []
    for c in model.concentrations:
        pool = neuroml.DecayingPoolConcentrationModel(
            id=f"{model.name}_{c.name}_pool",
            ion="ca",
            resting_conc=f"{float(c.beta)!r} mM",
            decay_constant=f"{float(c.tau_ms) * time_scale!r} ms",
            shell_thickness=f"{_shell_thickness_um(c, time_scale)!r} um",
        )
        document.decaying_pool_concentration_models.append(pool)
        pools.append((c, pool))
    diameter_um = math.sqrt(SOMA_AREA_UM2 / math.pi)  # lateral area pi d L = 100 um2 with L = d
    for row, index in zip(np.asarray(gbar, dtype=float), indices, strict=True):
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
                    ion_channel=f"{model.name}_{channel.name}",
                    cond_density=f"{float(conductance)!r} mS_per_cm2",
                    erev=f"{float(model.constants[channel.reversal])!r} mV",
                    ion=ion,
                )
            )
        membrane = neuroml.MembraneProperties(
            channel_densities=densities,
            spike_threshes=[neuroml.SpikeThresh(value=f"{float(model.spike_up_mV)!r} mV")],
            specific_capacitances=[
                neuroml.SpecificCapacitance(value=f"{float(model.capacitance_uF_cm2) * time_scale!r} uF_per_cm2")
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


def write_neuroml(model: Model, unit_id, gbar, indices, time_scale: float, folder: Path) -> list[Path]:
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
    try:
        validate(temporary)
    except Exception:
        temporary.unlink(missing_ok=True)
        raise
    temporary.replace(path)
    return [path]
