"""Validation reports: per-subject HTML (:func:`build_subject_report`) and the cohort summary."""

from musculo.report.html import build_subject_report
from musculo.report.summary import build_summary

__all__ = ["build_subject_report", "build_summary"]
