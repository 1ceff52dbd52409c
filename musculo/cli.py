"""The ``musculo`` command line: single-subject chores beside the Snakemake workflow."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from musculo import __version__, logger
from musculo.errors import MusculoError


def _datasets_fetch(args: argparse.Namespace) -> int:
    from musculo.datasets import fetch

    paths = fetch(args.dataset, mirrors=args.mirror)
    print(f"{len(paths)} files fetched and verified")
    return 0


def _datasets_verify(args: argparse.Namespace) -> int:
    from musculo.datasets import verify

    ok, problems = verify(args.dataset, mirrors=args.mirror)
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    print(f"{len(ok)} files verified, {len(problems)} problems")
    return 1 if problems else 0


def _datasets_list(args: argparse.Namespace) -> int:
    from musculo.datasets import registry

    for (dataset, file), item in sorted(registry().items()):
        if args.dataset in (None, dataset):
            print(f"{dataset}\t{file}\t{item.url}")
    return 0


def _subject_validate(args: argparse.Namespace) -> int:
    import yaml

    from musculo.io.atomic import atomic_output
    from musculo.subject import load_subject
    from musculo.validate import check_subject

    status = 0
    for path in args.paths:
        if args.quick:
            subject = load_subject(path)
            problems = []
        else:
            subject, problems, suggested = check_subject(
                path, mirrors=args.mirror, download=args.download
            )
        for problem in problems:
            print(str(problem), file=sys.stderr if problem.level == "error" else sys.stdout)
        errors = [p for p in problems if p.level == "error"]
        if subject is None or errors:
            status = 1
            print(f"{path}: INVALID ({len(errors)} error(s), {len(problems) - len(errors)} warning(s))")
        else:
            deep = ("unmeasured muscles: auto" if subject.unmeasured_auto
                    else f"{len(subject.unmeasured)} unmeasured muscles")
            print(
                f"{subject.id}: valid ({len(subject.trials)} trials, "
                f"{len(subject.emg_channels)} EMG channels, {deep}"
                f"{', files not opened (--quick)' if args.quick else ''}"
                f"{f', {len(problems)} warning(s)' if problems else ''})"
            )
        if args.fix_suggestions and not args.quick and subject is not None and problems:
            out = subject.dir / "subject.suggested.yaml"
            with atomic_output(out) as tmp:
                tmp.write_text(
                    f"# suggested by musculo subject validate --fix-suggestions from {subject.path.name}\n"
                    + yaml.safe_dump(suggested, sort_keys=False, allow_unicode=True)
                )
            print(f"{subject.id}: suggested subject file written to {out}")
    return status


def _subject_init(args: argparse.Namespace) -> int:
    from musculo.subject_init import draft_subject

    out = draft_subject(args.folder, subject_id=args.id, force=args.force)
    print(f"draft written to {out}; edit it, then run: musculo subject validate {out.parent}")
    return 0


def _stream(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import pandas as pd

    from musculo.estimators.attention import AttentionEstimator
    from musculo.estimators.nmm import NMMEstimator
    from musculo.estimators.realtime import RealtimeEstimator
    from musculo.estimators.trials import load_trials
    from musculo.io.atomic import atomic_output
    from musculo.settings import load_settings
    from musculo.stream import latency_summary, replay
    from musculo.subject import load_subject

    model = Path(args.model)
    if (model / "state.json").is_file():
        method = json.loads((model / "state.json").read_text()).get("method")
        classes = {"attention": AttentionEstimator, "realtime": RealtimeEstimator}
        if method not in classes:
            raise MusculoError(f"{model}/state.json: method {method!r} does not stream (attention, realtime)")
        estimator = classes[method].load(model)
    else:
        estimator = NMMEstimator.load(model)
    subject = load_subject(args.subject)
    settings = load_settings(args.configfile[0], args.configfile[1:], overrides=subject.config_overrides)
    trial = load_trials(subject, [args.trial], settings=settings)[0]
    chunk = args.chunk if args.chunk else settings.realtime.chunk
    rows, latencies = [], []
    for est in replay(estimator, trial, chunk=chunk, history=args.history, realtime=args.realtime):
        latencies.append(est.latency)
        for i, t in enumerate(est.time):
            rows.append({"time": t, **dict(zip(est.coordinates, est.moments[i], strict=True)),
                         **({"activity": est.activity[i]} if est.activity else {})})
        if not args.quiet:
            act = f" {est.activity[-1]}" if est.activity else ""
            vals = " ".join(f"{c}={v:.1f}" for c, v in zip(est.coordinates, est.moments[-1], strict=True))
            print(f"t={est.time[-1]:.3f}s {vals}{act} ({est.latency * 1e3:.2f} ms)")
    summary = latency_summary(latencies)
    print(f"{len(latencies)} chunks of {chunk:g} s: latency median {summary['median_ms']:.3f} ms, "
          f"p95 {summary['p95_ms']:.3f} ms, max {summary['max_ms']:.3f} ms")
    if args.output:
        with atomic_output(Path(args.output)) as tmp:
            pd.DataFrame(rows).to_csv(tmp, sep="\t", index=False, float_format="%.6g")
        print(f"estimates written to {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``musculo`` command."""
    parser = argparse.ArgumentParser(prog="musculo", description=__doc__)
    parser.add_argument("--version", action="version", version=f"musculo {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    ds = sub.add_parser("datasets", help="the registry of public datasets").add_subparsers(
        dest="action", required=True
    )
    for name, func, text in (
        ("fetch", _datasets_fetch, "fetch (mirror or download) and verify registered files"),
        ("verify", _datasets_verify, "verify local copies (mirror or cache) without downloading"),
        ("list", _datasets_list, "list registered files with their upstream URLs"),
    ):
        p = ds.add_parser(name, help=text)
        p.add_argument("--dataset", help="only this dataset")
        p.add_argument(
            "--mirror", action="append", default=[],
            help="local mirror folder holding <dataset>/<file> (also MUSCULO_DATA_MIRROR)",
        )
        p.set_defaults(func=func)

    subj = sub.add_parser("subject", help="subject files").add_subparsers(dest="action", required=True)
    p = subj.add_parser(
        "validate",
        help="validate subjects/<id> (or its subject.yaml): the file, then its trials and model opened",
    )
    p.add_argument("paths", nargs="+")
    p.add_argument("--quick", action="store_true", help="check the subject file only; open no data file")
    p.add_argument(
        "--fix-suggestions", action="store_true",
        help="write subjects/<id>/subject.suggested.yaml with the fixes derived from the data",
    )
    p.add_argument(
        "--download", action="store_true",
        help="download dataset files missing from the mirrors and cache (default: report them)",
    )
    p.add_argument(
        "--mirror", action="append", default=[],
        help="local mirror folder holding <dataset>/<file> (also MUSCULO_DATA_MIRROR)",
    )
    p.set_defaults(func=_subject_validate)
    p = subj.add_parser(
        "init", help="draft subjects/<id>/subject.yaml from a folder of C3D files (static, EMG, plates, axes)"
    )
    p.add_argument("folder", help="folder holding the subject's C3D files; the draft is written there")
    p.add_argument("--id", help="subject id (default: the folder name)")
    p.add_argument("--force", action="store_true", help="overwrite an existing subject.yaml")
    p.set_defaults(func=_subject_init)

    p = sub.add_parser("stream", help="replay a processed trial chunk by chunk into a causal estimator")
    p.add_argument("--model", required=True, help="results/<s>/<method>/model of realtime, attention or nmm")
    p.add_argument("--subject", required=True, help="subjects/<id> (or its subject.yaml)")
    p.add_argument("--trial", required=True, help="processed trial folder results/<s>/<trial>")
    p.add_argument("--configfile", nargs="+", default=["config/config.yaml"],
                   help="config file and overlays (e.g. config/config.yaml config/ci.yaml)")
    p.add_argument("--chunk", type=float, default=None, help="s per chunk (default: config realtime.chunk)")
    p.add_argument("--history", type=float, default=1.0,
                   help="s of history predicted with each chunk by estimators without a streaming state")
    p.add_argument("--realtime", action="store_true", help="feed chunks at the recorded pace")
    p.add_argument("--output", help="write every frame's estimates to this TSV")
    p.add_argument("--quiet", action="store_true", help="print only the latency summary")
    p.set_defaults(func=_stream)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``musculo`` console script."""
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return int(args.func(args))
    except MusculoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        logger.removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
