"""Loggers that keep an experiment's whole history across resumes.

Lightning's CSVLogger deletes ``metrics.csv`` when its folder is reused ("previous log files will be
deleted"); `HistoryCSVLogger` appends to it instead, rewrites it atomically when a new column appears,
and repairs a row cut off by a killed process. TensorBoard event files are never deleted: each run adds
its own file; a resumed run marks its first step (``purge_step``) so TensorBoard shows the steps it
repeats once.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import cast

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only

from mulap.infra.files import fsync_dir, is_write_problem, unlink_quietly, write_error

log = logging.getLogger(__name__)


class _AppendingWriter(ExperimentWriter):
    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        path = Path(self.metrics_file_path)
        if path.is_file():
            _drop_partial_row(path)
            with open(path, newline="") as fh:
                self.metrics_keys = next(csv.reader(fh), [])

    def _check_log_dir_exists(self) -> None:
        """Lightning deletes metrics.csv here; the history is kept."""

    def save(self) -> None:
        try:
            super().save()
        except OSError as exc:
            raise write_error(exc, self.metrics_file_path) from None

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        """A new column: rewrite the file with the wider header, atomically (a crash keeps the old file)."""
        path = Path(self.metrics_file_path)
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with open(tmp, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=fieldnames)
                writer.writeheader()
                writer.writerows(rows)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            fsync_dir(path.parent)
        except OSError as exc:
            unlink_quietly(tmp)
            raise write_error(exc, path) from None


def _drop_partial_row(path: Path) -> None:
    """A process killed while appending can leave a row without its newline; appending after it would
    glue two rows together. The partial row is cut off (and said so)."""
    with open(path, "rb+") as fh:
        data = fh.read()
        if not data or data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1
        fh.truncate(keep)
    log.warning("%s: dropped a partial last row (%d bytes) left by an interrupted write", path, len(data) - keep)


class HistoryCSVLogger(CSVLogger):
    """CSVLogger that appends to an existing metrics.csv (see the module docstring)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> _AppendingWriter:
        if self._experiment is None:
            try:
                os.makedirs(self.root_dir, exist_ok=True)
            except OSError as exc:
                raise write_error(exc, self.root_dir) from None
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return cast(_AppendingWriter, self._experiment)  # the only writer this logger makes

    @rank_zero_only
    def finalize(self, status: str) -> None:
        try:
            super().finalize(status)
        except OSError as exc:
            if status != "failed" or not is_write_problem(exc):
                raise
            log.warning("%s", exc)  # the run already failed: report the original error, not this one


class HistoryTensorBoardLogger(TensorBoardLogger):
    """TensorBoardLogger whose failure to flush, after a run already failed, does not hide the run's error."""

    @rank_zero_only
    def finalize(self, status: str) -> None:
        try:
            super().finalize(status)
        except OSError as exc:
            if status != "failed":
                raise
            log.warning("%s", exc)
