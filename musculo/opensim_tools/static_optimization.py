"""Static optimization per dynamic trial (OpenSim AnalyzeTool + StaticOptimization)."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from musculo import logger
from musculo.opensim_tools.common import (
    OpenSimToolError,
    OutputCheckError,
    PathLike,
    check_table,
    free_coordinates,
    import_opensim,
    load_model,
    publish,
    require_file,
    root_coordinates,
    route_opensim_log,
    stats,
    table_times,
    time_window,
    work_dir,
)
from musculo.opensim_tools.inverse_dynamics import check_external_loads


def reserve_force_set(
    *,
    model: Any,
    path: PathLike,
    reserve_optimal_force: float,
    residual_optimal_force: float,
) -> dict[str, dict[str, Any]]:
    """Write a ForceSet XML with a CoordinateActuator per free coordinate; return its actuators.

    Root (pelvis) coordinates get residual actuators of ``residual_optimal_force``; every other
    free coordinate a reserve of ``reserve_optimal_force``. Returns ``{actuator: {coordinate,
    kind, optimal_force}}``.
    """
    opensim = import_opensim()
    roots = set(root_coordinates(model))
    force_set = opensim.ForceSet()
    actuators: dict[str, dict[str, Any]] = {}
    for coord in free_coordinates(model):
        kind = "residual" if coord in roots else "reserve"
        strength = residual_optimal_force if kind == "residual" else reserve_optimal_force
        act = opensim.CoordinateActuator(coord)
        name = f"{kind}_{coord}"
        act.setName(name)
        act.setOptimalForce(float(strength))
        act.setMinControl(-math.inf)
        act.setMaxControl(math.inf)
        force_set.cloneAndAppend(act)
        actuators[name] = {"coordinate": coord, "kind": kind, "optimal_force": float(strength)}
    force_set.printToXML(str(path))
    return actuators


def run_so(
    *,
    model: PathLike,
    coordinates_mot: PathLike,
    external_loads_xml: PathLike,
    activation_out: PathLike,
    force_out: PathLike,
    setup_out: PathLike,
    reserves_out: PathLike,
    reserve_optimal_force: float = 1.0,
    residual_optimal_force: float = 100.0,
    lowpass_hz: float = 6.0,
    activation_exponent: float = 2.0,
    time_range: Sequence[float] | None = None,
    max_frames: int | None = None,
    log: PathLike | None = None,
) -> dict[str, Any]:
    """Run OpenSim static optimization with generated reserve and residual actuators.

    Writes muscle activations (``activation_out``), actuator forces (``force_out``, N for
    muscles, N m or N for reserves), the resolved AnalyzeTool setup (``setup_out``, with its
    reserve ForceSet beside it as ``so_reserve_actuators.xml``) and ``reserves_out`` (JSON:
    reserve and residual use per coordinate).
    """
    route_opensim_log(log, level="Warn")
    opensim = import_opensim()
    coords_file = require_file(coordinates_mot, what="coordinates file", field="coordinates_mot")
    loads = check_external_loads(external_loads_xml)
    osim = load_model(model)
    model_path = Path(model).resolve()
    muscles = [osim.getMuscles().get(i).getName() for i in range(osim.getMuscles().getSize())]
    if not muscles:
        raise OpenSimToolError(f"model {model_path} has no muscles; static optimization needs some")
    start, end = time_window(
        table_times(coords_file), time_range=time_range, max_frames=max_frames, source=coords_file
    )
    out_act, out_force = Path(activation_out), Path(force_out)
    out_setup, out_res = Path(setup_out), Path(reserves_out)
    reserve_final = out_setup.parent / "so_reserve_actuators.xml"
    with work_dir(out_act) as tmp:
        actuators = reserve_force_set(
            model=osim,
            path=tmp / "so_reserve_actuators.xml",
            reserve_optimal_force=reserve_optimal_force,
            residual_optimal_force=residual_optimal_force,
        )
        tool = opensim.AnalyzeTool()
        tool.setName("so")
        tool.setModelFilename(str(model_path))
        tool.setCoordinatesFileName(str(coords_file))
        tool.setLowpassCutoffFrequency(float(lowpass_hz))
        tool.setExternalLoadsFileName(str(loads))
        tool.setInitialTime(start)
        tool.setFinalTime(end)
        tool.setSolveForEquilibrium(True)
        tool.setReplaceForceSet(False)
        so = opensim.StaticOptimization()
        so.setStartTime(start)
        so.setEndTime(end)
        so.setUseModelForceSet(True)
        so.setActivationExponent(float(activation_exponent))
        so.setUseMusclePhysiology(True)
        so.setConvergenceCriterion(1e-4)
        so.setMaxIterations(100)
        tool.getAnalysisSet().cloneAndAppend(so)

        def write_setup(path: Path, results: Path, forces: Path) -> None:
            files = opensim.ArrayStr()
            files.append(str(forces))
            tool.setForceSetFiles(files)
            tool.setResultsDir(str(results))
            tool.printToXML(str(path))

        write_setup(tmp / "so_setup.xml", out_setup.parent.resolve(), reserve_final.resolve())
        write_setup(tmp / "run_setup.xml", tmp, tmp / "so_reserve_actuators.xml")
        runner = opensim.AnalyzeTool(str(tmp / "run_setup.xml"))
        logger.info(
            "SO %s: %.3f-%.3f s, %d muscles, %d reserve/residual actuators",
            coords_file.name,
            start,
            end,
            len(muscles),
            len(actuators),
        )
        t0 = time.perf_counter()
        try:
            done = runner.run()
        except RuntimeError as exc:
            if "equilibrateMuscles" not in str(exc):
                raise
            muscle = re.search(r"In Object '([^']+)'", str(exc))
            raise OpenSimToolError(
                f"static optimization of {coords_file}: OpenSim cannot put muscle "
                f"{muscle.group(1) if muscle else '?'} in equilibrium with its compliant tendon "
                f"(its path is shorter than its tendon at a pose of {start:.3f}-{end:.3f} s, often the "
                "first frame); leave that pose out with the trial's time_range, or use batched "
                "static optimization (rigid tendons) for this subject: add "
                "`config: {opensim: {so_method: batched}}` to its subject.yaml"
            ) from exc
        if not done:
            raise OpenSimToolError(f"static optimization failed on {coords_file}; see the job log")
        seconds = time.perf_counter() - t0
        act = check_table(
            tmp / "so_StaticOptimization_activation.sto",
            tool="so",
            columns=muscles + list(actuators),
            bounds=(0.0, 1.0),
            bounded_columns=muscles,
        )
        force = check_table(
            tmp / "so_StaticOptimization_force.sto", tool="so", columns=muscles + list(actuators)
        )
        if len(act) != len(force):
            raise OutputCheckError("so: activation and force files differ in length")
        report: dict[str, Any] = {
            "start": start,
            "end": end,
            "frames": len(act),
            "reserve_optimal_force": reserve_optimal_force,
            "residual_optimal_force": residual_optimal_force,
            "actuators": {},
        }
        for name, info in actuators.items():
            report["actuators"][name] = {**info, **stats(force[name].to_numpy(dtype=float))}
        (tmp / "so_reserves.json").write_text(json.dumps(report, indent=2))
        publish(
            [
                (tmp / "so_StaticOptimization_activation.sto", out_act),
                (tmp / "so_StaticOptimization_force.sto", out_force),
                (tmp / "so_reserve_actuators.xml", reserve_final),
                (tmp / "so_setup.xml", out_setup),
                (tmp / "so_reserves.json", out_res),
            ]
        )
    worst = max(
        (v for v in report["actuators"].values() if v["kind"] == "reserve"),
        key=lambda v: v["max_abs"],
        default=None,
    )
    if worst is not None:
        logger.info("SO: largest reserve %s, max %.3g N m", worst["coordinate"], worst["max_abs"])
    return {**report, "seconds": seconds}
