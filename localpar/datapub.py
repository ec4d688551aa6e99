"""``from localpar.datapub import publish_data``: the task-facing names, kept at ipyparallel's path."""

from .engine.datapub import publish_data, report_progress, resume_data

__all__ = ["publish_data", "report_progress", "resume_data"]
