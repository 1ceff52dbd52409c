"""Muscle paths as fitted polynomials, evaluated vectorised in numpy.

A subject's scaled model is fitted once over the coordinate values its trials visit: each chosen
frame is sampled (seeded Latin hypercube) within +- ``sampling_bounds_deg`` of it, so the fit covers
the visited ranges with that margin, and OpenSim gives the path lengths and moment arms at every
sample. The fitted length polynomials are stored as JSON (``paths.json``) beside the same
polynomials as OpenSim's ``FunctionBasedPathSet`` XML; :class:`PolynomialPaths` evaluates lengths,
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
    root_coordinates,
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
        terms, grads = design_matrices(np.asarray(q, dtype=float), self.exponents)
        return terms @ self.coefficients, np.einsum("nkd,k->nd", grads, self.coefficients)


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


def trial_frames(*, model: Any, mots: Sequence[Path], coordinates: Sequence[str]) -> np.ndarray:
    """Coordinate values (N, C) of every frame of every trial (rad or m)."""
    rows = [coordinate_table(model=model, coordinates_mot=m, coordinates=coordinates)[1] for m in mots]
    return np.concatenate(rows)


def spread(n: int, count: int) -> np.ndarray:
    """Indices of at most ``count`` of ``n`` rows, spread evenly from the first to the last."""
    return np.unique(np.linspace(0, n - 1, max(1, min(n, count))).round().astype(int))


def select_frames(frames: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` frames: half spread evenly, half farthest from those already chosen.

    The farthest-point half reaches the extremes of the visited coordinate space (distances with
    each coordinate scaled by its visited range), which evenly spaced frames can miss.
    """
    n = len(frames)
    if count <= 0 or n <= count:
        return np.arange(n)
    chosen = list(spread(n, count // 2))
    span = np.ptp(frames, axis=0)
    scaled = frames / np.where(span > 0, span, 1.0)
    dist = np.min(np.linalg.norm(scaled[:, None, :] - scaled[chosen][None, :, :], axis=2), axis=1)
    while len(chosen) < count:
        k = int(np.argmax(dist))
        chosen.append(k)
        dist = np.minimum(dist, np.linalg.norm(scaled - scaled[k], axis=1))
    return np.array(sorted(chosen))


def design_matrices(x: np.ndarray, exps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Polynomial terms (N, K) and their partial derivatives (N, K, D) at points ``x`` (N, D)."""
    n, d = x.shape
    order = int(exps.max(initial=0))
    powers = np.ones((order + 1, n, d))
    for p in range(1, order + 1):
        powers[p] = powers[p - 1] * x
    cols = np.arange(d)
    factors = powers[exps, :, cols]  # (K, D, N)
    terms = factors.prod(axis=1).T
    grads = np.empty((n, len(exps), d))
    for j in range(d):
        e = exps[:, j]
        lower = powers[np.maximum(e - 1, 0), :, j]  # (K, N)
        others = np.delete(factors, j, axis=1).prod(axis=1)  # (K, N)
        grads[:, :, j] = (e[:, None] * lower * others).T
    return terms, grads


def fit_polynomial(
    x: np.ndarray,
    length: np.ndarray,
    arms: np.ndarray,
    *,
    max_order: int,
    length_tolerance: float = 2e-4,
    arm_tolerance: float = 2e-4,
) -> tuple[int, np.ndarray, float, float]:
    """Least-squares polynomial ``L(x)`` fitted to lengths and moment arms ``-dL/dx`` at once.

    ``x`` (N, D) coordinate values, ``length`` (N,), ``arms`` (N, D). The order rises from 1 until
    both RMS errors are within their tolerances (m) or ``max_order`` is reached; an order whose
    term count exceeds a third of the equations is not tried. Returns ``(order, coefficients,
    length_rms, arm_rms)`` with coefficients in OpenSim's term order (:func:`exponents`).
    """
    n, d = x.shape
    rows = n * (1 + d)
    best: tuple[int, np.ndarray, float, float] | None = None
    for order in range(min(1, int(max_order)), max(0, int(max_order)) + 1):
        exps = exponents(d, order)
        if best is not None and 3 * len(exps) > rows:
            break
        terms, grads = design_matrices(x, exps)
        a = np.concatenate([terms, -grads.transpose(0, 2, 1).reshape(n * d, len(exps))])
        b = np.concatenate([length, arms.reshape(n * d)])
        coefs = np.linalg.lstsq(a, b, rcond=None)[0]
        residual = a @ coefs - b
        l_rms = float(np.sqrt(np.mean(residual[:n] ** 2)))
        r_rms = float(np.sqrt(np.mean(residual[n:] ** 2)))
        best = (order, coefs, l_rms, r_rms)
        if l_rms <= length_tolerance and r_rms <= arm_tolerance:
            break
    assert best is not None
    return best


def sample_coordinates(
    frames: np.ndarray,
    *,
    half_width: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    samples_per_frame: int,
    seed: int,
) -> np.ndarray:
    """Each frame (F, C) plus ``samples_per_frame`` Latin-hypercube samples within +- ``half_width``.

    Samples stay within the coordinate range ``[lower, upper]`` widened to hold the frame itself.
    The same ``seed`` gives the same samples.
    """
    from scipy.stats import qmc

    rng = np.random.default_rng(seed)
    out = [frames]
    for frame in frames:
        unit = qmc.LatinHypercube(d=frames.shape[1], seed=rng).random(int(samples_per_frame))
        pts = frame + (2.0 * unit - 1.0) * half_width
        out.append(np.clip(pts, np.minimum(lower, frame), np.maximum(upper, frame)))
    return np.concatenate(out)


class _PathProbe:
    """Muscle lengths and moment arms of a model at given free-coordinate values, through OpenSim."""

    def __init__(self, model: Any, free: Sequence[str]):
        self.model = model
        self.state = model.initSystem()
        cset = model.getCoordinateSet()
        self.coords = [cset.get(c) for c in free]
        muscles = model.getMuscles()
        self.paths = [muscles.get(i).getGeometryPath() for i in range(muscles.getSize())]
        self.assemble = model.getConstraintSet().getSize() > 0

    def set(self, q: np.ndarray) -> np.ndarray:
        """Pose the model at ``q`` (C,), dependent coordinates following their constraints; return the
        free coordinates' values as posed."""
        for coord, value in zip(self.coords, q, strict=True):
            coord.setValue(self.state, float(value), False)
        if self.assemble:
            self.model.assemble(self.state)
        self.model.realizePosition(self.state)
        return np.array([c.getValue(self.state) for c in self.coords])

    def lengths(self) -> np.ndarray:
        """Every muscle's path length (M,) at the current pose."""
        return np.array([p.getLength(self.state) for p in self.paths])

    def arm(self, muscle: int, coordinate: int) -> float:
        """Moment arm of one muscle about one free coordinate at the current pose (OpenSim's solver)."""
        return float(self.paths[muscle].computeMomentArm(self.state, self.coords[coordinate]))


def path_set_xml(paths: dict[str, dict[str, Any]], coordinate_paths: dict[str, str]) -> ET.ElementTree:
    """OpenSim's FunctionBasedPathSet XML (one MultivariatePolynomialFunction per muscle)."""
    root = ET.Element("OpenSimDocument", Version="40600")
    objects = ET.SubElement(ET.SubElement(root, "Set_FunctionBasedPath_"), "objects")
    for name, entry in paths.items():
        fbp = ET.SubElement(objects, "FunctionBasedPath", name=f"/forceset/{name}")
        args = " ".join(coordinate_paths[c] for c in entry["coordinates"])
        ET.SubElement(fbp, "coordinate_paths").text = args
        poly = ET.SubElement(ET.SubElement(fbp, "length_function"), "MultivariatePolynomialFunction")
        ET.SubElement(poly, "coefficients").text = " ".join(repr(float(c)) for c in entry["coefficients"])
        ET.SubElement(poly, "dimension").text = str(len(entry["coordinates"]))
        ET.SubElement(poly, "order").text = str(entry["order"])
    ET.indent(root, space="\t")
    return ET.ElementTree(root)


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
    seed: int = 0,
    refine_tolerance: float = 5e-4,
    refine_rounds: int = 2,
    log: PathLike | None = None,
) -> dict[str, Any]:
    """Fit every muscle path of ``model`` as a polynomial of its coordinates; write ``paths_out``.

    ``max_fit_frames`` frames spread over all the trials' coordinate files are each sampled
    ``samples_per_frame`` times (seeded Latin hypercube, ``seed``) within +- ``sampling_bounds_deg``
    (degrees; the same number in cm for translations) of the frame. At every sample OpenSim poses
    the model (dependent coordinates follow their constraints) and gives each muscle's path length
    and its moment arms (OpenSim's moment-arm solver). A muscle depends on the free coordinates
    whose moment arm exceeds ``moment_arm_threshold`` (m) at some frame; its polynomial (order up
    to ``max_order``) is fitted by least squares to lengths and moment arms together, as OpenSim's
    PolynomialPathFitter does, but with a fixed seed so the same inputs give the same paths.
    The paths are then checked against OpenSim at the trials' own frames; up to ``refine_rounds``
    times, the frames where some length is off by more than ``refine_tolerance`` (m) are sampled
    and added to the fit. ``frame_rmse`` in ``paths_out`` records the check.
    ``paths_out`` is JSON for :class:`PolynomialPaths`; ``path_set_out`` (optional) receives the
    same polynomials as OpenSim's FunctionBasedPathSet XML.
    """
    route_opensim_log(log, level="Warn")
    mots = [require_file(m, what="coordinates file", field="coordinates_mots") for m in coordinates_mots]
    if not mots:
        raise InputDataError("coordinates_mots: no coordinates file given; the fit needs at least one trial")
    osim = load_model(model)
    model_path = Path(model).resolve()
    muscles = [osim.getMuscles().get(i).getName() for i in range(osim.getMuscles().getSize())]
    if not muscles:
        raise OpenSimToolError(f"model {model_path} has no muscles to fit")
    free = free_coordinates(osim)
    visited = trial_frames(model=osim, mots=mots, coordinates=free)
    frames = visited[select_frames(visited, max_fit_frames)]
    t0 = _time.perf_counter()
    cset = osim.getCoordinateSet()
    rot = np.array([is_rotational(osim, c) for c in free], dtype=bool)
    half = np.where(rot, np.deg2rad(float(sampling_bounds_deg)), float(sampling_bounds_deg) / 100.0)
    lower = np.array([cset.get(c).getRangeMin() for c in free])
    upper = np.array([cset.get(c).getRangeMax() for c in free])
    logger.info(
        "path fit %s: %d muscles, %d frames x %d samples, +-%g deg, order <= %d, seed %d",
        model_path.name,
        len(muscles),
        len(frames),
        samples_per_frame,
        sampling_bounds_deg,
        max_order,
        seed,
    )
    probe = _PathProbe(osim, free)
    # which coordinates each path depends on: moment arms about every free coordinate at (up to 12
    # of) the fit frames, half spread evenly and half at the extremes of the visited poses
    depends = np.zeros((len(muscles), len(free)), dtype=bool)
    for q in frames[select_frames(frames, 12)]:
        probe.set(q)
        for m in range(len(muscles)):
            for c in range(len(free)):
                if not depends[m, c] and abs(probe.arm(m, c)) > moment_arm_threshold:
                    depends[m, c] = True
    # a path that crosses no free coordinate (only locked ones) has a constant length: fit it as
    # an order-0 polynomial of the first free coordinate
    constant = ~depends.any(axis=1)
    columns = [np.flatnonzero(depends[m]) if not constant[m] else np.array([0]) for m in range(len(muscles))]

    def measure(points: np.ndarray, with_arms: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        posed = np.empty_like(points)
        lengths = np.empty((len(points), len(muscles)))
        arms = np.zeros((len(points), len(muscles), len(free)))
        for k, q in enumerate(points):
            posed[k] = probe.set(q)
            lengths[k] = probe.lengths()
            if with_arms:
                for m in range(len(muscles)):
                    for c in np.flatnonzero(depends[m]):
                        arms[k, m, c] = probe.arm(m, int(c))
        return posed, lengths, arms

    # the fit is checked against OpenSim at the trials' own frames within the model's coordinate
    # ranges (lengths at up to 2000 frames, moment arms at 60); frames it misses by more than
    # ``refine_tolerance`` are added to the fit. Poses outside the ranges (e.g. a knee
    # hyperextended by IK) can cross wrapping discontinuities no smooth path follows: they are fitted
    # too but only counted.
    # (the joint to ground is left out: no muscle path depends on where the body is in the lab, and
    # a walk in the other direction takes the heading beyond the model's +-90 deg range)
    slack = np.where(rot, np.deg2rad(1.0), 0.01)
    roots = np.isin(free, root_coordinates(osim))
    in_range = np.all((visited >= lower - slack) & (visited <= upper + slack) | roots, axis=1)
    outside = int((~in_range).sum())
    if outside:
        worst = np.argmax(np.where(roots, -np.inf, np.maximum(lower - visited, visited - upper).max(axis=0)))
        logger.warning(
            "path fit %s: %d of %d trial frames are outside the model's coordinate ranges (most: %s); "
            "the fitted paths are checked on the other frames only; check inverse kinematics",
            model_path.name,
            outside,
            len(visited),
            free[int(worst)],
        )
    pool = visited[in_range] if in_range.any() else visited
    check = pool[spread(len(pool), 2000)]
    check_posed, check_lengths, _ = measure(check, with_arms=False)
    arm_rows = spread(len(check), 60)
    _, _, check_arms = measure(check_posed[arm_rows])
    posed = np.empty((0, len(free)))
    lengths = np.empty((0, len(muscles)))
    arms = np.empty((0, len(muscles), len(free)))
    new_frames, rounds, used = frames, 0, 0
    while True:
        samples = sample_coordinates(
            new_frames,
            half_width=half,
            lower=lower,
            upper=upper,
            samples_per_frame=samples_per_frame,
            seed=seed + rounds,
        )
        got = measure(samples)
        posed, lengths, arms = (
            np.concatenate([x, y]) for x, y in zip((posed, lengths, arms), got, strict=True)
        )
        used += len(new_frames)
        polys = {}
        sampled = {"worst_length": ["", -1.0], "worst_moment_arm": ["", -1.0]}
        for m, name in enumerate(muscles):
            cols = columns[m]
            order, coefs, l_rms, r_rms = fit_polynomial(
                posed[:, cols], lengths[:, m], arms[:, m, cols], max_order=0 if constant[m] else max_order
            )
            polys[name] = PathPolynomial(tuple(free[c] for c in cols), exponents(len(cols), order), coefs)
            for key, value in (("worst_length", l_rms), ("worst_moment_arm", r_rms)):
                if value > sampled[key][1]:
                    sampled[key] = [name, value]
        fitted = PolynomialPaths(polys)
        est_len, est_arm = fitted.evaluate(q=check_posed, coordinates=free, muscles=muscles)
        err = np.abs(est_len - check_lengths)  # (frames, muscles)
        if err.max() <= refine_tolerance or rounds >= refine_rounds:
            break
        worst_frames = np.argsort(-err.max(axis=1))[: max(1, max_fit_frames // 2)]
        new_frames = check[worst_frames[err.max(axis=1)[worst_frames] > refine_tolerance]]
        rounds += 1
    len_rms = np.sqrt(np.mean(err**2, axis=0))
    arm_rms = np.sqrt(np.mean((est_arm[arm_rows] - check_arms) ** 2, axis=0))  # (muscles, coords)
    lm, (am, ac) = int(np.argmax(len_rms)), np.unravel_index(np.argmax(arm_rms), arm_rms.shape)
    at_frames = {
        "frames": int(len(check)),
        "worst_length": [muscles[lm], float(len_rms[lm])],
        "worst_moment_arm": [f"{muscles[am]}/{free[ac]}", float(arm_rms[am, ac])],
        "largest_length_error": float(err.max()),
        "frames_outside_ranges": outside,
        "trial_frames": int(len(visited)),
    }
    parsed = {
        name: {
            "coordinates": list(p.coordinates),
            "order": int(p.exponents.max(initial=0)),
            "coefficients": [float(v) for v in p.coefficients],
        }
        for name, p in polys.items()
    }
    fit_rmse = sampled
    for key in ("worst_length", "worst_moment_arm"):
        if at_frames[key][1] > 1e-3:
            logger.warning(
                "path fit %s: %s RMS %.2f mm at the trials' frames (%s) is above 1 mm; raise "
                "opensim.path_fit.frames or max_order, or use opensim.ma_method: opensim",
                model_path.name,
                key.replace("worst_", "").replace("_", " "),
                1e3 * at_frames[key][1],
                at_frames[key][0],
            )
    seconds = _time.perf_counter() - t0
    out_json = Path(paths_out)
    with work_dir(out_json) as tmp:
        payload = {
            "format": PATHS_FORMAT,
            "model": str(model_path),
            "trials": [str(m) for m in mots],
            "settings": {
                "max_fit_frames": max_fit_frames,
                "fit_frames": used,
                "samples_per_frame": samples_per_frame,
                "sampling_bounds_deg": sampling_bounds_deg,
                "max_order": max_order,
                "moment_arm_threshold": moment_arm_threshold,
                "seed": seed,
            },
            "fit_seconds": seconds,
            "refine_rounds": rounds,
            "sampled_rmse": fit_rmse,
            "frame_rmse": at_frames,
            "paths": parsed,
        }
        (tmp / "paths.json").write_text(json.dumps(payload, indent=1))
        pairs = [(tmp / "paths.json", out_json)]
        if path_set_out is not None:
            coord_paths = {c: cset.get(c).getAbsolutePathString() for c in free}
            path_set_xml(parsed, coord_paths).write(
                tmp / "function_based_paths.xml", encoding="UTF-8", xml_declaration=True
            )
            pairs.append((tmp / "function_based_paths.xml", Path(path_set_out)))
        publish(pairs)
    logger.info(
        "path fit: %.1f s, %d frames (%d refinements); at %d trial frames worst length RMS %.3g mm (%s), "
        "worst moment arm RMS %.3g mm (%s)",
        seconds,
        used,
        rounds,
        at_frames["frames"],
        1e3 * at_frames["worst_length"][1],
        at_frames["worst_length"][0],
        1e3 * at_frames["worst_moment_arm"][1],
        at_frames["worst_moment_arm"][0],
    )
    return {
        "muscles": len(muscles),
        "fit_frames": used,
        "seconds": seconds,
        **fit_rmse,
        "frame_rmse": at_frames,
    }


# ---------------------------------------------------------------- accepting a fit


def fit_check(paths: PathLike) -> dict[str, Any]:
    """The fit's own check against OpenSim, read from :func:`fit_paths`'s JSON.

    ``{"length": (muscle, RMS m), "moment_arm": ("muscle/coordinate", RMS m), "outside_share":
    share of the trials' frames outside the model's coordinate ranges}``.
    """
    p = require_file(paths, what="fitted paths", field="paths")
    try:
        check = json.loads(p.read_text())["frame_rmse"]
        length, arm = tuple(check["worst_length"]), tuple(check["worst_moment_arm"])
        share = check["frames_outside_ranges"] / max(int(check.get("trial_frames", check["frames"])), 1)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputDataError(f"{p}: no usable field 'frame_rmse' ({exc}); rerun the path_fit stage") from exc
    return {"length": length, "moment_arm": arm, "outside_share": share}


def fit_accepted(
    paths: PathLike, *, length_mm: float, moment_arm_mm: float, outside_share: float
) -> tuple[bool, str]:
    """Whether fitted paths passed their own check against OpenSim, with the reason.

    ``paths`` is :func:`fit_paths`'s JSON. The fit is accepted when, at the trials' own frames,
    its worst per-muscle length RMS is at most ``length_mm``, its worst moment-arm RMS at most
    ``moment_arm_mm`` (mm), and at most ``outside_share`` of the frames lie outside the model's
    coordinate ranges (where the check cannot vouch for it). The ``auto`` muscle analysis and
    static optimisation methods use the fitted paths only then, OpenSim's tools otherwise.
    """
    check = fit_check(paths)
    (name_l, worst_l), (name_a, worst_a), share = check["length"], check["moment_arm"], check["outside_share"]
    misses = []
    if 1e3 * worst_l > length_mm:
        misses.append(f"length RMS {1e3 * worst_l:.2f} mm ({name_l}) > {length_mm:g} mm")
    if 1e3 * worst_a > moment_arm_mm:
        misses.append(f"moment-arm RMS {1e3 * worst_a:.2f} mm ({name_a}) > {moment_arm_mm:g} mm")
    if share > outside_share:
        misses.append(f"{100 * share:.0f} % of the frames outside the model's coordinate ranges")
    if misses:
        return False, "; ".join(misses)
    return True, f"length RMS {1e3 * worst_l:.2f} mm, moment-arm RMS {1e3 * worst_a:.2f} mm at trial frames"


def resolve_method(
    method: str, *, fast: str, paths: PathLike | None, accept: dict[str, float], stage: str
) -> str:
    """The method a stage runs: ``method`` itself, or for ``auto`` ``fast`` if the fit is accepted.

    ``accept`` holds :func:`fit_accepted`'s limits (``opensim.path_fit.accept``); the choice and
    its reason are logged, so each job's log says which tool made its numbers.
    """
    if method != "auto":
        return method
    if paths is None:
        raise InputDataError(f"{stage}: method 'auto' needs the subject's fitted paths (paths.json)")
    ok, why = fit_accepted(paths, **accept)
    if ok:
        logger.info("%s: fitted paths accepted (%s): %s", stage, why, fast)
        return fast
    logger.warning(
        "%s: fitted paths not accepted (%s): OpenSim's tool runs instead; widen "
        "opensim.path_fit (frames, max_order) or check inverse kinematics",
        stage,
        why,
    )
    return "opensim"


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
        raise OutputCheckError(_non_positive_message(model_path, kin, names, length, coords_file))
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


def _non_positive_message(
    model: Path, kin: dict[str, Any], names: Sequence[str], length: np.ndarray, coords_file: Path
) -> str:
    """Why fitted paths gave non-positive lengths: which muscles, when, and which coordinates of
    those frames lie outside the model's ranges (IK that left the anatomy, where no fit holds)."""
    from musculo.opensim_tools.quality import coordinate_ranges

    bad_frames, bad_muscles = np.nonzero(length <= 0)
    muscles = sorted({names[m] for m in bad_muscles})
    times = kin["time"][bad_frames]
    outside = []
    for c, (lo, hi, _) in coordinate_ranges(model).items():
        if c not in kin["coordinates"]:
            continue
        q = kin["q"][bad_frames, kin["coordinates"].index(c)]
        if np.any((q < lo - 1e-6) | (q > hi + 1e-6)):
            outside.append(f"{c} reaches {q.min():.3g}..{q.max():.3g} (range {lo:.3g}..{hi:.3g})")
    where = (f"; coordinates outside the model's ranges there: {'; '.join(outside)} (check the IK of "
             "this trial: its frames_outside_range rows in quality.tsv)") if outside else ""
    return (
        f"muscle analysis (polynomial paths): non-positive muscle-tendon lengths of {muscles} in "
        f"{coords_file.name} at t = {times.min():.3f}..{times.max():.3f} s{where}. Fix the IK, or use "
        "OpenSim's MuscleAnalysis for this subject (`config: {opensim: {ma_method: opensim}}` in its "
        "subject file), or rerun path_fit if its trials changed"
    )


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
