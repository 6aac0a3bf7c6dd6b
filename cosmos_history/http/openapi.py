"""The OpenAPI document of the HTTP API, kept in the repo beside the code and served as is."""

from __future__ import annotations

import functools
from pathlib import Path

OPENAPI_PATH = Path(__file__).with_name("openapi.json")


@functools.cache
def openapi_document() -> bytes:
    """The document's bytes, read once per process."""
    return OPENAPI_PATH.read_bytes()
