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
    from musculo.subject import load_subject

    for path in args.paths:
        subject = load_subject(path)
        print(
            f"{subject.id}: valid ({len(subject.trials)} trials, "
            f"{len(subject.emg_channels)} EMG channels, {len(subject.unmeasured)} unmeasured muscles)"
        )
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
    p = subj.add_parser("validate", help="validate subjects/<id> (or its subject.yaml)")
    p.add_argument("paths", nargs="+")
    p.set_defaults(func=_subject_validate)
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
