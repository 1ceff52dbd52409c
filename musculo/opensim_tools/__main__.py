"""Command line: ``python -m musculo.opensim_tools <tool> --json args.json [--result out.json]``.

``args.json`` holds the keyword arguments of the tool's function. The result (or the error class
and message) is written to ``--result`` as JSON; the exit status is 0 on success, 2 on a musculo
error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from musculo.errors import MusculoError
from musculo.log import job_logging
from musculo.opensim_tools.isolated import TOOLS, tool_function


def main(argv: list[str] | None = None) -> int:
    """Run one tool from the command line; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m musculo.opensim_tools", description=__doc__)
    parser.add_argument("tool", choices=sorted(TOOLS))
    parser.add_argument("--json", required=True, type=Path, help="keyword arguments (JSON object)")
    parser.add_argument("--result", type=Path, help="where to write the result or error (JSON)")
    parser.add_argument("--log", type=Path, help="job log file (default: stderr)")
    ns = parser.parse_args(argv)
    kwargs = json.loads(ns.json.read_text())
    status, payload = 0, {}
    with job_logging(ns.log, capture_fds=ns.log is not None):
        try:
            payload = {"result": tool_function(ns.tool)(**kwargs)}
        except MusculoError as exc:
            status, payload = 2, {"error": type(exc).__name__, "message": str(exc)}
    text = json.dumps(payload, indent=2, default=str)
    if ns.result:
        ns.result.write_text(text)
    elif status == 0:
        print(text)
    if status:
        print(f"{payload['error']}: {payload['message']}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
