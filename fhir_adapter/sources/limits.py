"""Size limits of file sources: how much of one NDJSON line, or of one Bundle file, is read at most.

Far above any real resource (the largest real ones, a DiagnosticReport with an embedded PDF say, are a few
megabytes), they only stop what is not data: a line of a gigabyte, a small gzip file that inflates without
end. What goes past a limit is named and not read, and memory stays bounded by the limit, whatever the file.

- ``FHIR_ADAPTER_MAX_LINE_BYTES`` (default 64 MiB): one NDJSON line (after gzip decompression);
- ``FHIR_ADAPTER_MAX_BUNDLE_BYTES`` (default 4 GiB): one Bundle file (after gzip decompression).

Both take a number of bytes, with an optional K, M or G suffix (powers of 1024).
"""

from __future__ import annotations

import os
import re

from fhir_adapter.errors import ConfigError

LINE_VARIABLE, BUNDLE_VARIABLE = "FHIR_ADAPTER_MAX_LINE_BYTES", "FHIR_ADAPTER_MAX_BUNDLE_BYTES"
DEFAULT_LINE_BYTES, DEFAULT_BUNDLE_BYTES = 64 << 20, 4 << 30
_SIZE = re.compile(r"^\s*(\d+)\s*([KMG]?)i?B?\s*$", re.IGNORECASE)


def parse_size(text: str, name: str) -> int:
    """``12``, ``64M``, ``4G``... as a number of bytes; ConfigError naming ``name`` otherwise."""
    m = _SIZE.match(text)
    if not m or int(m.group(1)) <= 0:
        raise ConfigError(f"{name}={text!r}: expected a positive number of bytes, e.g. 67108864 or 64M")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2).upper()]


def max_line_bytes() -> int:
    """The longest NDJSON line read (``FHIR_ADAPTER_MAX_LINE_BYTES``)."""
    value = os.environ.get(LINE_VARIABLE)
    return parse_size(value, LINE_VARIABLE) if value else DEFAULT_LINE_BYTES


def max_bundle_bytes() -> int:
    """The largest Bundle file read (``FHIR_ADAPTER_MAX_BUNDLE_BYTES``)."""
    value = os.environ.get(BUNDLE_VARIABLE)
    return parse_size(value, BUNDLE_VARIABLE) if value else DEFAULT_BUNDLE_BYTES
