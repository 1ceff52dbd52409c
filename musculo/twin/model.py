"""A small planar lower-limb OpenSim model built with the OpenSim API.

Nine degrees of freedom (planar pelvis: ``pelvis_tilt``, ``pelvis_tx``, ``pelvis_ty``; per leg
``hip_flexion``, ``knee_angle``, ``ankle_angle``) and nine muscles per leg (hamstrings, biceps
femoris short head, gluteus maximus, iliopsoas, rectus femoris, vasti, gastrocnemius, soleus,
tibialis anterior). Segment inertial parameters, joint centres, muscle paths (including the moving
patellar path points of the quadriceps) and muscle parameters are those of Delp et al. (1990,
IEEE TBME 37:757) as distributed in OpenSim's gait10dof18musc model (Anderson and Pandy 1999 mass
properties). The trunk is welded to the pelvis; talus and toes are lumped into the foot (``calcn``).
Knee flexion is negative, hip flexion and ankle dorsiflexion positive (OpenSim gait-model convention).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from musculo.io.atomic import atomic_output

COORDINATES: tuple[str, ...] = (
    "pelvis_tilt", "pelvis_tx", "pelvis_ty",
    "hip_flexion_r", "knee_angle_r", "ankle_angle_r",
    "hip_flexion_l", "knee_angle_l", "ankle_angle_l",
)  # fmt: skip
"""Model coordinates, in the model's CoordinateSet order."""

MUSCLE_BASES: tuple[str, ...] = (
    "hamstrings", "bifemsh", "glut_max", "iliopsoas", "rect_fem",
    "vasti", "gastroc", "soleus", "tib_ant",
)  # fmt: skip
"""Muscle names without the side suffix (``_r`` / ``_l``)."""

NOMINAL_HEIGHT = 1.80
"""Standing height (m) of the unscaled model."""

# (name, mass kg, centre of mass, principal inertia) of the right-side and midline bodies.
_BODIES: dict[str, tuple[float, tuple[float, float, float], tuple[float, float, float]]] = {
    "pelvis": (11.777, (-0.0707, 0.0, 0.0), (0.1028, 0.0871, 0.0579)),
    "torso": (34.2366, (-0.03, 0.32, 0.0), (1.4745, 0.7555, 1.4314)),
    "femur": (9.3014, (0.0, -0.17, 0.0), (0.1339, 0.0351, 0.1412)),
    "tibia": (3.7075, (0.0, -0.1867, 0.0), (0.0504, 0.0051, 0.0511)),
    # calcaneus 1.25 kg + talus 0.1 kg + toes 0.2166 kg
    "calcn": (1.5666, (0.1, 0.03, 0.0), (0.0016, 0.0045, 0.0046)),
}
_HIP = (-0.0707, -0.0661, 0.0835)
_KNEE = (-0.004, -0.396, 0.0)  # knee centre in the femur at small flexion (Delp 1990 spline)
_ANKLE = (0.0, -0.43, 0.0)
_TALUS_IN_CALCN = (0.04877, 0.04195, 0.0)
_TORSO_IN_PELVIS = (-0.1007, 0.0815, 0.0)

_PATELLA_X = (
    -2.0944, -1.99997, -1.5708, -1.45752, -1.39626, -1.0472, -0.698132, -0.526391, -0.349066,
    -0.174533, 0.0, 0.00017453, 0.00034907, 0.0279253, 0.0872665, 0.174533, 2.0944,
)  # fmt: skip


@dataclass(frozen=True)
class MuscleSpec:
    """Literature parameters and path of one right-side muscle (the left one is mirrored in z)."""

    max_isometric_force: float
    optimal_fiber_length: float
    tendon_slack_length: float
    pennation_angle: float
    points: tuple[tuple[str, tuple[float, float, float]], ...]
    # (index in points, coordinate, range min, range max) for conditional path points
    conditional: tuple[tuple[int, str, float, float], ...] = ()
    # (x spline y-values, y spline y-values, z) of a tibial point moving with knee angle
    moving: tuple[tuple[float, ...], tuple[float, ...], float] | None = None


MUSCLES: dict[str, MuscleSpec] = {
    "hamstrings": MuscleSpec(2700, 0.109, 0.326, 0.0, (
        ("pelvis", (-0.12596, -0.10257, 0.06944)),
        ("tibia", (-0.0301, -0.036, 0.02943)),
        ("tibia", (-0.0234, -0.0563, 0.0343)))),
    "bifemsh": MuscleSpec(804, 0.173, 0.089, 0.40143, (
        ("femur", (0.005, -0.2111, 0.0234)),
        ("tibia", (-0.0301, -0.036, 0.02943)),
        ("tibia", (-0.0234, -0.0563, 0.0343)))),
    "glut_max": MuscleSpec(1944, 0.147, 0.127, 0.0, (
        ("pelvis", (-0.1349, 0.0176, 0.0563)),
        ("pelvis", (-0.1376, -0.052, 0.0914)),
        ("femur", (-0.0426, -0.053, 0.0293)),
        ("femur", (-0.0156, -0.1016, 0.0419)))),
    "iliopsoas": MuscleSpec(2342, 0.1, 0.16, 0.13963, (
        ("pelvis", (-0.0647, 0.0887, 0.0289)),
        ("pelvis", (-0.0238, -0.057, 0.0759)),
        ("pelvis", (-0.0288, -0.0805, 0.0816)),
        ("femur", (0.0016, -0.0507, 0.0038)),
        ("femur", (-0.0188, -0.0597, 0.0104))),
        conditional=((2, "hip_flexion", -1.5708, 0.785398),)),
    "rect_fem": MuscleSpec(1169, 0.114, 0.31, 0.087266, (
        ("pelvis", (-0.0295, -0.0311, 0.0968)),
        ("femur", (0.0334, -0.403, 0.0019)),
        ("tibia", (0.0, 0.0, 0.0))),
        conditional=((1, "knee_angle", -2.61799, -1.45997),),
        moving=((0.0155805, 0.0179938, 0.0275081, 0.0296564, 0.0307615, 0.0365695, 0.0422074,
                 0.0450902, 0.048391, 0.0534299, 0.0617576, 0.0617669, 0.0617762, 0.0633083,
                 0.066994, 0.0733035, 0.0573481),
                (0.0234116, 0.0237613, 0.0251141, 0.0252795, 0.0253146, 0.0249184, 0.0242373,
                 0.0238447, 0.0234197, 0.0227644, 0.020984, 0.0209814, 0.0209788, 0.0205225,
                 0.0191754, 0.0159554, -0.0673774), 0.0014)),
    "vasti": MuscleSpec(5000, 0.087, 0.136, 0.05236, (
        ("femur", (0.029, -0.1924, 0.031)),
        ("femur", (0.0335, -0.2084, 0.0285)),
        ("femur", (0.0343, -0.403, 0.0055)),
        ("tibia", (0.0, 0.0, 0.0))),
        conditional=((2, "knee_angle", -2.61799, -1.42),),
        moving=((0.0082733, 0.0106866, 0.0202042, 0.022353, 0.0234583, 0.0292715, 0.0349465,
                 0.037871, 0.0412569, 0.0465287, 0.0554632, 0.0554735, 0.0554837, 0.0571717,
                 0.061272, 0.0684368, 0.0648818),
                (0.025599, 0.0259487, 0.0273124, 0.0274796, 0.0275151, 0.0271363, 0.0265737,
                 0.0263073, 0.0261187, 0.0260129, 0.0252923, 0.0252911, 0.0252898, 0.0250526,
                 0.0242191, 0.0218288, -0.0685706), 0.0018)),
    "gastroc": MuscleSpec(2500, 0.06, 0.39, 0.29671, (
        ("femur", (-0.019, -0.3929, -0.0235)),
        ("femur", (-0.03, -0.4022, -0.0258)),
        ("calcn", (0.0, 0.031, -0.0053))),
        conditional=((1, "knee_angle", -0.785398, 0.174533),)),
    "soleus": MuscleSpec(5137, 0.05, 0.25, 0.43633, (
        ("tibia", (-0.0024, -0.1533, 0.0071)),
        ("calcn", (0.0, 0.031, -0.0053)))),
    "tib_ant": MuscleSpec(3000, 0.098, 0.223, 0.087266, (
        ("tibia", (0.0179, -0.1624, 0.0115)),
        ("tibia", (0.0329, -0.3951, -0.0177)),
        ("calcn", (0.1166, 0.0178, -0.0305)))),
}  # fmt: skip

# Markers: (name without side prefix, body, location in the body frame, right side); midline
# markers have no side. Positions follow common lab placement (ASIS, PSIS, thigh/shank wands,
# lateral epicondyle and malleolus, heel, 2nd metatarsal head) on the Delp skeleton.
_MARKERS_MIDLINE: tuple[tuple[str, str, tuple[float, float, float]], ...] = (
    ("C7", "torso", (-0.07, 0.43, 0.0)),
    ("STRN", "torso", (0.08, 0.25, 0.0)),
)
_MARKERS_SIDE: tuple[tuple[str, str, tuple[float, float, float]], ...] = (
    ("ASI", "pelvis", (0.012, 0.0, 0.125)),
    ("PSI", "pelvis", (-0.155, 0.035, 0.045)),
    ("THI", "femur", (0.01, -0.22, 0.08)),
    ("KNE", "femur", (0.0, -0.404, 0.05)),
    ("TIB", "tibia", (0.005, -0.22, 0.06)),
    ("ANK", "tibia", (-0.005, -0.41, 0.053)),
    ("HEE", "calcn", (-0.01, 0.03, 0.0)),
    ("TOE", "calcn", (0.18, 0.015, 0.0)),
)
FOOT_CONTACT_POINTS: dict[str, tuple[float, float, float]] = {
    "heel": (0.0, 0.0, 0.0),
    "toe": (0.19, 0.0, 0.0),
}
"""Sole points of the foot (``calcn`` frame) between which the centre of pressure travels."""


def marker_names() -> list[str]:
    """Names of the model's markers (``R``/``L`` prefix for the sides, e.g. ``RKNE``)."""
    names = [m[0] for m in _MARKERS_MIDLINE]
    for side in ("R", "L"):
        names += [f"{side}{m[0]}" for m in _MARKERS_SIDE]
    return names


@dataclass
class ModelParameters:
    """What distinguishes one built model from the generic one (all factors 1 by default)."""

    segment_scale: dict[str, float] = field(default_factory=dict)
    """Length factor per body base name (pelvis, torso, femur, tibia, calcn)."""
    mass: float | None = None
    """Total mass (kg); segment masses are scaled in proportion. None keeps the generic 75.2 kg."""
    max_isometric_force: dict[str, float] = field(default_factory=dict)
    """Factor per full muscle name (e.g. ``iliopsoas_r``)."""
    optimal_fiber_length: dict[str, float] = field(default_factory=dict)
    """Factor per full muscle name."""
    tendon_slack_length: dict[str, float] = field(default_factory=dict)
    """Factor per full muscle name."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        return {
            "segment_scale": dict(self.segment_scale),
            "mass": self.mass,
            "max_isometric_force": dict(self.max_isometric_force),
            "optimal_fiber_length": dict(self.optimal_fiber_length),
            "tendon_slack_length": dict(self.tendon_slack_length),
        }


def generic_mass() -> float:
    """Total mass (kg) of the generic model."""
    masses = {name: spec[0] for name, spec in _BODIES.items()}
    return masses["pelvis"] + masses["torso"] + 2 * (masses["femur"] + masses["tibia"] + masses["calcn"])


def _mirror(point: tuple[float, float, float], side: str) -> Any:
    import opensim as osim

    x, y, z = point
    return osim.Vec3(x, y, z if side == "r" else -z)


def _scaled(point: tuple[float, float, float], factor: float) -> tuple[float, float, float]:
    return (point[0] * factor, point[1] * factor, point[2] * factor)


def build_model(
    *, name: str = "musculo_twin", parameters: ModelParameters | None = None
) -> Any:
    """Build the planar lower-limb model (an ``opensim.Model``, finalized, with markers).

    ``parameters`` scales segment lengths (joint centres, muscle points, markers, centres of mass;
    inertias with mass x length squared), the total mass, and individual muscle parameters; tendon
    slack and optimal fibre lengths also follow the length factor of the segments they span.
    """
    import opensim as osim

    p = parameters or ModelParameters()
    k = {b: float(p.segment_scale.get(b, 1.0)) for b in _BODIES}
    mass_factor = (p.mass / generic_mass()) if p.mass else 1.0

    model = osim.Model()
    model.setName(name)
    model.setGravity(osim.Vec3(0, -9.80665, 0))
    bodies: dict[str, Any] = {}

    def add_body(body_name: str, base: str) -> Any:
        mass, com, inertia = _BODIES[base]
        s = k[base]
        m = mass * mass_factor
        ratio = m / mass * s * s
        body = osim.Body(
            body_name, m, osim.Vec3(*_scaled(com, s)),
            osim.Inertia(inertia[0] * ratio, inertia[1] * ratio, inertia[2] * ratio, 0, 0, 0),
        )  # fmt: skip
        model.addBody(body)
        bodies[body_name] = body
        return body

    pelvis = add_body("pelvis", "pelvis")
    torso = add_body("torso", "torso")
    ground_pelvis = osim.PlanarJoint(
        "ground_pelvis", model.getGround(), osim.Vec3(0), osim.Vec3(0), pelvis, osim.Vec3(0),
        osim.Vec3(0),
    )  # fmt: skip
    for i, (cname, lo, hi, default) in enumerate(
        [("pelvis_tilt", -1.5708, 1.5708, 0.0), ("pelvis_tx", -5.0, 10.0, 0.0),
         ("pelvis_ty", -1.0, 2.0, 0.93)]
    ):  # fmt: skip
        coord = ground_pelvis.upd_coordinates(i)
        coord.setName(cname)
        coord.setRangeMin(lo)
        coord.setRangeMax(hi)
        coord.setDefaultValue(default * (k["femur"] if cname == "pelvis_ty" else 1.0))
    model.addJoint(ground_pelvis)
    model.addJoint(
        osim.WeldJoint(
            "back", pelvis, osim.Vec3(*_scaled(_TORSO_IN_PELVIS, k["pelvis"])), osim.Vec3(0),
            torso, osim.Vec3(0), osim.Vec3(0),
        )
    )  # fmt: skip

    for side in ("r", "l"):
        femur = add_body(f"femur_{side}", "femur")
        tibia = add_body(f"tibia_{side}", "tibia")
        calcn = add_body(f"calcn_{side}", "calcn")
        joints = [
            (f"hip_{side}", pelvis, _scaled(_HIP, k["pelvis"]), femur, (0.0, 0.0, 0.0),
             f"hip_flexion_{side}", (-2.0944, 2.0944)),
            (f"knee_{side}", femur, _scaled(_KNEE, k["femur"]), tibia, (0.0, 0.0, 0.0),
             f"knee_angle_{side}", (-2.0944, 0.17453)),
            (f"ankle_{side}", tibia, _scaled(_ANKLE, k["tibia"]), calcn,
             _scaled(_TALUS_IN_CALCN, k["calcn"]), f"ankle_angle_{side}", (-1.5708, 1.5708)),
        ]  # fmt: skip
        for jname, parent, ploc, child, cloc, cname, (lo, hi) in joints:
            joint = osim.PinJoint(
                jname, parent, _mirror(ploc, side), osim.Vec3(0), child, _mirror(cloc, side),
                osim.Vec3(0),
            )  # fmt: skip
            coord = joint.upd_coordinates(0)
            coord.setName(cname)
            coord.setRangeMin(lo)
            coord.setRangeMax(hi)
            model.addJoint(joint)

    for side in ("r", "l"):
        for base, spec in MUSCLES.items():
            _add_muscle(model, osim, bodies, base, spec, side, k, p)

    for mname, body, loc in _MARKERS_MIDLINE:
        model.addMarker(osim.Marker(mname, bodies[body], osim.Vec3(*_scaled(loc, k[body]))))
    for side, prefix in (("r", "R"), ("l", "L")):
        for mname, base, loc in _MARKERS_SIDE:
            body = base if base in ("pelvis", "torso") else f"{base}_{side}"
            model.addMarker(
                osim.Marker(f"{prefix}{mname}", bodies[body], _mirror(_scaled(loc, k[base]), side))
            )
    model.finalizeConnections()
    model.initSystem()
    return model


def _add_muscle(
    model: Any, osim: Any, bodies: dict[str, Any], base: str, spec: MuscleSpec, side: str,
    k: dict[str, float], p: ModelParameters,
) -> None:
    full = f"{base}_{side}"
    spanned = {b for b, _ in spec.points}
    length_factor = sum(k[b] for b in spanned) / len(spanned)
    muscle = osim.Millard2012EquilibriumMuscle(
        full,
        spec.max_isometric_force * p.max_isometric_force.get(full, 1.0),
        spec.optimal_fiber_length * length_factor * p.optimal_fiber_length.get(full, 1.0),
        spec.tendon_slack_length * length_factor * p.tendon_slack_length.get(full, 1.0),
        spec.pennation_angle,
    )
    muscle.set_activation_time_constant(0.01)
    muscle.set_deactivation_time_constant(0.04)
    muscle.set_max_contraction_velocity(10.0)
    path_points = muscle.updGeometryPath().updPathPointSet()
    conditional = {c[0]: c for c in spec.conditional}
    for i, (base_body, loc) in enumerate(spec.points):
        body_name = base_body if base_body in ("pelvis", "torso") else f"{base_body}_{side}"
        body = bodies[body_name]
        location = _mirror(_scaled(loc, k[base_body]), side)
        pname = f"{full}-P{i + 1}"
        if spec.moving is not None and i == len(spec.points) - 1:
            point = osim.MovingPathPoint()
            point.setName(pname)
            point.setParentFrame(body)
            xs, ys, z = spec.moving
            s = k[base_body]
            fx, fy, fz = osim.SimmSpline(), osim.SimmSpline(), osim.SimmSpline()
            for angle, vx, vy in zip(_PATELLA_X, xs, ys, strict=True):
                fx.addPoint(angle, vx * s)
                fy.addPoint(angle, vy * s)
            fz.addPoint(_PATELLA_X[0], z if side == "r" else -z)
            fz.addPoint(_PATELLA_X[-1], z if side == "r" else -z)
            point.set_x_location(fx)
            point.set_y_location(fy)
            point.set_z_location(fz)
            coord = model.getCoordinateSet().get(f"knee_angle_{side}")
            point.setXCoordinate(coord)
            point.setYCoordinate(coord)
            point.setZCoordinate(coord)
            path_points.adoptAndAppend(point)
        elif i in conditional:
            _, cbase, lo, hi = conditional[i]
            point = osim.ConditionalPathPoint()
            point.setName(pname)
            point.setParentFrame(body)
            point.set_location(location)
            point.setCoordinate(model.getCoordinateSet().get(f"{cbase}_{side}"))
            point.setRangeMin(lo)
            point.setRangeMax(hi)
            path_points.adoptAndAppend(point)
        else:
            muscle.addNewPathPoint(pname, body, location)
    model.addForce(muscle)


def write_model(
    *, model: Any, path: str | os.PathLike[str], marker_set_path: str | os.PathLike[str] | None = None
) -> Path:
    """Print ``model`` to ``path`` (and its MarkerSet to ``marker_set_path``), atomically."""
    path = Path(path)
    with atomic_output(path) as tmp:
        model.printToXML(str(tmp))
    if marker_set_path is not None:
        with atomic_output(marker_set_path) as tmp:
            model.getMarkerSet().printToXML(str(tmp))
    return path
