"""Logging setup for command-line and workflow jobs (the library itself only emits records)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from musculo import logger

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def job_logging(
    path: str | os.PathLike[str] | None, *, level: int = logging.INFO, capture_fds: bool = True
) -> Iterator[None]:
    """Send the musculo logger (and, optionally, file descriptors 1 and 2) to ``path``.

    OpenSim writes some messages straight to the process's stdout; capturing the file descriptors
    puts them in the job log too. With ``path=None`` records go to stderr.
    """
    handler: logging.Handler
    saved: list[int] = []
    log_file = None
    if path is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        log_file = open(path, "a", buffering=1)  # noqa: SIM115 - closed in finally
        if capture_fds:
            sys.stdout.flush()
            sys.stderr.flush()
            saved = [os.dup(1), os.dup(2)]
            os.dup2(log_file.fileno(), 1)
            os.dup2(log_file.fileno(), 2)
        handler = logging.StreamHandler(log_file)
    handler.setFormatter(logging.Formatter(_FORMAT))
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    from musculo.errors import MusculoError

    try:
        yield
    except MusculoError as exc:
        # musculo's own errors name the file, the field and the fix: the message is the log's last
        # line, with no traceback before it (the traceback still reaches the caller's stderr)
        logger.error("job failed: %s", exc)
        raise
    except BaseException:
        logger.exception("job failed")
        raise
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
        handler.flush()
        if saved:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
        if log_file is not None:
            log_file.close()


def opensim_log_to(path: str | os.PathLike[str], *, level: str = "Info") -> None:
    """Route OpenSim's own logger to ``path`` instead of ``./opensim.log``."""
    import opensim  # local import: importing opensim costs about half a second

    opensim.Logger.removeFileSink()
    opensim.Logger.addFileSink(str(path))
    opensim.Logger.setLevelString(level)
