"""Digital twins: seconds to generate each twin, and what its truth holds.

Usage:
    python benchmarks/twin_generation.py                      # every twin-* subject
    python benchmarks/twin_generation.py --subjects twin-walk twin-squat
    python benchmarks/twin_generation.py --overlay config/ci.yaml

Each twin is generated with the config's ``twin`` settings (a twin's own ``twin.truth`` first) into a
temporary folder, so ``subjects/`` is left as it is. Per dynamic trial the table lists the truth's
solver, the generator's pelvis residual force RMS (% body weight) and moment RMS (% body weight x
height), how far the centre of pressure strays off the sole (m), the true iliopsoas peak excitation,
and how many antagonist pairs (:data:`musculo.twin.truth.ANTAGONISTS`) co-contract, both above 0.05,
for at least 20 % of the trial. ``seconds`` is the wall time of the whole twin's generation.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from musculo.config import load_config
from musculo.twin.generate import generate_twin, load_truth
from musculo.twin.truth import cocontraction


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", nargs="*", default=[])
    ap.add_argument("--overlay", nargs="*", default=[])
    args = ap.parse_args()
    config = load_config("config/config.yaml", args.overlay)
    tw = config["twin"]
    subjects = args.subjects or sorted(p.name for p in Path("subjects").glob("twin-*") if p.is_dir())
    print(f"{'twin':<16} {'seconds':>8} {'trial':<8} {'truth':>5} {'res F %BW':>9} {'res M %BWH':>10} "
          f"{'COP off m':>9} {'ilio pk':>7} {'pairs':>5}")
    for sid in subjects:
        with tempfile.TemporaryDirectory(prefix="musculo-bench-twin-") as tmp:
            t0 = time.perf_counter()
            summary = generate_twin(
                subject=Path("subjects", sid), out_dir=tmp, marker_rate=tw["marker_rate"],
                analog_rate=tw["analog_rate"], marker_noise=tw["marker_noise"],
                perturbation=tw["perturbation"], emg=tw["emg"], so=tw["so"], truth=tw["truth"],
                max_residual_fraction=tw["max_residual_fraction"], mirrors=config["data"]["mirror"],
            )
            seconds = time.perf_counter() - t0
            truth = load_truth(Path(tmp, "truth.npz"))
        params = json.loads(str(truth["parameters"]))
        weight, height = float(params["mass"]) * 9.80665, float(params["height"])
        for trial in (str(t) for t in truth["trials"]):
            info = summary["trials"][trial]
            res = info["residuals"]
            force = 100 * max(res["pelvis_tx_force_rms"], res["pelvis_ty_force_rms"]) / weight
            moment = 100 * res["pelvis_tilt_moment_rms"] / (weight * height)
            off = max(res.get("cop_behind_heel_max", 0.0), res.get("cop_beyond_toe_max", 0.0))
            pairs = sum(share >= 0.2 for share in cocontraction(truth, trial).values())
            print(f"{sid:<16} {seconds:>8.1f} {trial:<8} {info['truth']['solver']:>5} {force:>9.3f} "
                  f"{moment:>10.3f} {off:>9.3f} {info['peak_excitation']['iliopsoas_r']:>7.2f} {pairs:>5d}")


if __name__ == "__main__":
    main()
