"""Write a lab-style C3D file with ezc3d: markers, TYPE 2 force plates and analog EMG.

The file looks like a motion lab's export: markers in mm in a Z-up lab frame, analog channels at an
integer multiple of the marker rate (force plate channels Fx Fy Fz Mx My Mz in N and N mm in each
plate's own frame, which has its Z axis pointing down into the plate, then EMG channels in V), and
FORCE_PLATFORM parameters (TYPE 2, CORNERS, ORIGIN, CHANNEL) from which readers such as ezc3d
recover forces, moments and centres of pressure in the lab frame.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musculo.errors import MusculoError
from musculo.io.atomic import atomic_output

PLATE_CHANNELS = ("Fx", "Fy", "Fz", "Mx", "My", "Mz")

# plate frame axes in the lab frame: x along lab X, y along lab -Y, z down (lab -Z)
PLATE_AXES = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
"""Rows: the plate's x, y, z axes expressed in the lab frame."""


class C3DWriteError(MusculoError):
    """Inconsistent data given to the C3D writer."""


@dataclass
class ForcePlate:
    """One plate: centre of its top surface (lab, mm), size (mm), depth of its origin (mm)."""

    center: tuple[float, float]
    size: tuple[float, float] = (600.0, 400.0)
    origin_depth: float = 40.0

    def corners(self) -> np.ndarray:
        """(3, 4) corners in the lab frame, in the C3D order (+x+y, -x+y, -x-y, +x-y of the plate)."""
        a, b = self.size[0] / 2.0, self.size[1] / 2.0
        local = np.array([[a, b, 0.0], [-a, b, 0.0], [-a, -b, 0.0], [a, -b, 0.0]])
        lab = local @ PLATE_AXES
        lab[:, 0] += self.center[0]
        lab[:, 1] += self.center[1]
        return lab.T

    def analog(self, *, force: np.ndarray, cop: np.ndarray, free_moment: np.ndarray) -> np.ndarray:
        """Plate channels (T, 6) for a force (lab, N), its COP and free moment.

        Pass the ground reaction on the body (up in stance): that is what lab plates report and
        what ezc3d returns for them (and what :func:`musculo.io.c3d.read_c3d` expects).

        ``cop`` is in the lab frame (mm, on the surface); ``free_moment`` is about the lab Z (N mm).
        Moments are about the plate's true origin, ``origin_depth`` mm below the surface centre.
        """
        f_plate = force @ PLATE_AXES.T
        rel = (cop - np.array([self.center[0], self.center[1], 0.0])) @ PLATE_AXES.T
        rel[:, 2] = -self.origin_depth  # the surface lies origin_depth above the origin (z down)
        moment = np.cross(rel, f_plate)
        moment[:, 2] += -free_moment  # lab Z is the plate's -z
        return np.column_stack([f_plate, moment])


def _int_parameter(c3d: Any, group: str, name: str, value: np.ndarray) -> None:
    """Add an INT parameter (ezc3d's add_parameter stores integer arrays as FLOAT)."""
    import ezc3d

    c3d.add_parameter(group, name, np.asarray(value, dtype=float))
    c3d["parameters"][group][name]["type"] = ezc3d.ezc3d.INT
    c3d["parameters"][group][name]["value"] = np.asarray(value, dtype=int)


def write_c3d(
    *,
    path: str | os.PathLike[str],
    point_rate: float,
    marker_labels: list[str],
    markers_mm: np.ndarray,
    analog_rate: float,
    plates: list[ForcePlate],
    plate_analog: list[np.ndarray],
    emg_labels: list[str],
    emg_volts: np.ndarray,
    first_frame: int = 1,
) -> Path:
    """Write the C3D atomically.

    ``markers_mm`` is (frames, markers, 3) in the lab frame (NaN = occluded); ``plate_analog`` is a
    (samples, 6) array per plate from :meth:`ForcePlate.analog`; ``emg_volts`` is (samples, channels);
    samples = frames x (analog_rate / point_rate), which must be an integer ratio.
    """
    import ezc3d

    ratio = analog_rate / point_rate
    n_frames = markers_mm.shape[0]
    if abs(ratio - round(ratio)) > 1e-9:
        raise C3DWriteError(f"{path}: analog rate {analog_rate} is not a multiple of {point_rate}")
    ratio = int(round(ratio))
    n_samples = n_frames * ratio
    for name, arr in [("emg", emg_volts), *[(f"plate {i + 1}", a) for i, a in enumerate(plate_analog)]]:
        if arr.shape[0] != n_samples:
            raise C3DWriteError(
                f"{path}: {name} has {arr.shape[0]} samples, expected {n_samples} "
                f"({n_frames} frames x {ratio})"
            )
    c3d = ezc3d.c3d()
    c3d["parameters"]["POINT"]["RATE"]["value"] = [float(point_rate)]
    c3d["parameters"]["POINT"]["LABELS"]["value"] = tuple(marker_labels)
    c3d.add_parameter("POINT", "UNITS", ["mm"])
    points = np.ones((4, len(marker_labels), n_frames))
    points[:3] = np.transpose(markers_mm, (2, 1, 0))
    c3d["data"]["points"] = points
    labels, units = [], []
    for i in range(len(plates)):
        labels += [f"{ch}{i + 1}" for ch in PLATE_CHANNELS]
        units += ["N", "N", "N", "Nmm", "Nmm", "Nmm"]
    labels += list(emg_labels)
    units += ["V"] * len(emg_labels)
    analogs = np.column_stack([*plate_analog, emg_volts]) if plates else emg_volts
    c3d["parameters"]["ANALOG"]["RATE"]["value"] = [float(analog_rate)]
    c3d["parameters"]["ANALOG"]["LABELS"]["value"] = tuple(labels)
    c3d.add_parameter("ANALOG", "UNITS", units)
    c3d["data"]["analogs"] = analogs.T[np.newaxis, :, :]
    if plates:
        _int_parameter(c3d, "FORCE_PLATFORM", "USED", np.array([len(plates)]))
        _int_parameter(c3d, "FORCE_PLATFORM", "TYPE", np.full(len(plates), 2))
        _int_parameter(c3d, "FORCE_PLATFORM", "ZERO", np.array([1, 0]))
        c3d.add_parameter(
            "FORCE_PLATFORM", "CORNERS", np.stack([p.corners() for p in plates], axis=-1)
        )
        c3d.add_parameter(
            "FORCE_PLATFORM", "ORIGIN",
            np.array([[0.0, 0.0, -p.origin_depth] for p in plates]).T,
        )  # fmt: skip
        channel = np.arange(1, 6 * len(plates) + 1, dtype=np.int32).reshape(len(plates), 6).T
        _int_parameter(c3d, "FORCE_PLATFORM", "CHANNEL", channel)
    c3d["header"]["points"]["first_frame"] = first_frame
    with atomic_output(path) as tmp:
        c3d.write(str(tmp))
    return Path(path)
