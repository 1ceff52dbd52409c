"""Fast OpenSim path against OpenSim's tools: ms per frame, accuracy and peak memory, side by side.

Usage:
    python benchmarks/fast_opensim.py                         # biomechzoo-HC002D, default settings
    python benchmarks/fast_opensim.py --subjects rajagopal-walk biomechzoo-HC002D
    python benchmarks/fast_opensim.py --cohort --cores 1 2    # + whole default demo cohort wall time
    python benchmarks/fast_opensim.py --no-stages --cohort --until opensim --methods auto --cores 2 1

Needs each subject's scaled model, IK, ID and import outputs under ``results/<s>/`` (run the
workflow up to ``id`` first, e.g. ``snakemake --cores 2 results/<s>/<trial>/id.sto``). Settings
come from config/config.yaml plus ``--overlay`` files (e.g. config/ci.yaml for 60-frame trials).

Stage table: for each subject, the path fit (once per subject), then per dynamic trial (over IK's
window, from the padded IK solve, as the workflow runs them) muscle
analysis with OpenSim's MuscleAnalysis and with the fitted polynomial paths, and static
optimisation with OpenSim's StaticOptimization and batched. Every run is a whole child process
(``python -m musculo.opensim_tools <tool>``: imports, model loading, the work, checks, atomic
writes), timed the same way; ``ms/frame`` = process wall time / frames, ``peak MB`` its maximum
resident set. ``speedup`` is OpenSim's ms/frame over the fast path's (path fit excluded; its cost
per subject is listed on its own row and amortised in ``speedup+fit``). ``compute x`` compares the
computation alone (OpenSim's ``run()``; the fast path's evaluation or solve), without the process
start, imports, model loading and file writing both pay once per trial. Accuracy columns compare
the fast path with OpenSim's outputs of the same run: worst per-muscle (and coordinate) RMS of
lengths and moment arms (mm), worst per-muscle activation RMS difference.

Cohort (``--cohort``): the demo cohort from scratch (``snakemake --keep-going``) in a temporary
copy of the repository, for each ``--methods`` (auto: the default ``ma_method`` and ``so_method``
``auto``, fitted paths where their check passes; fast: ``polynomial`` and ``batched`` forced;
opensim: OpenSim's tools) and each ``--cores``; wall time in minutes. ``--until opensim`` stops
at every subject's quality table (the OpenSim stages).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def run_tool(tool: str, kwargs: dict[str, Any], work: Path) -> tuple[float, float, Any]:
    """Run ``tool`` in a fresh process; return (wall s, peak resident MB, result)."""
    args, result, rss = work / f"{tool}.args.json", work / f"{tool}.result.json", work / f"{tool}.rss"
    args.write_text(json.dumps(kwargs, default=str))
    code = (
        "import resource, runpy, sys\n"
        f"sys.argv = ['x', {tool!r}, '--json', {str(args)!r}, '--result', {str(result)!r}]\n"
        "try:\n    runpy.run_module('musculo.opensim_tools', run_name='__main__')\n"
        "except SystemExit as exc:\n    status = exc.code\nelse:\n    status = 0\n"
        f"open({str(rss)!r}, 'w').write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))\n"
        "sys.exit(status)\n"
    )
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    payload = json.loads(result.read_text()) if result.is_file() else {}
    if proc.returncode != 0 or "result" not in payload:
        raise RuntimeError(
            f"{tool} failed ({proc.returncode}): {payload.get('message', proc.stderr[-2000:])}"
        )
    return wall, float(rss.read_text()) / 1024.0, payload["result"]


def on_times(times: np.ndarray, values: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``values`` (T, ...) sampled at ``times`` linearly interpolated at ``target`` times.

    OpenSim's AnalyzeTool resamples a coordinates file whose time step is not uniform (e.g. 60 Hz
    with rounded times) on its own grid, so the two methods' frames are compared at OpenSim's times.
    """
    if len(times) == len(target) and np.allclose(times, target, atol=1e-6):
        return values
    flat = values.reshape(len(times), -1)
    out = np.column_stack([np.interp(target, times, flat[:, k]) for k in range(flat.shape[1])])
    return out.reshape((len(target), *values.shape[1:]))


def subject_rows(sid: str, cfg: dict[str, Any], work: Path) -> list[dict[str, Any]]:
    """Time the fit, both muscle analyses and both static optimisations for every dynamic trial."""
    from musculo.io.tables import read_sto
    from musculo.opensim_tools.common import table_span
    from musculo.subject import load_subject

    subject = load_subject(REPO / "subjects" / sid / "subject.yaml")
    res = REPO / "results" / sid
    os_cfg, fit_cfg = cfg["opensim"], cfg["opensim"]["path_fit"]
    model = str(res / "model" / "scaled.osim")
    trials = subject.trial_names("dynamic")
    mots = [str(res / t / "ik.mot") for t in trials]
    missing = [m for m in [model, *mots] if not Path(m).is_file()]
    if missing:
        raise SystemExit(f"{sid}: {missing[0]} is missing; run the workflow up to id for this subject first")
    out = work / sid
    out.mkdir(parents=True)
    fit_s, fit_mb, fit = run_tool(
        "path_fit",
        {
            "model": model,
            "coordinates_mots": mots,
            "paths_out": str(out / "paths.json"),
            "max_fit_frames": fit_cfg["frames"],
            "samples_per_frame": fit_cfg["samples_per_frame"],
            "sampling_bounds_deg": fit_cfg["bounds_deg"],
            "max_order": fit_cfg["max_order"],
            "moment_arm_threshold": fit_cfg["moment_arm_threshold"],
            "seed": cfg["seed"],
        },
        out,
    )
    rows = [
        {
            "subject": sid,
            "trial": "(all)",
            "stage": "path_fit",
            "frames": fit["fit_frames"],
            "fast_s": fit_s,
            "fast_mb": fit_mb,
            "muscles": fit["muscles"],
        }
    ]
    for trial, mot in zip(trials, mots, strict=True):
        # as the workflow runs them: the padded IK solve, over IK's window
        padded = res / trial / "ik_padded.mot"
        common = {
            "model": model,
            "coordinates_mot": str(padded) if padded.is_file() else mot,
            "time_range": table_span(mot),
            "lowpass_hz": os_cfg["lowpass_hz"],
        }
        t_dir = out / trial
        t_dir.mkdir()
        ma = {}
        for tool, tag in (("muscle_analysis", "os"), ("muscle_analysis_polynomial", "fast")):
            extra = {"paths": str(out / "paths.json")} if tag == "fast" else {}
            ma[tag] = run_tool(
                tool,
                {
                    **common,
                    **extra,
                    "output_npz": str(t_dir / f"{tag}.npz"),
                    "sto_dir": str(t_dir / f"{tag}_ma"),
                    "setup_out": str(t_dir / f"{tag}_ma.xml"),
                },
                t_dir,
            )
        a, b = np.load(t_dir / "fast.npz"), np.load(t_dir / "os.npz")
        muscles, coords = [str(m) for m in a["muscles"]], [str(c) for c in a["coordinates"]]
        inside = (b["time"] >= a["time"][0] - 1e-9) & (b["time"] <= a["time"][-1] + 1e-9)
        ref_t = b["time"][inside]
        a_len, a_arm = (on_times(a["time"], a[k], ref_t) for k in ("mtu_length", "moment_arm"))
        len_rms = np.sqrt(np.mean((a_len - b["mtu_length"][inside]) ** 2, axis=0))
        arm_rms = np.sqrt(np.mean((a_arm - b["moment_arm"][inside]) ** 2, axis=0))
        lm, (am, ac) = int(np.argmax(len_rms)), np.unravel_index(np.argmax(arm_rms), arm_rms.shape)
        frames = int(a["time"].size)
        rows.append(
            {
                "subject": sid,
                "trial": trial,
                "stage": "muscle_analysis",
                "frames": frames,
                "opensim_s": ma["os"][0],
                "opensim_compute_s": ma["os"][2].get("seconds", float("nan")),
                "fast_compute_s": ma["fast"][2].get("seconds", float("nan")),
                "opensim_mb": ma["os"][1],
                "fast_s": ma["fast"][0],
                "fast_mb": ma["fast"][1],
                "accuracy": f"len {1e3 * len_rms[lm]:.3f} mm ({muscles[lm]}); "
                f"arm {1e3 * arm_rms[am, ac]:.3f} mm ({muscles[am]}/{coords[ac]})",
            }
        )
        so_common = {
            **common,
            "external_loads_xml": str(res / trial / "external_loads.xml"),
            "reserve_optimal_force": os_cfg["reserve_optimal_force"],
            "residual_optimal_force": os_cfg["residual_optimal_force"],
        }
        so = {}
        for tool, tag in (("so", "os"), ("so_batched", "fast")):
            extra = {"paths": str(out / "paths.json"), "inverse_dynamics": str(res / trial / "id.sto")}
            so[tag] = run_tool(
                tool,
                {
                    **so_common,
                    **(extra if tag == "fast" else {}),
                    "activation_out": str(t_dir / f"{tag}_act.sto"),
                    "force_out": str(t_dir / f"{tag}_force.sto"),
                    "setup_out": str(t_dir / f"{tag}_so.xml"),
                    "reserves_out": str(t_dir / f"{tag}_res.json"),
                },
                t_dir,
            )
        fa, fb = read_sto(t_dir / "fast_act.sto"), read_sto(t_dir / "os_act.sto")
        cols = [c for c in fb.columns if not c.startswith(("reserve_", "residual_")) and c in muscles]
        tb = fb.index.to_numpy(dtype=float)
        ta = fa.index.to_numpy(dtype=float)
        keep = (tb >= ta[0] - 1e-9) & (tb <= ta[-1] + 1e-9)
        a_act = on_times(ta, fa[cols].to_numpy(), tb[keep])
        act_rms = np.sqrt(np.mean((a_act - fb[cols].to_numpy()[keep]) ** 2, axis=0))
        k = int(np.argmax(act_rms))
        rows.append(
            {
                "subject": sid,
                "trial": trial,
                "stage": "static_optimization",
                "frames": len(fb),
                "opensim_s": so["os"][0],
                "opensim_compute_s": so["os"][2].get("seconds", float("nan")),
                "fast_compute_s": so["fast"][2].get("seconds", float("nan")),
                "opensim_mb": so["os"][1],
                "fast_s": so["fast"][0],
                "fast_mb": so["fast"][1],
                "accuracy": f"act {act_rms[k]:.4f} ({cols[k]}), mean {act_rms.mean():.4f}",
            }
        )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print the side-by-side stage table."""
    fits = {r["subject"]: r for r in rows if r["stage"] == "path_fit"}
    frames_per_subject: dict[str, int] = {}
    for r in rows:
        if r["stage"] == "muscle_analysis":
            frames_per_subject[r["subject"]] = frames_per_subject.get(r["subject"], 0) + r["frames"]
    head = (
        f"{'stage':20s} {'subject':20s} {'trial':10s} {'frames':>6s} {'OpenSim ms/fr':>13s} "
        f"{'fast ms/fr':>10s} {'speedup':>8s} {'speedup+fit':>11s} {'compute x':>9s} {'OpenSim MB':>10s} "
        f"{'fast MB':>8s}  accuracy"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        if r["stage"] == "path_fit":
            print(
                f"{'path_fit':20s} {r['subject']:20s} {'(subject)':10s} {r['frames']:6d} {'':>13s} "
                f"{'':>10s} {'':>8s} {'':>11s} {'':>9s} {'':>10s} {r['fast_mb']:8.0f}  "
                f"{r['fast_s']:.1f} s for {r['muscles']} muscles"
            )
            continue
        os_ms, fast_ms = 1e3 * r["opensim_s"] / r["frames"], 1e3 * r["fast_s"] / r["frames"]
        # the subject's fit cost shared over every frame of its trials, counted once per stage pair
        fit_ms = 1e3 * fits[r["subject"]]["fast_s"] / max(frames_per_subject[r["subject"]], 1) / 2
        print(
            f"{r['stage']:20s} {r['subject']:20s} {r['trial']:10s} {r['frames']:6d} {os_ms:13.2f} "
            f"{fast_ms:10.2f} {os_ms / fast_ms:8.1f} {os_ms / (fast_ms + fit_ms):11.1f} "
            f"{r['opensim_compute_s'] / r['fast_compute_s']:9.1f} "
            f"{r['opensim_mb']:10.0f} {r['fast_mb']:8.0f}  {r['accuracy']}"
        )
    for stage in ("muscle_analysis", "static_optimization"):
        sel = [r for r in rows if r["stage"] == stage]
        if sel:
            os_s, fast_s = sum(r["opensim_s"] for r in sel), sum(r["fast_s"] for r in sel)
            os_c, fast_c = sum(r["opensim_compute_s"] for r in sel), sum(r["fast_compute_s"] for r in sel)
            n = sum(r["frames"] for r in sel)
            print(
                f"{stage}: all trials {1e3 * os_s / n:.2f} vs {1e3 * fast_s / n:.2f} ms/frame per process "
                f"(x{os_s / fast_s:.1f}); computation alone {1e3 * os_c / n:.2f} vs "
                f"{1e3 * fast_c / n:.3f} ms/frame (x{os_c / fast_c:.0f}); peak MB max "
                f"{max(max(r['opensim_mb'], r['fast_mb']) for r in sel):.0f}"
            )


def cohort(methods: list[str], cores: list[int], overlays: list[str], until: str = "all") -> None:
    """Wall time of the demo cohort from scratch for each method and core count.

    ``until``: ``all`` (every output, estimators included) or ``opensim`` (every subject's
    ``quality.tsv``: import, scaling, IK, ID, path fit, muscle analysis, SO).
    """
    from musculo.config import load_config
    from musculo.subject import discover_subjects

    targets: list[str] = []
    if until == "opensim":
        config = load_config(REPO / "config" / "config.yaml", [REPO / o for o in overlays])
        ids = config.get("subjects") or discover_subjects(REPO / "subjects")
        targets = [f"results/{s}/quality.tsv" for s in ids]
    for method in methods:
        for n in cores:
            with tempfile.TemporaryDirectory(prefix="musculo-cohort-") as tmp:
                dst = Path(tmp) / "repo"
                ignore = shutil.ignore_patterns(".git", ".venv", "results", ".snakemake", "__pycache__")
                shutil.copytree(REPO, dst, ignore=ignore, symlinks=True)
                ma, so = {"fast": ("polynomial", "batched"), "opensim": ("opensim", "opensim")}.get(
                    method, ("auto", "auto")
                )
                (dst / "opensim_tools.yaml").write_text(f"opensim:\n  ma_method: {ma}\n  so_method: {so}\n")
                extra = ["opensim_tools.yaml"]
                files = [*overlays, *extra]
                cmd = [sys.executable, "-m", "snakemake", *targets, "--cores", str(n), "--keep-going"]
                if files:
                    cmd += ["--configfile", *files]
                t0 = time.perf_counter()
                proc = subprocess.run(
                    cmd,
                    cwd=dst,
                    env={**_env(), "PYTHONPATH": str(dst)},
                    capture_output=True,
                    text=True,
                    check=False,
                )
                wall = time.perf_counter() - t0
                status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
                steps = re.findall(r"(\d+) of (\d+) steps", proc.stdout + proc.stderr)
                jobs = steps[-1][0] if steps else "0"
                print(
                    f"cohort ({until}) {method:8s} --cores {n}: {wall / 60:.1f} min, {jobs} jobs ({status})",
                    flush=True,
                )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the tables."""
    from musculo.config import load_config

    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--subjects", nargs="+", default=["biomechzoo-HC002D"])
    parser.add_argument("--overlay", nargs="*", default=[], help="config overlays (e.g. config/ci.yaml)")
    parser.add_argument("--cohort", action="store_true", help="also time the whole demo cohort")
    parser.add_argument(
        "--methods", nargs="+", default=["auto", "opensim"], choices=["auto", "fast", "opensim"],
        help="cohort methods: auto (the default), fast (fitted paths forced), opensim (OpenSim's tools)",
    )
    parser.add_argument("--cores", nargs="+", type=int, default=[2, 1])
    parser.add_argument("--no-stages", action="store_true", help="cohort only")
    parser.add_argument("--keep", type=Path, help="keep every tool's outputs in this (new) folder")
    parser.add_argument(
        "--until", choices=["all", "opensim"], default="all",
        help="cohort targets: every output, or the OpenSim stages only (every subject's quality.tsv)",
    )
    ns = parser.parse_args(argv)
    cfg = load_config(REPO / "config" / "config.yaml", [REPO / o for o in ns.overlay])
    if not ns.no_stages:
        rows: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory(prefix="musculo-fast-") as tmp:
            work = ns.keep if ns.keep is not None else Path(tmp)
            for sid in ns.subjects:
                rows += subject_rows(sid, cfg, work)
        print_table(rows)
    if ns.cohort:
        cohort(ns.methods, ns.cores, ns.overlay, ns.until)
    return 0


if __name__ == "__main__":
    sys.exit(main())
