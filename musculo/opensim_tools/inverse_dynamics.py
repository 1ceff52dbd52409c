"""Inverse dynamics per dynamic trial (OpenSim InverseDynamicsTool) and pelvis residuals."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from musculo import logger
from musculo.errors import InputDataError
from musculo.opensim_tools.common import (
    OpenSimToolError,
    PathLike,
    check_table,
    free_coordinates,
    import_opensim,
    is_rotational,
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


def check_external_loads(path: PathLike) -> Path:
    """Check an ExternalLoads XML and the data file it names (relative to the XML) exist."""
    xml = require_file(path, what="ExternalLoads XML", field="external_loads_xml")
    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError as exc:
        raise InputDataError(f"{xml}: not valid XML ({exc})") from exc
    node = root.find(".//ExternalLoads/datafile")
    if node is None:
        node = root.find("datafile")
    if node is None or not (node.text or "").strip():
        raise InputDataError(f"{xml}: field 'datafile' is missing; name the GRF .mot file there")
    datafile = (xml.parent / node.text.strip()).resolve()
    if not datafile.is_file():
        raise InputDataError(
            f"{xml}: field 'datafile' names {datafile}, which does not exist (the path is "
            f"relative to the XML); rerun the import stage"
        )
    return xml


def residuals(*, model: Any, moments: Any, height: float | None = None) -> dict[str, Any]:
    """Residual forces and moments on the root (pelvis) coordinates, also as % of body weight.

    Forces are reported in N and % of body weight; moments in N m and, when ``height`` (m) is
    given, % of body weight x height.
    """
    state = model.initSystem()
    mass = float(model.getTotalMass(state))
    g = float(np.linalg.norm(model.getGravity().to_numpy()))
    weight = mass * g
    out: dict[str, Any] = {"mass": mass, "body_weight": weight, "height": height, "coordinates": {}}
    for name in root_coordinates(model):
        if is_rotational(model, name):
            column, unit = f"{name}_moment", "N m"
        else:
            column, unit = f"{name}_force", "N"
        if column not in moments.columns:
            continue
        s = stats(moments[column].to_numpy(dtype=float))
        entry: dict[str, Any] = {"column": column, "unit": unit, **s}
        if unit == "N":
            entry["rms_pct_bw"] = 100 * s["rms"] / weight
            entry["max_pct_bw"] = 100 * s["max_abs"] / weight
        elif height:
            entry["rms_pct_bw_height"] = 100 * s["rms"] / (weight * height)
            entry["max_pct_bw_height"] = 100 * s["max_abs"] / (weight * height)
        out["coordinates"][name] = entry
    return out


def run_id(
    *,
    model: PathLike,
    coordinates_mot: PathLike,
    external_loads_xml: PathLike,
    output_sto: PathLike,
    setup_out: PathLike,
    residuals_out: PathLike,
    lowpass_hz: float = 6.0,
    time_range: Sequence[float] | None = None,
    max_frames: int | None = None,
    height: float | None = None,
    log: PathLike | None = None,
) -> dict[str, Any]:
    """Run OpenSim inverse dynamics on IK coordinates with the trial's external loads.

    Coordinates are low-pass filtered at ``lowpass_hz`` by the tool (negative: no filter).
    Writes ``output_sto`` (generalized forces: ``<coordinate>_moment`` in N m or ``_force`` in
    N), the resolved setup and ``residuals_out`` (JSON: pelvis residuals, also as % of body
    weight).
    """
    route_opensim_log(log)
    opensim = import_opensim()
    coords_file = require_file(coordinates_mot, what="coordinates file", field="coordinates_mot")
    loads = check_external_loads(external_loads_xml)
    osim = load_model(model)
    model_path = Path(model).resolve()
    start, end = time_window(
        table_times(coords_file), time_range=time_range, max_frames=max_frames, source=coords_file
    )
    out_sto, out_setup, out_res = Path(output_sto), Path(setup_out), Path(residuals_out)
    with work_dir(out_sto) as tmp:
        tool = opensim.InverseDynamicsTool()
        tool.setName("id")
        tool.setModelFileName(str(model_path))
        tool.setCoordinatesFileName(str(coords_file))
        tool.setExternalLoadsFileName(str(loads))
        tool.setLowpassCutoffFrequency(float(lowpass_hz))
        tool.setStartTime(start)
        tool.setEndTime(end)
        excluded = opensim.ArrayStr()
        excluded.append("Muscles")
        tool.setExcludedForces(excluded)
        tool.setResultsDir(str(out_sto.parent.resolve()))
        tool.setOutputGenForceFileName(out_sto.name)
        tool.printToXML(str(tmp / "id_setup.xml"))
        tool.setResultsDir(str(tmp))
        tool.setOutputGenForceFileName("id.sto")
        tool.setModel(osim)
        logger.info("ID %s: %.3f-%.3f s, low-pass %.1f Hz", coords_file.name, start, end, lowpass_hz)
        if not tool.run():
            raise OpenSimToolError(f"InverseDynamicsTool failed on {coords_file}; see the job log")
        expected = [f"{c}_moment" if is_rotational(osim, c) else f"{c}_force" for c in free_coordinates(osim)]
        moments = check_table(tmp / "id.sto", tool="id", columns=expected)
        res = residuals(model=osim, moments=moments, height=height)
        res.update({"start": start, "end": end, "frames": len(moments), "lowpass_hz": lowpass_hz})
        (tmp / "residuals.json").write_text(json.dumps(res, indent=2))
        publish(
            [
                (tmp / "id.sto", out_sto),
                (tmp / "id_setup.xml", out_setup),
                (tmp / "residuals.json", out_res),
            ]
        )
    for name, entry in res["coordinates"].items():
        logger.info("residual %s: RMS %.3g %s, max %.3g", name, entry["rms"], entry["unit"], entry["max_abs"])
    return res
