"""Log context fields and the JSON log format of ``aep-extract --log-format json``.

The engine passes ``extra=log_context(unit, file)`` with its records, so every line
about a unit carries ``dataset``, ``batch`` and ``unit`` (and ``file`` where one file
is concerned). :class:`JsonFormatter` writes one JSON object per line, the shape
CloudWatch Logs Insights reads without parsing rules. Messages never hold tokens (the
library never logs them), and nothing beyond the record's own fields is added.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any, Optional

from .errors import ConfigError
from .models import FileRef, WorkUnit

CONTEXT_FIELDS = ("dataset", "batch", "unit", "file")
"""Record attributes the JSON format copies when a record has them."""


def log_context(
    unit: WorkUnit, file: Optional[FileRef] = None, key: Optional[str] = None
) -> dict[str, Any]:
    """The ``extra=`` of a log record about ``unit`` (and ``file``)."""
    context: dict[str, Any] = {
        "dataset": unit.dataset_id,
        "batch": unit.batch_id,
        "unit": unit.unit_id,
    }
    if file is not None:
        context["file"] = f"{file.dataset_file_id}/{file.name}"
    if key is not None:
        context["key"] = key
    return context


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON.

    Fields: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, then
    ``dataset``, ``batch``, ``unit``, ``file`` and ``key`` when the record carries
    them, and ``exception`` (the formatted traceback) when it has one.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object on one line."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in (*CONTEXT_FIELDS, "key"):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""The CLI's plain-text log format."""


def make_formatter(kind: str) -> logging.Formatter:
    """The formatter of ``--log-format`` ``text`` or ``json``.

    Raises:
        ConfigError: another kind.
    """
    if kind == "json":
        return JsonFormatter()
    if kind == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ConfigError(f"unknown log format {kind!r}; use 'text' or 'json'")
