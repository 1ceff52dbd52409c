"""OpenSim stages: wall time per trial against the bare OpenSim tool, and the workflow speedup.

Usage:
    python benchmarks/opensim_stages.py                       # gait2354-subject01, biomechzoo-HC002D
    python benchmarks/opensim_stages.py --subjects motonms-unipd --repeat 3
    python benchmarks/opensim_stages.py --no-speedup          # stage table only

Needs the subjects' import outputs (``results/<s>/``; run the workflow first). Settings come from
config/config.yaml plus ``--overlay`` files (default: config/ci.yaml, the CI-sized settings).

Stage table: for each stage (scale, ik, id, so, muscle_analysis) and subject, the wall time per
trial of the musculo stage (``python -m musculo.opensim_tools <tool>``: input checks, the tool,
output checks, atomic publishing), and of the bare OpenSim tool run from the resolved setup XML
that the stage wrote (a fresh ``python`` that imports opensim, loads the setup and runs it). Both
are whole processes, timed the same way; the best of ``--repeat`` runs is kept (the machine may be
shared). ``ratio`` = musculo / bare (goal: <= 1.05).

Speedup: the OpenSim part of the workflow (scale, IK, ID, SO, muscle analysis, quality) for the
subjects, forced to rerun with ``snakemake --cores 1`` then ``--cores 2``, in a temporary copy of
the repository that holds the subjects' import outputs (nothing under results/ is touched).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STAGES = ("scale", "ik", "id", "so", "muscle_analysis")
OPENSIM_RULES = ["scale", "ik", "id", "so", "muscle_analysis", "quality"]

# the bare tool: a fresh interpreter loads the resolved setup with OpenSim's own class and runs it
BARE = {
    # the setup holds absolute paths: no subject folder to prepend (as the stage does too)
    "scale": "(lambda tool: (tool.setPathToSubject(''), tool.run())[1])(opensim.ScaleTool(xml))",
    "ik": "opensim.InverseKinematicsTool(xml).run()",
    "id": "opensim.InverseDynamicsTool(xml).run()",
    "so": "opensim.AnalyzeTool(xml).run()",
    "muscle_analysis": "opensim.AnalyzeTool(xml).run()",
}


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _timed(cmd: list[str], *, cwd: Path | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall


def _stage_kwargs(stage: str, subject: Any, trial: str, cfg: dict[str, Any], inputs: dict, out: Path) -> dict:
    """Keyword arguments of the stage function, as the workflow rule passes them, into ``out``."""
    res = REPO / "results" / subject.id
    os_cfg = cfg["opensim"]
    model = str(res / "model" / "scaled.osim")
    mot = str(res / trial / "ik.mot")
    window = next((list(t.time_range) for t in subject.trials if t.name == trial and t.time_range), None)
    window = window or os_cfg["time_range"]
    if stage == "scale":
        return {
            "generic_model": inputs["model"],
            "marker_set": inputs["marker_set"],
            "scale_setup": inputs.get("scale_setup"),
            "static_trc": str(res / trial / "markers.trc"),
            "mass": subject.mass,
            "height": subject.height,
            "output_model": str(out / "scaled.osim"),
            "setup_out": str(out / "scale_setup.xml"),
            "quality_out": str(out / "scale_quality.json"),
            "scale_bounds": os_cfg["scale_bounds"],
            "max_marker_rms": os_cfg["max_marker_rms"],
            "max_marker_error": os_cfg["max_marker_error"],
            "min_markers": os_cfg["min_static_markers"],
            "min_marker_coverage": os_cfg["min_marker_coverage"],
            "marker_weights": os_cfg["marker_weights"],
        }
    common = {"time_range": window, "max_frames": os_cfg["max_frames"]}
    if stage == "ik":
        return {
            "model": model,
            "markers_trc": str(res / trial / "markers.trc"),
            "events": str(res / trial / "events.json"),
            "task_set": inputs.get("ik_tasks"),
            "output_mot": str(out / "ik.mot"),
            "setup_out": str(out / "ik_setup.xml"),
            "errors_out": str(out / "ik_marker_errors.sto"),
            "strike_lead": os_cfg["strike_lead"],
            "marker_weights": os_cfg["marker_weights"],
            "flag_limit": os_cfg["ik_flag_limit"],
            **common,
        }
    loads = str(res / trial / "external_loads.xml")
    if stage == "id":
        return {
            "model": model,
            "coordinates_mot": mot,
            "external_loads_xml": loads,
            "output_sto": str(out / "id.sto"),
            "setup_out": str(out / "id_setup.xml"),
            "residuals_out": str(out / "residuals.json"),
            "lowpass_hz": os_cfg["lowpass_hz"],
            "height": subject.height,
            **common,
        }
    if stage == "so":
        return {
            "model": model,
            "coordinates_mot": mot,
            "external_loads_xml": loads,
            "activation_out": str(out / "so_activation.sto"),
            "force_out": str(out / "so_force.sto"),
            "setup_out": str(out / "so_setup.xml"),
            "reserves_out": str(out / "so_reserves.json"),
            "reserve_optimal_force": os_cfg["reserve_optimal_force"],
            "residual_optimal_force": os_cfg["residual_optimal_force"],
            "lowpass_hz": os_cfg["lowpass_hz"],
            **common,
        }
    return {
        "model": model,
        "coordinates_mot": mot,
        "output_npz": str(out / "muscle_analysis.npz"),
        "sto_dir": str(out / "muscle_analysis"),
        "setup_out": str(out / "ma_setup.xml"),
        "lowpass_hz": os_cfg["lowpass_hz"],
        **common,
    }


def _setup_name(stage: str) -> str:
    return {
        "scale": "scale_setup.xml",
        "ik": "ik_setup.xml",
        "id": "id_setup.xml",
        "so": "so_setup.xml",
        "muscle_analysis": "ma_setup.xml",
    }[stage]


def time_stage(
    stage: str, subject: Any, trial: str, cfg: dict, inputs: dict, repeat: int
) -> tuple[float, float]:
    """Best wall time (s) of the musculo stage and of the bare tool on its resolved setup."""
    ours, bare = [], []
    with tempfile.TemporaryDirectory(prefix="bench-opensim-") as tmp:
        out = Path(tmp) / "out"
        out.mkdir()
        args = Path(tmp) / "args.json"
        args.write_text(json.dumps(_stage_kwargs(stage, subject, trial, cfg, inputs, out)))
        cmd = [sys.executable, "-m", "musculo.opensim_tools", stage, "--json", str(args)]
        cmd += ["--result", str(Path(tmp) / "result.json"), "--log", str(Path(tmp) / "musculo.log")]
        for _ in range(repeat):
            ours.append(_timed(cmd))
        setup = out / _setup_name(stage)
        code = (
            "import opensim, sys; opensim.Logger.removeFileSink(); opensim.Logger.setLevelString('warn'); "
            f"xml = sys.argv[1]; ok = {BARE[stage]}; sys.exit(0 if ok else 1)"
        )
        for _ in range(repeat):
            bare.append(_timed([sys.executable, "-c", code, str(setup)], cwd=Path(tmp)))
    return min(ours), min(bare)


def stage_table(subjects: list[str], cfg: dict, repeat: int) -> list[dict[str, Any]]:
    """One row per stage and subject: trials, seconds per trial (musculo, bare) and their ratio."""
    from musculo.subject import load_subject

    rows = []
    for sid in subjects:
        subject = load_subject(REPO / "subjects" / sid / "subject.yaml")
        inputs = json.loads((REPO / "results" / sid / "inputs.json").read_text())
        static = subject.trial_names("static")[0]
        dynamic = subject.trial_names("dynamic")
        for stage in STAGES:
            trials = [static] if stage == "scale" else dynamic
            ours = bare = 0.0
            for trial in trials:
                o, b = time_stage(stage, subject, trial, cfg, inputs, repeat)
                ours, bare = ours + o, bare + b
            n = len(trials)
            rows.append(
                {
                    "stage": stage,
                    "subject": sid,
                    "trials": n,
                    "musculo_s": ours / n,
                    "bare_s": bare / n,
                    "ratio": ours / bare,
                }
            )
            print(
                f"{stage:16s} {sid:22s} {n:6d} {ours / n:12.2f} {bare / n:9.2f} {ours / bare:7.3f}",
                flush=True,
            )
    return rows


def _copy_repo(dst: Path, subjects: list[str]) -> None:
    ignore = shutil.ignore_patterns(".git", ".venv", "results", ".snakemake", "__pycache__", "*.egg-info")
    shutil.copytree(REPO, dst, ignore=ignore, symlinks=True)
    for sid in subjects:
        # the import outputs (and their mtimes), so that only the OpenSim rules run
        shutil.copytree(REPO / "results" / sid, dst / "results" / sid, copy_function=shutil.copy2)


def speedup(subjects: list[str], overlays: list[str]) -> tuple[float, float]:
    """Wall time (s) of the forced OpenSim rules for ``subjects`` at --cores 1 and --cores 2."""
    targets = [f"results/{s}/quality.tsv" for s in subjects]
    times = []
    with tempfile.TemporaryDirectory(prefix="bench-workflow-") as tmp:
        work = Path(tmp) / "repo"
        _copy_repo(work, subjects)
        for cores in (1, 2):
            cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--rerun-triggers", "mtime"]
            cmd += ["--config", f"subjects={json.dumps(subjects)}"]
            cmd += ["--forcerun", *OPENSIM_RULES, "--configfile", *overlays, "--", *targets]
            times.append(_timed(cmd, cwd=work))
            print(f"snakemake --cores {cores}: {times[-1]:.1f} s", flush=True)
    return times[0], times[1]


def main(argv: list[str] | None = None) -> int:
    """Print the stage table and the workflow speedup."""
    from musculo.config import load_config

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subjects", nargs="+", default=["gait2354-subject01", "biomechzoo-HC002D"])
    parser.add_argument("--overlay", nargs="*", default=["config/ci.yaml"], help="config overlays")
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement (best kept)")
    parser.add_argument("--no-speedup", action="store_true", help="skip the --cores 1 / 2 comparison")
    ns = parser.parse_args(argv)
    os.chdir(REPO)
    cfg = load_config(REPO / "config" / "config.yaml", [REPO / o for o in ns.overlay])
    missing = [s for s in ns.subjects if not (REPO / "results" / s / "inputs.json").is_file()]
    if missing:
        parser.error(f"no results for {missing}; run the workflow for them first")
    print(f"settings: config/config.yaml + {ns.overlay}; best of {ns.repeat}; OMP_NUM_THREADS=1")
    print(
        f"{'stage':16s} {'subject':22s} {'trials':>6s} {'musculo s/tr':>12s} {'bare s/tr':>9s} {'ratio':>7s}"
    )
    stage_table(ns.subjects, cfg, ns.repeat)
    if not ns.no_speedup:
        one, two = speedup(ns.subjects, ns.overlay)
        print(
            f"OpenSim part of the workflow for {ns.subjects}: --cores 1 {one:.1f} s, --cores 2 {two:.1f} s, "
            f"speedup {one / two:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
