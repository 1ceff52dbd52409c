"""Job logs: musculo's errors end the log as their message alone, other failures with a traceback."""

from __future__ import annotations

import pytest

from musculo.errors import InputDataError
from musculo.log import job_logging


def test_musculo_error_is_logged_as_its_message(tmp_path):
    log = tmp_path / "job.log"
    with pytest.raises(InputDataError), job_logging(log, capture_fds=False):
        raise InputDataError("trial.c3d: field 'EMG1' is flat; exclude it in subject.yaml")
    text = log.read_text()
    assert text.rstrip().endswith("job failed: trial.c3d: field 'EMG1' is flat; exclude it in subject.yaml")
    assert "Traceback" not in text


def test_other_failures_keep_their_traceback(tmp_path):
    log = tmp_path / "job.log"
    with pytest.raises(ZeroDivisionError), job_logging(log, capture_fds=False):
        _ = 1 / 0
    assert "Traceback" in log.read_text() and "ZeroDivisionError" in log.read_text()
