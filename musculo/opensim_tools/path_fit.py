"""Muscle paths as fitted polynomials (OpenSim's PolynomialPathFitter), evaluated vectorised in numpy.

A subject's scaled model is fitted once over the coordinate values its trials visit (OpenSim
samples each chosen frame within +- ``sampling_bounds_deg`` of it, so the fit covers the visited
ranges with that margin). The fitted length polynomials are stored as JSON (``paths.json``) beside
OpenSim's own ``FunctionBasedPathSet`` XML; :class:`PolynomialPaths` evaluates lengths,
lengthening speeds and moment arms (``-dL/dq``) of every muscle for all frames at once.
:func:`run_polynomial_muscle_analysis` writes the same ``muscle_analysis.npz`` as OpenSim's
MuscleAnalysis stage (:mod:`musculo.opensim_tools.muscle_analysis`).

The coordinates are filtered as OpenSim's AnalyzeTool does (reflect-and-negate padding, OpenSim's
low-pass IIR filter, a quintic spline through the filtered values for the speeds), so ``q`` and
``qdot`` agree with the OpenSim stages.
"""

from __future__ import annotations

import itertools
import json
import time as _time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musculo import logger
from musculo.errors import InputDataError
from musculo.opensim_tools.common import (
    OpenSimToolError,
    OutputCheckError,
    PathLike,
    free_coordinates,
    import_opensim,
    is_rotational,
    load_model,
    publish,
    require_file,
    route_opensim_log,
    table_times,
    time_window,
    work_dir,
)

PATHS_FORMAT = "musculo-polynomial-paths/1"


def exponents(dimension: int, order: int) -> np.ndarray:
    """Exponents (K, dimension) of OpenSim's MultivariatePolynomialFunction terms, in its order.

    OpenSim orders the terms lexicographically by exponent tuple (first coordinate slowest),
    keeping those whose exponents sum to at most ``order``.
    """
    combos = [e for e in itertools.product(range(order + 1), repeat=dimension) if sum(e) <= order]
    return np.array(sorted(combos), dtype=int).reshape(len(combos), dimension)


@dataclass(frozen=True)
class PathPolynomial:
    """One muscle's fitted length polynomial: ``L(q) = sum_k c_k prod_j q_j ** e_kj``."""

    coordinates: tuple[str, ...]
    exponents: np.ndarray  # (K, D)
    coefficients: np.ndarray  # (K,)

    def evaluate(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lengths (T,) and partial derivatives dL/dq (T, D) at coordinate values ``q`` (T, D)."""
        t, d = q.shape
        order = int(self.exponents.max(initial=0))
        powers = np.ones((order + 1, t, d))
        for p in range(1, order + 1):
            powers[p] = powers[p - 1] * q
        cols = np.arange(d)
        # term values: product over coordinates of q_j ** e_kj -> (T, K)
        factors = powers[self.exponents, :, cols]  # (K, D, T)
        terms = factors.prod(axis=1).T
        length = terms @ self.coefficients
        grad = np.empty((t, d))
        for j in range(d):
            e = self.exponents[:, j]
            lower = powers[np.maximum(e - 1, 0), :, j]  # (K, T)
            others = np.delete(factors, j, axis=1).prod(axis=1)  # (K, T)
            grad[:, j] = ((e * self.coefficients)[:, None] * lower * others).sum(axis=0)
        return length, grad


class PolynomialPaths:
    """Fitted polynomial paths of a model's muscles (from :func:`fit_paths`'s ``paths.json``)."""

    def __init__(self, polynomials: dict[str, PathPolynomial], *, info: dict[str, Any] | None = None):
        self.polynomials = polynomials
        self.info = info or {}

    @property
    def muscles(self) -> list[str]:
        """Muscle names in the model's order."""
        return list(self.polynomials)

    @property
    def coordinates(self) -> list[str]:
        """Every coordinate some path depends on."""
        seen: dict[str, None] = {}
        for poly in self.polynomials.values():
            seen.update(dict.fromkeys(poly.coordinates))
        return list(seen)

    @classmethod
    def load(cls, path: PathLike) -> PolynomialPaths:
        """Read ``paths.json`` written by :func:`fit_paths`."""
        p = Path(path)
        if not p.is_file():
            raise InputDataError(f"{p}: fitted muscle paths not found; run the path_fit stage")
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise InputDataError(f"{p}: not valid JSON ({exc}); rerun the path_fit stage") from exc
        if data.get("format") != PATHS_FORMAT:
            raise InputDataError(f"{p}: field 'format' is {data.get('format')!r}, not {PATHS_FORMAT!r}")
        polys = {}
        for name, entry in data["paths"].items():
            dim, order = len(entry["coordinates"]), int(entry["order"])
            exps = exponents(dim, order)
            coefs = np.asarray(entry["coefficients"], dtype=float)
            if coefs.size != len(exps):
                raise InputDataError(
                    f"{p}: path {name} has {coefs.size} coefficients, expected {len(exps)} for "
                    f"dimension {dim}, order {order}; rerun the path_fit stage"
                )
            polys[name] = PathPolynomial(tuple(entry["coordinates"]), exps, coefs)
        return cls(polys, info={k: v for k, v in data.items() if k != "paths"})

    def evaluate(
        self, *, q: np.ndarray, coordinates: Sequence[str], muscles: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Lengths (T, M) and moment arms (T, M, C) = -dL/dq about ``coordinates`` at ``q`` (T, C).

        Every coordinate a path depends on must be among ``coordinates``; the moment arm about
        any other coordinate is zero.
        """
        names = list(muscles) if muscles is not None else self.muscles
        index = {c: k for k, c in enumerate(coordinates)}
        q = np.asarray(q, dtype=float)
        length = np.empty((q.shape[0], len(names)))
        arms = np.zeros((q.shape[0], len(names), len(index)))
        for m, name in enumerate(names):
            if name not in self.polynomials:
                raise InputDataError(f"muscle {name} has no fitted path; rerun the path_fit stage")
            poly = self.polynomials[name]
            missing = [c for c in poly.coordinates if c not in index]
            if missing:
                raise InputDataError(f"path of {name} depends on coordinates {missing} that are not given")
            cols = [index[c] for c in poly.coordinates]
            length[:, m], grad = poly.evaluate(q[:, cols])
            arms[:, m, cols] = -grad
        return length, arms


# ---------------------------------------------------------------- kinematics as AnalyzeTool has them


def _table(opensim: Any, times: np.ndarray, values: np.ndarray, labels: Sequence[str]) -> Any:
    """An OpenSim TimeSeriesTable of ``values`` (T, C) at ``times`` with column ``labels``."""
    table = opensim.TimeSeriesTable()
    table.setColumnLabels(list(labels))
    for t, row in zip(times, values, strict=True):
        table.appendRow(float(t), opensim.RowVector(np.asarray(row, dtype=float).tolist()))
    return table


def coordinate_table(
    *, model: Any, coordinates_mot: PathLike, coordinates: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Times (T,) and values (T, C) of ``coordinates`` in a coordinates file, in rad or m."""
    from musculo.io.tables import in_degrees, read_sto

    path = Path(coordinates_mot)
    df = read_sto(path)
    missing = [c for c in coordinates if c not in df.columns]
    if missing:
        raise InputDataError(f"{path}: no columns for coordinates {missing}; rerun inverse kinematics")
    values = df[list(coordinates)].to_numpy(dtype=float)
    if in_degrees(df):
        rot = np.array([is_rotational(model, c) for c in coordinates], dtype=bool)
        values[:, rot] = np.deg2rad(values[:, rot])
    return df.index.to_numpy(dtype=float), values


def filtered_kinematics(
    *, times: np.ndarray, values: np.ndarray, lowpass_hz: float, start: float, end: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(time, q, qdot)`` in ``[start, end]`` as OpenSim's AnalyzeTool computes them.

    With ``lowpass_hz >= 0`` the columns are padded (reflected and negated, half their length on
    each side) and low-pass filtered with OpenSim's own IIR filter; values and speeds come from a
    quintic interpolating spline through the (padded) values, as OpenSim's GCV spline.
    """
    opensim = import_opensim()
    t, v = np.asarray(times, dtype=float), np.asarray(values, dtype=float)
    keep = t[(t >= start - 1e-9) & (t <= end + 1e-9)]
    if lowpass_hz >= 0:
        table = _table(opensim, t, v, [f"c{k}" for k in range(v.shape[1])])
        opensim.TableUtilities.pad(table, len(t) // 2)
        opensim.TableUtilities.filterLowpass(table, float(lowpass_hz), False)
        t = np.asarray(table.getIndependentColumn(), dtype=float)
        v = table.getMatrix().to_numpy()
    # a quintic interpolating spline through the (padded, filtered) values, as OpenSim's GCV
    # spline without smoothing, gives the values and speeds at the trial's own frames
    from scipy.interpolate import make_interp_spline

    spline = make_interp_spline(t, v, k=min(5, len(t) - 1), axis=0)
    return keep, spline(keep), spline(keep, 1)


# ---------------------------------------------------------------- fitting


def _fit_frames(
    *, model: Any, mots: Sequence[Path], coordinates: Sequence[str], max_fit_frames: int
) -> np.ndarray:
    """Coordinate values (F, C) of frames spread evenly over every trial (rad or m)."""
    rows = []
    for mot in mots:
        _, values = coordinate_table(model=model, coordinates_mot=mot, coordinates=coordinates)
        rows.append(values)
    allrows = np.concatenate(rows)
    if max_fit_frames > 0 and len(allrows) > max_fit_frames:
        allrows = allrows[np.unique(np.linspace(0, len(allrows) - 1, max_fit_frames).round().astype(int))]
    return allrows


def _parse_path_set(xml: Path) -> dict[str, dict[str, Any]]:
    root = ET.parse(xml).getroot()
    out: dict[str, dict[str, Any]] = {}
    for fbp in root.iter("FunctionBasedPath"):
        name = fbp.get("name", "").rsplit("/", 1)[-1]
        coords = [p.rsplit("/", 1)[-1] for p in (fbp.findtext("coordinate_paths") or "").split()]
        poly = fbp.find("length_function/MultivariatePolynomialFunction")
        if poly is None:
            raise OutputCheckError(f"path fit: {xml.name} path {name} has no polynomial length function")
        coefs = [float(x) for x in (poly.findtext("coefficients") or "").split()]
        out[name] = {"coordinates": coords, "order": int(poly.findtext("order") or 0), "coefficients": coefs}
    return out


def fit_paths(
    *,
    model: PathLike,
    coordinates_mots: Sequence[PathLike],
    paths_out: PathLike,
    path_set_out: PathLike | None = None,
    max_fit_frames: int = 30,
    samples_per_frame: int = 15,
    sampling_bounds_deg: float = 15.0,
    max_order: int = 6,
    moment_arm_threshold: float = 1e-3,
    threads: int = 1,
    log: PathLike | None = None,
) -> dict[str, Any]:
    """Fit every muscle path of ``model`` with OpenSim's PolynomialPathFitter; write ``paths_out``.

    The fit uses ``max_fit_frames`` frames spread over all the trials' coordinate files, each
    sampled ``samples_per_frame`` times (Latin hypercube) within +- ``sampling_bounds_deg``
    (degrees; the same number in cm for translations) of the frame. Polynomials of order up to
    ``max_order`` are fitted to lengths and moment arms about the coordinates each path depends on
    (moment arm above ``moment_arm_threshold`` m somewhere). Cost grows with frames x samples x
    muscles; accuracy with samples and order. ``paths_out`` is JSON for :class:`PolynomialPaths`;
    ``path_set_out`` (optional) receives OpenSim's FunctionBasedPathSet XML.
    """
    route_opensim_log(log, level="Warn")
    opensim = import_opensim()
    mots = [require_file(m, what="coordinates file", field="coordinates_mots") for m in coordinates_mots]
    if not mots:
        raise InputDataError("coordinates_mots: no coordinates file given; the fit needs at least one trial")
    osim = load_model(model)
    model_path = Path(model).resolve()
    muscles = [osim.getMuscles().get(i).getName() for i in range(osim.getMuscles().getSize())]
    if not muscles:
        raise OpenSimToolError(f"model {model_path} has no muscles to fit")
    all_coords = [osim.getCoordinateSet().get(i).getName() for i in range(osim.getNumCoordinates())]
    free = free_coordinates(osim)
    frames = _fit_frames(model=osim, mots=mots, coordinates=free, max_fit_frames=max_fit_frames)
    t0 = _time.perf_counter()
    out_json = Path(paths_out)
    with work_dir(out_json) as tmp:
        # the fitter wants every coordinate's column (absolute state names, radians); keep the
        # locked and constrained ones at their default values
        state = osim.initSystem()
        labels = [f"{osim.getCoordinateSet().get(c).getAbsolutePathString()}/value" for c in all_coords]
        defaults = np.array([osim.getCoordinateSet().get(c).getValue(state) for c in all_coords])
        full = np.tile(defaults, (len(frames), 1))
        for k, c in enumerate(free):
            full[:, all_coords.index(c)] = frames[:, k]
        table = _table(opensim, np.arange(len(frames)) * 0.01, full, labels)
        table.addTableMetaDataString("inDegrees", "no")
        fitter = opensim.PolynomialPathFitter()
        fitter.setModel(opensim.ModelProcessor(str(model_path)))
        fitter.setCoordinateValues(opensim.TableProcessor(table))
        fitter.setOutputDirectory(str(tmp))
        fitter.setMaximumPolynomialOrder(int(max_order))
        fitter.setNumSamplesPerFrame(int(samples_per_frame))
        fitter.setGlobalCoordinateSamplingBounds(
            opensim.Vec2(-float(sampling_bounds_deg), float(sampling_bounds_deg))
        )
        fitter.setMomentArmThreshold(float(moment_arm_threshold))
        fitter.setNumParallelThreads(max(1, int(threads)))
        logger.info(
            "path fit %s: %d muscles, %d frames x %d samples, +-%g deg, order <= %d",
            model_path.name,
            len(muscles),
            len(frames),
            samples_per_frame,
            sampling_bounds_deg,
            max_order,
        )
        try:
            fitter.run()
        except Exception as exc:  # OpenSim raises RuntimeError subclasses with its own message
            raise OpenSimToolError(f"path fit of {model_path} failed: {exc}") from exc
        xmls = sorted(tmp.glob("*_FunctionBasedPathSet.xml"))
        if not xmls:
            raise OutputCheckError(f"path fit: OpenSim wrote no FunctionBasedPathSet for {model_path}")
        parsed = _parse_path_set(xmls[0])
        absent = [m for m in muscles if m not in parsed]
        if absent:
            raise OutputCheckError(f"path fit: no fitted path for muscles {absent[:10]} of {model_path}")
        fit_rmse = _fit_errors(tmp, muscles)
        seconds = _time.perf_counter() - t0
        payload = {
            "format": PATHS_FORMAT,
            "model": str(model_path),
            "trials": [str(m) for m in mots],
            "settings": {
                "max_fit_frames": max_fit_frames,
                "fit_frames": len(frames),
                "samples_per_frame": samples_per_frame,
                "sampling_bounds_deg": sampling_bounds_deg,
                "max_order": max_order,
                "moment_arm_threshold": moment_arm_threshold,
            },
            "fit_seconds": seconds,
            "sampled_rmse": fit_rmse,
            "paths": {m: parsed[m] for m in muscles},
        }
        (tmp / "paths.json").write_text(json.dumps(payload, indent=1))
        pairs = [(tmp / "paths.json", out_json)]
        if path_set_out is not None:
            pairs.append((xmls[0], Path(path_set_out)))
        publish(pairs)
    logger.info(
        "path fit: %.1f s; sampled RMSE worst length %.3g mm, worst moment arm %.3g mm",
        seconds,
        1e3 * fit_rmse["worst_length"][1],
        1e3 * fit_rmse["worst_moment_arm"][1],
    )
    return {"muscles": len(muscles), "fit_frames": len(frames), "seconds": seconds, **fit_rmse}


def _fit_errors(folder: Path, muscles: Sequence[str]) -> dict[str, Any]:
    """Worst RMS errors of the fit on OpenSim's sampled coordinate values (from its .sto files)."""
    from musculo.io.tables import read_sto

    def pair(stem: str) -> tuple[Any, Any] | None:
        ref = sorted(folder.glob(f"*_{stem}_sampled.sto"))
        fit = sorted(folder.glob(f"*_{stem}_sampled_fitted.sto"))
        return (read_sto(ref[0]), read_sto(fit[0])) if ref and fit else None

    out: dict[str, Any] = {"worst_length": ["", float("nan")], "worst_moment_arm": ["", float("nan")]}
    for stem, key in (("path_lengths", "worst_length"), ("moment_arms", "worst_moment_arm")):
        tables = pair(stem)
        if tables is None:
            continue
        ref, fit = tables
        cols = [c for c in ref.columns if c in fit.columns]
        if not cols:
            continue
        rms = np.sqrt(((ref[cols].to_numpy() - fit[cols].to_numpy()) ** 2).mean(axis=0))
        k = int(np.argmax(rms))
        out[key] = [str(cols[k]), float(rms[k])]
    return out


# ---------------------------------------------------------------- the muscle analysis stage


def run_polynomial_muscle_analysis(
    *,
    model: PathLike,
    coordinates_mot: PathLike,
    paths: PathLike,
    output_npz: PathLike,
    sto_dir: PathLike,
    setup_out: PathLike,
    time_range: Sequence[float] | None = None,
    max_frames: int | None = None,
    lowpass_hz: float = 6.0,
    coordinates: Sequence[str] | None = None,
    log: PathLike | None = None,
) -> dict[str, Any]:
    """The muscle analysis stage with fitted polynomial paths instead of OpenSim's MuscleAnalysis.

    Writes ``output_npz`` with the keys of :func:`musculo.opensim_tools.muscle_analysis.
    run_muscle_analysis` on the same frames (the coordinates file's rows in the window),
    ``sto_dir`` with the lengths (``ma_PolynomialPaths_Length.sto``) and ``setup_out`` (an XML
    record of the method and the fitted paths used). Moment arms are ``-dL/dq`` of the fitted
    polynomials (exact derivatives), MTU velocity ``dL/dt = -sum_c r_c qdot_c``, and
    ``fiber_length`` is the rigid-tendon fibre length (constant-width pennation). ``coordinates``
    (e.g. the subject's tracked ones) restricts the analysed coordinates as in the OpenSim stage;
    velocities still use every coordinate.
    """
    import pandas as pd

    from musculo.io.tables import write_sto
    from musculo.opensim_tools.muscle_analysis import NPZ_KEYS, muscle_parameters

    route_opensim_log(log, level="Warn")
    coords_file = require_file(coordinates_mot, what="coordinates file", field="coordinates_mot")
    fitted = PolynomialPaths.load(paths)
    osim = load_model(model)
    model_path = Path(model).resolve()
    names = [osim.getMuscles().get(i).getName() for i in range(osim.getMuscles().getSize())]
    if not names:
        raise OpenSimToolError(f"model {model_path} has no muscles to analyse")
    free = free_coordinates(osim)
    coords = list(free)
    if coordinates:
        known = {osim.getCoordinateSet().get(i).getName() for i in range(osim.getNumCoordinates())}
        wrong = [c for c in coordinates if c not in known]
        if wrong:
            raise InputDataError(
                f"coordinates: {wrong} are not coordinates of {model_path} (free ones: {free}); "
                f"fix `coordinates` in the subject file"
            )
        coords = [c for c in free if c in set(coordinates)]
        if not coords:
            raise InputDataError(
                f"coordinates: none of {list(coordinates)} is a free coordinate of {model_path}; "
                f"fix `coordinates` in the subject file"
            )
    start, end = time_window(
        table_times(coords_file), time_range=time_range, max_frames=max_frames, source=coords_file
    )
    t0 = _time.perf_counter()
    kin = muscle_kinematics(
        model=osim,
        coordinates_mot=coords_file,
        paths=fitted,
        muscles=names,
        start=start,
        end=end,
        lowpass_hz=lowpass_hz,
    )
    cidx = [kin["coordinates"].index(c) for c in coords]
    params = muscle_parameters(osim, names)
    length = kin["mtu_length"]
    width = params["optimal_fiber_length"] * np.sin(params["pennation_angle"])
    along = np.maximum(length - params["tendon_slack_length"], 0.0)
    fiber = np.sqrt(along**2 + width**2)
    fiber[along <= 0] = 0.0
    payload = {
        "time": kin["time"],
        "muscles": np.array(names, dtype=str),
        "coordinates": np.array(coords, dtype=str),
        "mtu_length": length,
        "mtu_velocity": kin["mtu_velocity"],
        "fiber_length": fiber,
        "moment_arm": kin["moment_arm"][:, :, cidx],
        **params,
        "q": kin["q"][:, cidx],
        "qdot": kin["qdot"][:, cidx],
    }
    if set(payload) != set(NPZ_KEYS):
        raise OutputCheckError(
            f"muscle analysis (polynomial paths): keys {sorted(payload)} are not {NPZ_KEYS}"
        )
    for key, value in payload.items():
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise OutputCheckError(f"muscle analysis (polynomial paths): non-finite values in {key}")
    if np.any(length <= 0):
        raise OutputCheckError(
            f"muscle analysis (polynomial paths): non-positive muscle-tendon lengths in {coords_file.name}; "
            "the trial leaves the fitted range: rerun path_fit"
        )
    seconds = _time.perf_counter() - t0
    out_npz, out_dir, out_setup = Path(output_npz), Path(sto_dir), Path(setup_out)
    with work_dir(out_npz) as tmp:
        np.savez_compressed(tmp / "muscle_analysis.npz", **payload)
        sto = tmp / "sto"
        sto.mkdir()
        write_sto(
            sto / "ma_PolynomialPaths_Length.sto",
            pd.DataFrame(length, index=pd.Index(kin["time"], name="time"), columns=names),
        )
        setup = ET.Element("PolynomialPathMuscleAnalysis")
        for key, value in {
            "model_file": str(model_path),
            "coordinates_file": str(coords_file),
            "paths_file": str(Path(paths).resolve()),
            "initial_time": repr(start),
            "final_time": repr(end),
            "lowpass_cutoff_frequency_for_coordinates": repr(float(lowpass_hz)),
            "coordinates": " ".join(coords),
        }.items():
            ET.SubElement(setup, key).text = value
        ET.ElementTree(setup).write(tmp / "ma_setup.xml", encoding="utf-8", xml_declaration=True)
        from musculo.opensim_tools.common import publish_dir

        publish_dir(sto, out_dir)
        publish([(tmp / "ma_setup.xml", out_setup), (tmp / "muscle_analysis.npz", out_npz)])
    logger.info(
        "MA (polynomial paths) %s: %d frames, %d muscles x %d coordinates in %.3f s",
        coords_file.name,
        len(kin["time"]),
        len(names),
        len(coords),
        seconds,
    )
    return {
        "start": start,
        "end": end,
        "frames": int(len(kin["time"])),
        "muscles": len(names),
        "coordinates": len(coords),
        "seconds": seconds,
    }


def muscle_kinematics(
    *,
    model: Any,
    coordinates_mot: PathLike,
    paths: PolynomialPaths,
    muscles: Sequence[str],
    start: float,
    end: float,
    lowpass_hz: float,
) -> dict[str, Any]:
    """Filtered ``q``/``qdot`` of every free coordinate and the muscles' lengths, speeds, moment arms.

    Returns ``time`` (T,), ``coordinates`` (C,) (every free coordinate of ``model``), ``q``,
    ``qdot`` (T, C), ``mtu_length``, ``mtu_velocity`` (T, M) and ``moment_arm`` (T, M, C).
    """
    free = free_coordinates(model)
    known = {model.getCoordinateSet().get(i).getName() for i in range(model.getNumCoordinates())}
    unknown = [c for c in paths.coordinates if c not in known]
    if unknown:
        raise InputDataError(
            f"fitted paths depend on coordinates {unknown} that the model lacks; rerun path_fit on this model"
        )
    times, values = coordinate_table(model=model, coordinates_mot=coordinates_mot, coordinates=free)
    time, q, qdot = filtered_kinematics(
        times=times, values=values, lowpass_hz=lowpass_hz, start=start, end=end
    )
    # a path may depend on a locked coordinate (e.g. subtalar in some models): it keeps its value
    fixed = [c for c in paths.coordinates if c not in free]
    state = model.initSystem() if fixed else None
    held = [model.getCoordinateSet().get(c).getValue(state) for c in fixed]
    q_all = np.column_stack([q, np.tile(held, (len(time), 1))]) if fixed else q
    length, arms = paths.evaluate(q=q_all, coordinates=[*free, *fixed], muscles=muscles)
    arms = arms[:, :, : len(free)]
    velocity = -np.einsum("tmc,tc->tm", arms, qdot)
    return {
        "time": time,
        "coordinates": list(free),
        "q": q,
        "qdot": qdot,
        "mtu_length": length,
        "mtu_velocity": velocity,
        "moment_arm": arms,
    }
