"""A trial's arrays for the physics core, read from the results contract of the OpenSim and EMG stages.

Per trial ``t`` of subject ``s`` the stages write ``results/s/t/ik.mot``, ``id.sto``, ``emg.sto``,
``so_activation.sto`` and ``muscle_analysis.npz`` (see docs/DEVELOPING.md). :func:`load_trial`
puts them on the muscle analysis time base into one :class:`TrialData`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from musculo import logger
from musculo.errors import InputDataError
from musculo.io.events import contact_window, plate_file
from musculo.io.tables import covers, read_sto

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class MuscleParameters:
    """Hill-model parameters of the scaled model's muscles (as OpenSim holds them), shape (M,)."""

    max_isometric_force: np.ndarray
    optimal_fiber_length: np.ndarray
    tendon_slack_length: np.ndarray
    pennation_angle: np.ndarray
    max_contraction_velocity: np.ndarray

    def take(self, index: np.ndarray) -> MuscleParameters:
        """Parameters of the muscles at ``index``."""
        return MuscleParameters(**{k: np.asarray(v)[index] for k, v in self.__dict__.items()})


@dataclass(frozen=True)
class TrialData:
    """Everything the physics core and the estimators need of one trial, on one time base.

    Shapes: T frames, M modelled muscles, C tracked coordinates.

    Attributes:
        name: trial name (or ``"<trial>@<start>-<end>"`` for a time span of a trial).
        time: (T,) s, uniformly sampled.
        coordinates: (C,) tracked coordinate names.
        muscles: (M,) modelled muscle names (every muscle of the muscle analysis).
        q, qdot: (T, C) coordinate values (rad or m) and speeds.
        mtu_length, mtu_velocity: (T, M) muscle-tendon length (m) and lengthening velocity (m/s).
        moment_arm: (T, M, C) moment arms (m).
        id_moment: (T, C) inverse-dynamics generalised forces (N m) of the tracked coordinates.
        excitation: (T, M) normalised EMG excitation (0..1); zero where ``measured`` is False.
        measured: (M,) bool, which muscles have an EMG excitation.
        params: the muscles' Hill parameters.
        so_activation: (T, M) OpenSim static-optimisation activations, when available.
        emg_divisor: (M,) the divisor the EMG stage applied to each measured muscle's envelope
            (``emg_normalisation.json``; NaN for unmeasured muscles), so that ``excitation *
            emg_divisor`` is the raw envelope; None when the excitations came normalised from elsewhere.
        emg_fixed: (M,) bool, measured muscles whose divisor is fixed (MVC trials, never held out);
            the others are re-normalised per fold on the training trials
            (:func:`musculo.estimators.trials.fold_normalise`).
        events: gait events of ``events.json`` ({side: {"strike": [s], "off": [s]}}), when the trial
            has them (stance and swing metrics of the evaluation).
    """

    name: str
    time: np.ndarray
    coordinates: list[str]
    muscles: list[str]
    q: np.ndarray
    qdot: np.ndarray
    mtu_length: np.ndarray
    mtu_velocity: np.ndarray
    moment_arm: np.ndarray
    id_moment: np.ndarray
    excitation: np.ndarray
    measured: np.ndarray
    params: MuscleParameters
    so_activation: np.ndarray | None = field(default=None)
    emg_divisor: np.ndarray | None = field(default=None)
    emg_fixed: np.ndarray | None = field(default=None)
    events: dict[str, dict[str, list[float]]] | None = field(default=None)

    @property
    def dt(self) -> float:
        """Sampling interval (s)."""
        return float(np.median(np.diff(self.time))) if len(self.time) > 1 else 0.0

    @property
    def n_frames(self) -> int:
        """Number of frames T."""
        return len(self.time)

    @property
    def measured_muscles(self) -> list[str]:
        """Names of the muscles with EMG."""
        return [m for m, k in zip(self.muscles, self.measured, strict=True) if k]

    def muscle_index(self, names: list[str] | tuple[str, ...]) -> np.ndarray:
        """Indices of muscles ``names``; raises :class:`InputDataError` naming a missing one."""
        missing = [n for n in names if n not in self.muscles]
        if missing:
            raise InputDataError(
                f"trial {self.name}: muscles {missing} are not in the muscle analysis "
                f"(model muscles: {self.muscles}); fix the subject file's muscle names"
            )
        return np.array([self.muscles.index(n) for n in names], dtype=int)

    def excitation_frame(self) -> pd.DataFrame:
        """Measured excitations as a DataFrame (index time, one column per measured muscle)."""
        idx = np.flatnonzero(self.measured)
        return pd.DataFrame(
            self.excitation[:, idx], index=pd.Index(self.time, name="time"),
            columns=[self.muscles[i] for i in idx],
        )

    def moment_frame(self) -> pd.DataFrame:
        """Inverse-dynamics moments as a DataFrame (index time, one column per coordinate)."""
        return pd.DataFrame(self.id_moment, index=pd.Index(self.time, name="time"), columns=self.coordinates)

    def hide(self, muscles: list[str] | tuple[str, ...]) -> TrialData:
        """A copy in which ``muscles`` are treated as unmeasured (excitation zeroed, mask False)."""
        if not muscles:
            return self
        idx = self.muscle_index(list(muscles))
        measured = self.measured.copy()
        measured[idx] = False
        excitation = self.excitation.copy()
        excitation[:, idx] = 0.0
        return replace(self, measured=measured, excitation=excitation)

    def select(self, muscles: list[str] | tuple[str, ...]) -> TrialData:
        """A copy holding only ``muscles`` (in the given order): the modelled muscle set.

        Raises :class:`InputDataError` naming a muscle that is not in the trial.
        """
        idx = self.muscle_index(list(muscles))
        so = None if self.so_activation is None else self.so_activation[:, idx]
        div = None if self.emg_divisor is None else self.emg_divisor[idx]
        fixed = None if self.emg_fixed is None else self.emg_fixed[idx]
        return replace(
            self, muscles=[self.muscles[i] for i in idx], mtu_length=self.mtu_length[:, idx],
            mtu_velocity=self.mtu_velocity[:, idx], moment_arm=self.moment_arm[:, idx],
            excitation=self.excitation[:, idx], measured=self.measured[idx], params=self.params.take(idx),
            so_activation=so, emg_divisor=div, emg_fixed=fixed,
        )

    def window(self, start: float, end: float, *, name: str | None = None) -> TrialData:
        """The frames with ``start <= time < end`` as a new trial."""
        keep = (self.time >= start) & (self.time < end)
        if keep.sum() < 2:
            raise InputDataError(f"trial {self.name}: fewer than 2 frames in [{start}, {end})")
        sub = {
            k: getattr(self, k)[keep]
            for k in ("time", "q", "qdot", "mtu_length", "mtu_velocity", "moment_arm", "id_moment",
                      "excitation")
        }
        so = None if self.so_activation is None else self.so_activation[keep]
        return replace(self, name=name or f"{self.name}@{start:g}-{end:g}", so_activation=so, **sub)


def _id_column(columns: list[str], coordinate: str) -> str | None:
    for suffix in ("_moment", "_force"):
        if coordinate + suffix in columns:
            return coordinate + suffix
    return coordinate if coordinate in columns else None


def _resample(df: pd.DataFrame, time: np.ndarray, *, source: Path) -> np.ndarray:
    t = np.asarray(df.index, dtype=float)
    if not covers(t, float(time[0]), float(time[-1])):
        raise InputDataError(
            f"{source}: time range [{t[0] if len(t) else 'nan'}, {t[-1] if len(t) else 'nan'}] does not "
            f"cover the muscle analysis time range [{time[0]}, {time[-1]}]; rerun that stage"
        )
    values = df.to_numpy(dtype=float)
    return np.column_stack([np.interp(time, t, values[:, j]) for j in range(values.shape[1])]) \
        if values.shape[1] else np.zeros((len(time), 0))


def load_trial(
    *,
    muscle_analysis: PathLike,
    inverse_dynamics: PathLike,
    emg: PathLike | None = None,
    so_activation: PathLike | None = None,
    coordinates: list[str] | tuple[str, ...] | None = None,
    name: str | None = None,
) -> TrialData:
    """Load one trial from the stage outputs onto the muscle analysis time base.

    Args:
        muscle_analysis: ``muscle_analysis.npz`` (time, muscles, coordinates, lengths, velocities,
            moment arms, muscle parameters, q, qdot).
        inverse_dynamics: ``id.sto`` (columns ``<coordinate>_moment`` or ``_force``).
        emg: ``emg.sto`` (normalised excitation per model muscle); None means no muscle is measured.
            Columns that are not model muscles are ignored with a warning.
        so_activation: ``so_activation.sto`` (OpenSim SO activation per muscle), optional.
        coordinates: tracked coordinates; None means every coordinate of the muscle analysis that has
            an inverse-dynamics column and a non-zero moment arm.
        name: trial name (default: the muscle analysis file's folder name).

    Times of the ID, EMG and SO tables are linearly interpolated onto the muscle analysis frames;
    a table that does not cover them raises :class:`InputDataError`.
    """
    ma_path = Path(muscle_analysis)
    if not ma_path.is_file():
        raise InputDataError(f"{ma_path}: muscle analysis file not found; run the muscle analysis stage")
    with np.load(ma_path, allow_pickle=False) as npz:
        required = ["time", "muscles", "coordinates", "mtu_length", "mtu_velocity", "moment_arm",
                    "max_isometric_force", "optimal_fiber_length", "tendon_slack_length",
                    "pennation_angle", "max_contraction_velocity", "q", "qdot"]
        missing = [k for k in required if k not in npz.files]
        if missing:
            raise InputDataError(f"{ma_path}: missing keys {missing}; rerun the muscle analysis stage")
        ma = {k: npz[k] for k in required}
    time = ma["time"].astype(float)
    muscles = [str(m) for m in ma["muscles"]]
    all_coords = [str(c) for c in ma["coordinates"]]
    id_path = Path(inverse_dynamics)
    id_df = read_sto(id_path)
    id_cols = list(id_df.columns)
    if coordinates is None:
        arms = np.abs(ma["moment_arm"]).max(axis=(0, 1))
        coordinates = [c for j, c in enumerate(all_coords) if _id_column(id_cols, c) and arms[j] > 1e-6]
    coordinates = list(coordinates)
    bad = [c for c in coordinates if c not in all_coords]
    if bad:
        raise InputDataError(
            f"{ma_path}: coordinates {bad} are not in the muscle analysis (has {all_coords}); "
            "fix `coordinates` in the subject file"
        )
    no_id = [c for c in coordinates if _id_column(id_cols, c) is None]
    if no_id:
        raise InputDataError(f"{id_path}: no inverse-dynamics column for coordinates {no_id}")
    cidx = [all_coords.index(c) for c in coordinates]
    id_moment = _resample(id_df[[_id_column(id_cols, c) for c in coordinates]], time, source=id_path)

    excitation = np.zeros((len(time), len(muscles)))
    measured = np.zeros(len(muscles), dtype=bool)
    if emg is not None:
        emg_path = Path(emg)
        emg_df = read_sto(emg_path)
        extra = [c for c in emg_df.columns if c not in muscles]
        if extra:
            logger.warning("%s: columns %s are not model muscles; ignored", emg_path, extra)
        cols = [c for c in emg_df.columns if c in muscles]
        values = _resample(emg_df[cols], time, source=emg_path)
        for j, c in enumerate(cols):
            excitation[:, muscles.index(c)] = np.clip(values[:, j], 0.0, 1.0)
            measured[muscles.index(c)] = True
    so = None
    if so_activation is not None:
        so_path = Path(so_activation)
        so_df = read_sto(so_path)
        absent = [m for m in muscles if m not in so_df.columns]
        if absent:
            raise InputDataError(f"{so_path}: no activation column for muscles {absent}; rerun SO")
        so = _resample(so_df[muscles], time, source=so_path)

    params = MuscleParameters(
        max_isometric_force=ma["max_isometric_force"].astype(float),
        optimal_fiber_length=ma["optimal_fiber_length"].astype(float),
        tendon_slack_length=ma["tendon_slack_length"].astype(float),
        pennation_angle=ma["pennation_angle"].astype(float),
        max_contraction_velocity=ma["max_contraction_velocity"].astype(float),
    )
    return TrialData(
        name=name or ma_path.parent.name,
        time=time,
        coordinates=coordinates,
        muscles=muscles,
        q=ma["q"][:, cidx].astype(float),
        qdot=ma["qdot"][:, cidx].astype(float),
        mtu_length=ma["mtu_length"].astype(float),
        mtu_velocity=ma["mtu_velocity"].astype(float),
        moment_arm=ma["moment_arm"][:, :, cidx].astype(float),
        id_moment=id_moment,
        excitation=excitation,
        measured=measured,
        params=params,
        so_activation=so,
    )


WINDOWS = ("all", "contact")


def load_trial_dir(
    trial_dir: PathLike, *, coordinates: list[str] | tuple[str, ...] | None = None,
    window: str, with_emg: bool = True, with_so: bool = False,
) -> TrialData:
    """Load ``results/<s>/<t>/`` (``muscle_analysis.npz``, ``id.sto``, ``emg.sto``, ``so_activation.sto``).

    ``window``: ``"all"`` keeps every frame; ``"contact"`` keeps the frames inside
    :func:`contact_window` of the folder's ``events.json`` and ``grf.mot``: the longest span of
    foot contacts whose ground reactions the plates measured (every frame, with a warning, when
    the trial has none).
    """
    if window not in WINDOWS:
        raise InputDataError(f"physics.window: {window!r} is not one of {list(WINDOWS)}")
    d = Path(trial_dir)
    emg = d / "emg.sto"
    trial = load_trial(
        muscle_analysis=d / "muscle_analysis.npz",
        inverse_dynamics=d / "id.sto",
        emg=emg if with_emg and emg.is_file() else None,
        so_activation=d / "so_activation.sto" if with_so else None,
        coordinates=coordinates,
        name=d.name,
    )
    if (d / "events.json").is_file():
        try:
            events = json.loads((d / "events.json").read_text())
            trial = replace(trial, events={str(side): {k: [float(x) for x in v.get(k, [])]
                                                       for k in ("strike", "off")}
                                           for side, v in events.items() if isinstance(v, dict)})
        except (OSError, json.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
            logger.warning("%s: gait events unreadable (%s); no stance/swing metrics", d / "events.json", exc)
    if window == "contact":
        span = contact_window(d / "events.json", grf=plate_file(d / "events.json"),
                              within=(float(trial.time[0]), float(trial.time[-1])))
        held = 0 if span is None else np.sum((trial.time >= span[0] - 1e-9) & (trial.time <= span[1] + 1e-9))
        if span is None or held < 2:
            logger.warning("%s: no span of foot contacts measured by the force plates in %.3f-%.3f s; "
                           "every frame kept", d / "events.json", trial.time[0], trial.time[-1])
            return trial
        start, end = span
        trial = trial.window(start - 1e-9, end + 1e-9, name=trial.name)
        logger.info("%s: frames of %.3f-%.3f s (force-plate contact), %d frames", d.name, start, end,
                    trial.n_frames)
    return trial


SPAN_MOMENT_ARM = 1e-3
"""m: a muscle spans a coordinate when its moment arm about it exceeds this in some frame."""


def spanning_muscles(trials: Sequence[TrialData], *, exclude: Sequence[str] = (),
                     threshold: float = SPAN_MOMENT_ARM) -> list[str]:
    """Model muscles (model order) whose moment arm about a tracked coordinate exceeds
    ``threshold`` (m) in some frame of ``trials``, less ``exclude`` (the EMG-mapped muscles).

    This resolves a subject's ``unmeasured: auto``: the muscles the physics core needs so that
    every muscle acting on the tracked coordinates contributes to their moments, whether or not an
    electrode reached it.
    """
    if not trials:
        raise InputDataError("unmeasured: auto: no trials to read moment arms from")
    names = list(trials[0].muscles)
    arm = np.zeros(len(names))
    for t in trials:
        if list(t.muscles) != names:
            raise InputDataError(f"{t.name}: muscles differ from {trials[0].name}'s; process both with "
                                 "the same scaled model")
        if t.moment_arm.size:
            arm = np.maximum(arm, np.abs(t.moment_arm).max(axis=(0, 2)))
    skip = set(exclude)
    return [m for m, a in zip(names, arm, strict=True) if a > threshold and m not in skip]


def model_muscles(
    trials: Sequence[TrialData], *, measured: Sequence[str], unmeasured: Sequence[str],
    source: str = "subject file", keep_failed: bool = False,
) -> list[str]:
    """The modelled muscle set of a subject (CEINMS-style muscle selection), in model order.

    Holds the ``measured`` muscles (the EMG channel map) that have an excitation in every trial,
    plus the ``unmeasured`` muscles (to be estimated); every other model muscle is left out.
    A measured muscle without EMG in some trial (its channel failed quality) is left out with a
    warning rather than estimated, so estimators extrapolate exactly the ``unmeasured`` list;
    with ``keep_failed`` it stays in (not measured in those trials), so that subjects sharing a
    channel map share one muscle set whatever their channel quality.
    Raises :class:`InputDataError` naming ``source`` when a listed muscle is not in the model or
    no muscle is left.
    """
    if not trials:
        raise InputDataError(f"{source}: no trials to select muscles from")
    names = list(trials[0].muscles)
    listed = list(dict.fromkeys([*measured, *unmeasured]))
    absent = [m for m in listed if m not in names]
    if absent:
        raise InputDataError(
            f"{source}: muscles {absent} (emg.channels / unmeasured) are not in the scaled model "
            f"(muscles: {names}); fix the muscle names in the subject file"
        )
    with_emg = [m for m in measured if keep_failed or all(t.measured[t.muscles.index(m)] for t in trials)]
    dropped = [m for m in dict.fromkeys(measured) if m not in with_emg]
    if dropped:
        logger.warning("%s: measured muscles %s have no usable EMG in every trial (channel quality); "
                       "left out of the model", source, dropped)
    overlap = sorted(set(unmeasured) & set(measured))
    if overlap:
        raise InputDataError(f"{source}: muscles {overlap} are listed both in emg.channels and in "
                             "unmeasured; list each muscle once")
    keep = set(with_emg) | set(unmeasured)
    if not keep:
        raise InputDataError(f"{source}: no muscle left to model; list emg.channels or unmeasured")
    return [m for m in names if m in keep]


def select_muscles(
    trials: Sequence[TrialData], *, measured: Sequence[str] | None = None,
    unmeasured: Sequence[str] | None = None, source: str = "subject file", keep_failed: bool = False,
) -> list[TrialData]:
    """``trials`` restricted to :func:`model_muscles` (unchanged when both lists are None)."""
    if measured is None and unmeasured is None:
        return list(trials)
    keep = model_muscles(trials, measured=list(measured or []), unmeasured=list(unmeasured or []),
                         source=source, keep_failed=keep_failed)
    logger.info("%s: modelling %d of %d muscles: %s", source, len(keep), len(trials[0].muscles), keep)
    return [t.select(keep) for t in trials]
