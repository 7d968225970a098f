"""The service's application log: no PHI. Library messages can name a patient (a FHIR request URL such as
``Observation?subject=Patient/123`` in a retry warning, ``Patient/123`` in a criterion warning); a filter on
the service's handler replaces every patient id with ``***`` before anything is written.

One handler, one format for the app's loggers and uvicorn's (``uvicorn``, ``uvicorn.error``, ``uvicorn.access``):
text, or JSON (``log_format = "json"``: one object per line, ``time``, ``level``, ``logger``, ``message`` and
``exception`` when there is one). ``uvicorn_config`` is the same as a ``logging.config`` dict for uvicorn.run, so
that each worker process sets it up before it logs anything.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from fhir_adapter.service.evaluate import FHIR_ID

_PATIENT = re.compile(rf"(Patient/){FHIR_ID}|((?:patient|subject)(?::\w+)?=)[^&\s;,)'\"]+")


def redact(text: str) -> str:
    """``text`` with every patient id replaced by ``***``."""
    return _PATIENT.sub(lambda m: f"{m.group(1) or m.group(2)}***", text)


class RedactPatients(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:  # a traceback's exception message may name a patient too
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


TEXT_FORMAT = "%(asctime)s fhir-adapter %(levelname)s %(name)s: %(message)s"
LOGGERS = ("fhir_adapter", "uvicorn", "uvicorn.error", "uvicorn.access")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                               "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        return orjson.dumps(out).decode()


def formatter(log_format: str = "text") -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def uvicorn_config(level: str = "info", log_format: str = "text") -> dict[str, Any]:
    """``log_config`` for uvicorn.run: every logger above through one redacting handler on standard error."""
    fmt: dict[str, Any] = {"()": JsonFormatter} if log_format == "json" else {"format": TEXT_FORMAT}
    return {
        "version": 1, "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactPatients}},
        "formatters": {"service": fmt},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                "formatter": "service", "filters": ["redact"]}},
        "loggers": {name: {"handlers": ["stderr"], "level": level.upper(), "propagate": False} for name in LOGGERS},
    }


def configure(level: str = "info", log_format: str = "text") -> None:
    """Log ``fhir_adapter`` and uvicorn's loggers to standard error, in one format, through the redacting
    filter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    handler.addFilter(RedactPatients())
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
