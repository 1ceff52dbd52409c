"""EMG processing: channel quality, linear envelopes, normalisation and the channel -> muscle map.

Envelope: band-pass (zero-phase Butterworth; the upper edge capped at 0.95 x Nyquist), full-wave
rectification, zero-phase low-pass, optional electromechanical delay, then linear interpolation
onto the marker (kinematics) time base. Normalisation: to the MVC trials when the subject has them,
otherwise to the per-subject peak over all dynamic trials; the divisor is saved. That subject-wide
divisor serves the deployable fit and the reports only: the held-out evaluation divides each fold's
envelopes by divisors from that fold's training trials (MVC trials, never held out, or the training
peak; :func:`musculo.estimators.trials.fold_normalise`), so no held-out peak leaks into a fold. The
remaining amplitude mismatch is absorbed by the calibrated EMG gain (``physics.bounds.emg_gain``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import signal

from musculo import logger
from musculo.io.atomic import atomic_output
from musculo.io.tables import read_sto, write_sto
from musculo.io.trc import read_trc
from musculo.signals import bandpass, envelope
from musculo.subject import load_subject


def channel_quality(
    x: np.ndarray,
    *,
    rate: float,
    band: tuple[float, float] | list[float] = (20.0, 450.0),
    saturation_share_max: float = 0.005,
    flat_std_min: float = 1e-6,
    snr_min_db: float = 9.5,
    mains_share_max: float = 0.3,
    max_abs: float | None = 10.0,
) -> dict[str, Any]:
    """Quality of one raw EMG channel: flags (saturated, flat, noise, mains, out_of_range) and metrics.

    - saturation: share of samples within 0.5 % of the channel's largest absolute value (a clipped
      amplifier sits there for long stretches; a live signal touches its peak only briefly);
    - flat: standard deviation below ``flat_std_min``;
    - noise: 20 log10 of the 95th over the 5th percentile of the 100-ms moving RMS of the
      band-passed signal below ``snr_min_db`` (no activity bursts above the noise floor);
    - mains: share of band-passed power within 1 Hz of 50/60 Hz and their harmonics;
    - out_of_range: largest absolute value above ``max_abs`` (V): no amplifier output reaches it,
      so the channel's scale or units are wrong (None: no check).
    """
    x = np.asarray(x, dtype=float)
    flags: list[str] = []
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    std = float(np.std(x))
    sat = float(np.mean(np.abs(x) >= 0.995 * peak)) if peak > 0 else 1.0
    metrics: dict[str, float] = {"peak": peak, "std": std, "saturation_share": sat}
    if max_abs is not None and peak > max_abs:
        flags.append("out_of_range")
    if std < flat_std_min:
        flags.append("flat")
        metrics.update(snr_db=0.0, mains_share=0.0)
        return {"flags": flags, "metrics": metrics}
    if sat > saturation_share_max:
        flags.append("saturated")
    bp = bandpass(x[:, None], rate=rate, band=band)[:, 0]
    win = max(1, int(round(0.1 * rate)))
    rms = np.sqrt(np.convolve(bp**2, np.ones(win) / win, mode="valid"))
    lo, hi = np.percentile(rms, [5, 95])
    snr = float(20 * np.log10(hi / lo)) if lo > 0 else float("inf")
    metrics["snr_db"] = snr
    metrics["noise_floor"] = float(lo)
    if snr < snr_min_db:
        flags.append("noise")
    freqs, psd = signal.welch(bp, fs=rate, nperseg=min(len(bp), int(rate)))
    mains = np.zeros_like(freqs, dtype=bool)
    for base in (50.0, 60.0):
        for k in range(1, 6):
            mains |= np.abs(freqs - k * base) <= 1.0
    total = float(psd.sum())
    share = float(psd[mains].sum() / total) if total > 0 else 0.0
    metrics["mains_share"] = share
    if share > mains_share_max:
        flags.append("mains")
    return {"flags": flags, "metrics": metrics}


def process_emg_trial(
    *,
    emg_raw: str | os.PathLike[str],
    markers: str | os.PathLike[str],
    envelope_out: str | os.PathLike[str],
    quality_out: str | os.PathLike[str],
    band: list[float] | tuple[float, float] = (20.0, 450.0),
    envelope_cutoff: float = 6.0,
    filter_order: int = 4,
    delay: float = 0.0,
    saturation_share_max: float = 0.005,
    flat_std_min: float = 1e-6,
    snr_min_db: float = 9.5,
    mains_share_max: float = 0.3,
    max_abs: float | None = 10.0,
    exclude_flagged: bool = True,
    **_: Any,
) -> dict[str, Any]:
    """Envelope (un-normalised, on the marker time base) and quality flags of one trial's EMG.

    Writes ``envelope_out`` (.sto, one column per channel label) and ``quality_out`` (JSON:
    {label: {"flags": [...], "metrics": {...}, "use": bool}}). Returns the quality dict.
    """
    raw = np.load(emg_raw)
    labels = [str(x) for x in raw["labels"]]
    rate, t0, data = float(raw["rate"]), float(raw["t0"]), np.asarray(raw["data"], float)
    kin_time = read_trc(markers).time
    quality: dict[str, Any] = {}
    for j, label in enumerate(labels):
        q = channel_quality(
            data[:, j],
            rate=rate,
            band=band,
            saturation_share_max=saturation_share_max,
            flat_std_min=flat_std_min,
            snr_min_db=snr_min_db,
            mains_share_max=mains_share_max,
            max_abs=max_abs,
        )
        q["use"] = not (exclude_flagged and q["flags"])
        if q["flags"]:
            logger.warning(
                "%s: EMG channel %s flagged %s%s",
                Path(emg_raw).parent.name,
                label,
                q["flags"],
                "" if q["use"] else "; left out of modelling unless its MVC trial passes (a quiet muscle)"
                if q["flags"] == ["noise"] else "; left out of modelling",
            )
        quality[label] = q
    env = (
        envelope(data, rate=rate, band=band, cutoff=envelope_cutoff, order=filter_order)
        if labels
        else np.zeros((0, 0))
    )
    emg_time = t0 + np.arange(data.shape[0]) / rate + delay
    cols = {
        label: np.interp(kin_time, emg_time, env[:, j], left=env[0, j], right=env[-1, j])
        for j, label in enumerate(labels)
    }
    write_sto(envelope_out, pd.DataFrame(cols, index=kin_time), name="emg_envelope")
    with atomic_output(quality_out) as tmp:
        tmp.write_text(json.dumps(quality, indent=2) + "\n")
    return quality


def normalise_emg(
    *,
    subject_file: str | os.PathLike[str],
    trials: list[str],
    envelopes: list[str | os.PathLike[str]],
    output_json: str | os.PathLike[str],
    qualities: list[str | os.PathLike[str]] | None = None,
    **_: Any,
) -> dict[str, Any]:
    """Divisor of each EMG channel: its peak envelope in the MVC trials that hold it, else over all
    dynamic trials (``trials``, ``envelopes`` and ``qualities`` in the same order). Writes
    ``output_json``.

    ``method`` ``mvc`` divisors are kept by every evaluation fold; ``peak`` divisors (which include
    every walk) are replaced per fold by the training trials' peak (see the module docstring).
    With ``qualities`` (the trials' ``emg_quality.json``), an MVC divisor records ``mvc_ok``: the
    channel passed every quality check in its MVC trials, so the electrode works (see
    :func:`channel_usable`).
    """
    subject = load_subject(subject_file)
    role = {t.name: t.role for t in subject.trials}
    mvc_map = subject.raw.get("emg", {}).get("mvc_channels", {})
    tables = {t: read_sto(p) for t, p in zip(trials, envelopes, strict=True)}
    checks = (
        {t: json.loads(Path(p).read_text()) for t, p in zip(trials, qualities, strict=True)}
        if qualities is not None else {}
    )
    out: dict[str, Any] = {}
    for ch in subject.emg_channels:
        mvc_trials = [t for t, chans in mvc_map.items() if ch in chans and t in tables]
        if mvc_trials:
            used, method = mvc_trials, "mvc"
        else:
            used, method = [t for t in trials if role.get(t) == "dynamic"], "peak"
        peaks = [float(tables[t][ch].max()) for t in used if ch in tables[t]]
        if not peaks or not np.isfinite(max(peaks)) or max(peaks) <= 0:
            # a dead (all-zero) channel: flagged 'flat' by the quality check and left out of
            # modelling, like a saturated one; the other channels carry on
            logger.warning(
                "%s: EMG channel %s has no positive envelope in trials %s (a flat or dead channel): "
                "it is not normalised and not used",
                subject.id, ch, used,
            )
            out[ch] = {"divisor": None, "method": "none", "trials": used,
                       "reason": "no positive envelope (flat or dead channel)"}
            continue
        out[ch] = {"divisor": max(peaks), "method": method, "trials": used}
        if method == "mvc" and checks:
            out[ch]["mvc_ok"] = all(
                t in checks and not checks[t].get(ch, {}).get("flags", ["missing"]) for t in used
            )
    with atomic_output(output_json) as tmp:
        tmp.write_text(json.dumps(out, indent=2) + "\n")
    return out


def channel_usable(quality: Mapping[str, Any], normalisation: Mapping[str, Any]) -> bool:
    """Whether a channel's EMG of one trial is modelled, from its quality entry and normaliser.

    A channel that passes every check is used. One whose only flag is ``noise`` (no burst above
    the noise floor in this trial) is used too when its divisor comes from MVC trials in which it
    passed every check (``mvc_ok``): the electrode is shown to work, so a quiet trial is a quiet
    muscle, an excitation near zero, not a dead electrode. Any other flag leaves it out.
    """
    if not normalisation.get("divisor"):
        return False
    if quality.get("use", False):
        return True
    flags = [str(f) for f in quality.get("flags", [])]
    return flags == ["noise"] and normalisation.get("method") == "mvc" and bool(normalisation.get("mvc_ok"))


def emg_excitations(
    *,
    subject_file: str | os.PathLike[str],
    envelope_sto: str | os.PathLike[str],
    quality_json: str | os.PathLike[str],
    normalisation_json: str | os.PathLike[str],
    output: str | os.PathLike[str],
    **_: Any,
) -> list[str]:
    """Normalised excitations (0..1) per model muscle of the channels whose quality allows use.

    A channel mapped to several muscles gives each the same excitation. Returns the muscles written.
    """
    subject = load_subject(subject_file)
    env = read_sto(envelope_sto)
    quality = json.loads(Path(quality_json).read_text())
    norm = json.loads(Path(normalisation_json).read_text())
    cols: dict[str, np.ndarray] = {}
    for ch, muscles in subject.emg_channels.items():
        if not channel_usable(quality.get(ch, {}), norm.get(ch, {})):
            continue
        if not quality[ch].get("use", False):
            logger.info("%s: EMG channel %s is quiet in this trial (flagged noise) but passed in its MVC "
                        "trials: used as a quiet muscle", Path(envelope_sto).parent.name, ch)
        x = np.clip(env[ch].to_numpy(float) / norm[ch]["divisor"], 0.0, 1.0)
        for m in muscles:
            cols[m] = x
    write_sto(output, pd.DataFrame(cols, index=env.index), name="emg_excitations")
    return list(cols)
