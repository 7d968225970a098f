"""The service's application log: no PHI. Library messages can name a patient (a FHIR request URL such as
``Observation?subject=Patient/123`` in a retry warning, ``Patient/123`` in a criterion warning); a filter on
the service's handler replaces every patient id with ``***`` before anything is written."""

from __future__ import annotations

import logging
import re
import sys

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


def configure(level: str = "info") -> None:
    """Log ``fhir_adapter`` (and uvicorn's loggers) to standard error through the redacting filter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s fhir-adapter %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactPatients())
    root = logging.getLogger("fhir_adapter")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        for h in logging.getLogger(name).handlers:
            h.addFilter(RedactPatients())
