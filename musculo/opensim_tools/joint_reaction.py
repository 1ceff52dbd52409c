"""Joint reaction loads from a method's muscle forces (OpenSim AnalyzeTool + JointReaction).

OpenSim's JointReaction analysis, given a ``forces_file``, overrides every actuator's force with the
file's value at each frame, computes the accelerations of the model under those forces, the
external loads and gravity, and reports the load each requested joint transmits to its child body.
It uses the forces file only when the file has a column for EVERY actuator of the model; otherwise
it silently falls back to forces from the model's states. :func:`actuator_forces` therefore builds a
complete forces table before the tool runs, and the stage checks it.

The actuators are the model's muscles plus the reserve and residual CoordinateActuators that static
optimization adds (the same names, from :func:`musculo.opensim_tools.static_optimization.reserve_force_set`).
Their forces come from the method's forces file; muscles and actuators it lacks (an estimator that
models a subset of the muscles, and the reserves and residuals) take static optimization's force
(``so_force.sto``) at the same time.

Moment closure: static optimization's muscle, reserve and residual forces reproduce the inverse
dynamics moments, so the model follows the measured motion. Another method's muscle forces give
other joint moments; applied as they are, JointReaction's forward dynamics would accelerate the
segments away from the measured motion and the reactions would carry those spurious inertial
loads. Each reserve (a pure generalized force on its coordinate, which adds no force to any
joint reaction) therefore also takes ``-sum_m r_mc (F_m - F_m^SO)``: the difference between the
method's muscle moments and SO's, with moment arms ``r_mc`` computed by OpenSim on the trial's
coordinates. The summary reports the largest closure per coordinate (N m): a large one means the
method's muscles do not produce the measured joint moments.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from musculo import logger
from musculo.errors import InputDataError
from musculo.io.tables import covers, read_sto, write_sto
from musculo.opensim_tools.common import (
    OpenSimToolError,
    OutputCheckError,
    PathLike,
    check_table,
    import_opensim,
    is_rotational,
    load_model,
    publish,
    require_file,
    route_opensim_log,
    table_times,
    work_dir,
)
from musculo.opensim_tools.inverse_dynamics import check_external_loads
from musculo.opensim_tools.muscle_analysis import spanned_coordinates
from musculo.opensim_tools.static_optimization import reserve_force_set

#: joint kind -> stem of the coordinate that identifies the joint (side suffix ``_r`` / ``_l`` added)
DEFAULT_JOINTS: dict[str, str] = {"hip": "hip_flexion", "knee": "knee_angle", "ankle": "ankle_angle"}


def joints_by_coordinate(model: Any, coordinates: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """The model joints owning each coordinate: ``{key: {joint, child, coordinate}}``.

    ``coordinates`` maps a key (e.g. ``knee_r``) to a coordinate name (``knee_angle_r``); keys
    whose coordinate the model lacks are left out. ``child`` is the base body of the joint's child
    frame (the tibia for the knee), in which the reaction is expressed.
    """
    owner: dict[str, Any] = {}
    for joint in model.getJointSet():
        for i in range(joint.numCoordinates()):
            owner[joint.get_coordinates(i).getName()] = joint
    found: dict[str, dict[str, str]] = {}
    for key, coord in coordinates.items():
        joint = owner.get(coord)
        if joint is None:
            continue
        found[key] = {
            "joint": joint.getName(),
            "child": joint.getChildFrame().findBaseFrame().getName(),
            "coordinate": coord,
        }
    return found


def actuator_forces(
    *,
    actuators: Sequence[str],
    forces: pd.DataFrame,
    fallback: pd.DataFrame | None,
    source: PathLike = "forces",
    fallback_source: PathLike = "so_force.sto",
) -> tuple[pd.DataFrame, list[str]]:
    """A table with one column per actuator, on the time base of ``forces``.

    Each actuator takes its column of ``forces`` when there is one, else the column of
    ``fallback`` linearly interpolated at the same times. Frames of ``forces`` outside the
    fallback's time span are dropped when any column comes from the fallback. Returns the table
    and the actuators taken from the fallback.
    """
    forces = forces[~forces.index.duplicated()].sort_index()
    missing = [a for a in actuators if a not in forces.columns]
    if not missing:
        return forces[list(actuators)].astype(float), []
    if fallback is None:
        raise InputDataError(
            f"{source}: no column for actuators {missing[:8]}{'...' if len(missing) > 8 else ''} "
            f"and no static-optimization forces to take them from; pass so_forces_sto"
        )
    absent = [a for a in missing if a not in fallback.columns]
    if absent:
        raise InputDataError(
            f"{source} and {fallback_source}: neither has a column for actuators {absent[:8]}; "
            f"are they from the same model? Rerun static optimization on this model"
        )
    fallback = fallback[~fallback.index.duplicated()].sort_index()
    ft = fallback.index.to_numpy(dtype=float)
    keep = (forces.index >= ft[0] - 1e-9) & (forces.index <= ft[-1] + 1e-9)
    table = forces.loc[keep]
    if len(table) < 2:
        raise InputDataError(
            f"{source}: its frames ({forces.index.min():.3f}-{forces.index.max():.3f} s) do not "
            f"overlap {fallback_source} ({ft[0]:.3f}-{ft[-1]:.3f} s); run both on the same window"
        )
    t = table.index.to_numpy(dtype=float)
    columns = {}
    for name in actuators:
        if name in table.columns:
            columns[name] = table[name].to_numpy(dtype=float)
        else:
            columns[name] = np.interp(t, ft, fallback[name].to_numpy(dtype=float))
    out = pd.DataFrame(columns, index=pd.Index(t, name="time"))
    return out, missing


def moment_closure(
    *,
    model: Any,
    coordinates_mot: PathLike,
    times: np.ndarray,
    delta: pd.DataFrame,
    reserves: Mapping[str, Mapping[str, Any]],
) -> pd.DataFrame:
    """Reserve forces that cancel the moments of muscle-force differences ``delta`` (N).

    ``delta`` (frames of ``times``, one column per muscle) holds method minus SO force. Returns a
    table with one column per reserve actuator of ``reserves`` (N m or N): ``-sum_m r_mc delta_m``
    with OpenSim's moment arms ``r_mc`` at the trial's coordinates (linearly interpolated at
    ``times``), zero for coordinates no listed muscle spans.
    """
    state = model.initSystem()
    pose = read_sto(coordinates_mot)
    pose = pose[~pose.index.duplicated()]
    degrees = str(pose.attrs.get("inDegrees", "no")).lower() == "yes"
    coord_set = model.getCoordinateSet()
    by_coord = {info["coordinate"]: name for name, info in reserves.items()}
    spanned = spanned_coordinates(model=model, muscles=list(delta.columns), coordinates=list(by_coord))
    out = pd.DataFrame(0.0, index=delta.index, columns=list(reserves))
    values = {}
    for coord in coord_set:
        name = coord.getName()
        if name in pose.columns:
            v = np.interp(times, pose.index.to_numpy(dtype=float), pose[name].to_numpy(dtype=float))
            values[name] = np.radians(v) if degrees and is_rotational(model, name) else v
    muscles = {m: model.getMuscles().get(m) for m in delta.columns if spanned.get(m)}
    for i in range(len(times)):
        for name, v in values.items():
            coord_set.get(name).setValue(state, float(v[i]), False)
        model.assemble(state)
        model.realizePosition(state)
        for m, muscle in muscles.items():
            d = float(delta[m].iloc[i])
            if abs(d) <= 1e-3:  # N: the same force, up to the rounding of the files
                continue
            for c in spanned[m]:
                arm = muscle.computeMomentArm(state, coord_set.get(c))
                out.iat[i, out.columns.get_loc(by_coord[c])] -= arm * d
    return out


def run_joint_reaction(
    *,
    model: PathLike,
    coordinates_mot: PathLike,
    external_loads_xml: PathLike,
    forces_sto: PathLike,
    output_sto: PathLike,
    setup_out: PathLike,
    summary_out: PathLike | None = None,
    so_forces_sto: PathLike | None = None,
    generalized_forces_sto: PathLike | None = None,
    joints: Mapping[str, str] | None = None,
    sides: Sequence[str] = ("r", "l"),
    lowpass_hz: float = 6.0,
    reserve_optimal_force: float = 1.0,
    residual_optimal_force: float = 100.0,
    log: PathLike | None = None,
) -> dict[str, Any]:
    """Run OpenSim's JointReaction with a method's muscle forces; write the reaction loads.

    Args:
        model: the (scaled) model the forces belong to.
        coordinates_mot: IK coordinates of the trial.
        external_loads_xml: the trial's ExternalLoads.
        forces_sto: the method's forces (columns: actuator or muscle names, N; index: time).
        output_sto: OpenSim's reaction-loads table; columns
            ``<joint>_on_<child>_in_<child>_{fx,fy,fz,mx,my,mz,px,py,pz}`` (N, N m, m), the load
            the parent applies to the child body, expressed in the child body's frame.
        setup_out: the resolved AnalyzeTool setup (with the complete forces table and the reserve
            ForceSet beside it as ``<name>_forces.sto`` and ``<name>_reserves.xml``).
        summary_out: optional JSON: joints analysed, frames, actuators taken from ``so_forces_sto``.
        so_forces_sto: static optimization's forces of the same trial: the forces of actuators the
            method lacks (see the module docstring).
        generalized_forces_sto: instead of static optimization's reserves, the generalized forces
            the model must receive (inverse dynamics; columns ``<coordinate>``,
            ``<coordinate>_moment`` or ``<coordinate>_force``): each reserve and residual then takes
            ``tau_c - sum_m r_mc F_m`` (used for a twin's true forces, whose model has no SO run).
        joints: joint kind -> coordinate stem (default :data:`DEFAULT_JOINTS`).
        sides: side suffixes to analyse; joints absent from the model are skipped.
        lowpass_hz: coordinate low-pass (as in inverse dynamics and static optimization).
        reserve_optimal_force, residual_optimal_force: of the reserve/residual actuators (their
            forces are overridden by the forces table; the values only name the set).
        log: job log.

    Returns the summary (also written to ``summary_out``).
    """
    route_opensim_log(log, level="Warn")
    opensim = import_opensim()
    coords_file = require_file(coordinates_mot, what="coordinates file", field="coordinates_mot")
    forces_file = require_file(forces_sto, what="muscle forces file", field="forces_sto")
    so_file = (
        require_file(so_forces_sto, what="static optimization forces", field="so_forces_sto")
        if so_forces_sto is not None
        else None
    )
    loads = check_external_loads(external_loads_xml)
    osim = load_model(model)
    model_path = Path(model).resolve()
    kinds = (joints or DEFAULT_JOINTS).items()
    wanted = {f"{kind}_{s}": f"{stem}_{s}" for kind, stem in kinds for s in sides}
    found = joints_by_coordinate(osim, wanted)
    if not found:
        raise OpenSimToolError(
            f"model {model_path} has none of the coordinates {sorted(wanted.values())}; "
            f"set contact.joints to coordinates the model has"
        )
    out_sto, out_setup = Path(output_sto), Path(setup_out)
    stem = out_setup.stem.removesuffix("_setup")
    forces_final = out_setup.parent / f"{stem}_forces.sto"
    reserves_final = out_setup.parent / f"{stem}_reserves.xml"
    with work_dir(out_sto) as tmp:
        reserves = reserve_force_set(
            model=osim,
            path=tmp / "reserves.xml",
            reserve_optimal_force=reserve_optimal_force,
            residual_optimal_force=residual_optimal_force,
        )
        muscles = [osim.getMuscles().get(i).getName() for i in range(osim.getMuscles().getSize())]
        own = [osim.getActuators().get(i).getName() for i in range(osim.getActuators().getSize())]
        actuators = list(dict.fromkeys(own + list(reserves)))
        if generalized_forces_sto is not None:
            actuators = [a for a in actuators if a not in reserves]
        table, from_so = actuator_forces(
            actuators=actuators,
            forces=read_sto(forces_file),
            fallback=read_sto(so_file) if so_file is not None else None,
            source=forces_file,
            fallback_source=so_file or "so_forces_sto",
        )
        if not np.all(np.isfinite(table.to_numpy())):
            raise InputDataError(f"{forces_file}: non-finite forces; check the method's output")
        closure: dict[str, float] = {}
        if generalized_forces_sto is not None:
            tau = read_sto(require_file(generalized_forces_sto, what="generalized forces",
                                        field="generalized_forces_sto"))
            tau = tau[~tau.index.duplicated()].sort_index()
            t = table.index.to_numpy(dtype=float)
            present = [m for m in muscles if m in table.columns]
            extra = moment_closure(
                model=osim, coordinates_mot=coords_file, times=t, delta=table[present], reserves=reserves
            )
            for name, info in reserves.items():
                c = info["coordinate"]
                col = next((k for k in (c, f"{c}_moment", f"{c}_force") if k in tau.columns), None)
                if col is None:
                    raise InputDataError(
                        f"{generalized_forces_sto}: no column for coordinate {c!r} ({c}, {c}_moment or "
                        f"{c}_force); write every free coordinate's generalized force"
                    )
                need = np.interp(t, tau.index.to_numpy(dtype=float), tau[col].to_numpy(dtype=float))
                table[name] = need + extra[name].to_numpy()
                closure[c] = float(np.abs(table[name]).max())
        elif so_file is not None:
            so = read_sto(so_file)
            so = so[~so.index.duplicated()].sort_index()
            own_muscles = [m for m in muscles if m not in from_so and m in so.columns]
            t = table.index.to_numpy(dtype=float)
            st = so.index.to_numpy(dtype=float)
            so_at = pd.DataFrame(
                {m: np.interp(t, st, so[m].to_numpy(dtype=float)) for m in own_muscles}, index=table.index
            )
            delta = table[own_muscles] - so_at
            if own_muscles and float(np.abs(delta.to_numpy()).max()) > 1e-3:  # N; files round
                extra = moment_closure(
                    model=osim, coordinates_mot=coords_file, times=t, delta=delta, reserves=reserves
                )
                table[list(extra.columns)] = table[list(extra.columns)] + extra
                closure = {
                    reserves[a]["coordinate"]: float(np.abs(extra[a]).max())
                    for a in extra.columns
                    if float(np.abs(extra[a]).max()) > 1e-6
                }
        ct = table_times(coords_file)
        start = max(float(table.index[0]), float(ct[0]))
        end = min(float(table.index[-1]), float(ct[-1]))
        if not start < end:
            raise InputDataError(
                f"{forces_file}: forces ({table.index[0]:.3f}-{table.index[-1]:.3f} s) do not overlap "
                f"the coordinates {coords_file} ({ct[0]:.3f}-{ct[-1]:.3f} s)"
            )
        write_sto(tmp / "forces.sto", table, name="actuator_forces")
        tool = opensim.AnalyzeTool()
        tool.setName(stem)
        tool.setModelFilename(str(model_path))
        tool.setCoordinatesFileName(str(coords_file))
        tool.setLowpassCutoffFrequency(float(lowpass_hz))
        tool.setExternalLoadsFileName(str(loads))
        tool.setInitialTime(start)
        tool.setFinalTime(end)
        tool.setSolveForEquilibrium(True)
        tool.setReplaceForceSet(False)
        keys = list(found)
        jr = opensim.JointReaction()
        jr.setName("JointReaction")
        jr.setStartTime(start)
        jr.setEndTime(end)
        names, on, frames = opensim.ArrayStr(), opensim.ArrayStr(), opensim.ArrayStr()
        for key in keys:
            names.append(found[key]["joint"])
            on.append("child")
            frames.append(found[key]["child"])
        jr.setJointNames(names)
        jr.setOnBody(on)
        jr.setInFrame(frames)
        tool.getAnalysisSet().cloneAndAppend(jr)

        def write_setup(path: Path, results: Path, forces: Path, reserve_xml: Path) -> None:
            files = opensim.ArrayStr()
            files.append(str(reserve_xml))
            tool.setForceSetFiles(files)
            tool.setResultsDir(str(results))
            analysis = opensim.JointReaction.safeDownCast(tool.getAnalysisSet().get("JointReaction"))
            analysis.setForcesFileName(str(forces))
            tool.printToXML(str(path))

        write_setup(
            tmp / "setup.xml", out_setup.parent.resolve(), forces_final.resolve(), reserves_final.resolve()
        )
        write_setup(tmp / "run_setup.xml", tmp, tmp / "forces.sto", tmp / "reserves.xml")
        runner = opensim.AnalyzeTool(str(tmp / "run_setup.xml"))
        logger.info(
            "joint reaction %s with %s: %.3f-%.3f s, joints %s, %d actuators (%d from %s)",
            coords_file.name,
            forces_file.name,
            start,
            end,
            [found[k]["joint"] for k in keys],
            len(actuators),
            len(from_so),
            so_file.name if so_file else "-",
        )
        if not runner.run():
            raise OpenSimToolError(f"joint reaction analysis failed on {forces_file}; see the job log")
        produced = tmp / f"{stem}_JointReaction_ReactionLoads.sto"
        columns = [
            f"{found[k]['joint']}_on_{found[k]['child']}_in_{found[k]['child']}_{c}"
            for k in keys
            for c in ("fx", "fy", "fz", "mx", "my", "mz")
        ]
        df = check_table(produced, tool="joint_reaction", columns=columns)
        if not covers(df.index.to_numpy(dtype=float), start, end):
            raise OutputCheckError(
                f"joint_reaction: {produced.name} covers {df.index[0]:.3f}-{df.index[-1]:.3f} s, "
                f"expected {start:.3f}-{end:.3f} s"
            )
        summary: dict[str, Any] = {
            "model": str(model_path),
            "forces": str(forces_file),
            "so_forces": str(so_file) if so_file else None,
            "start": start,
            "end": end,
            "frames": len(df),
            "joints": found,
            "muscles": len(muscles),
            "actuators": len(actuators),
            "from_so": from_so,
            "muscles_from_so": [a for a in from_so if a in muscles],
            "closure_max_abs": closure,
        }
        pairs = [(produced, out_sto), (tmp / "setup.xml", out_setup)]
        pairs += [(tmp / "forces.sto", forces_final), (tmp / "reserves.xml", reserves_final)]
        if summary_out is not None:
            (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
            pairs.append((tmp / "summary.json", summary_out))
        publish(pairs)
    return summary
