"""Druid's ``/status/properties`` and ``/status/selfDiscovered[/status]``.

The properties are this service's effective settings under their Druid property names. Nothing
secret leaves: a value whose property name looks like a credential (password, secret, key, token)
is masked, and so is the password part of any URL.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from overlord.api.druid_tasks import service_of
from overlord.api.errors import JSONResponse
from overlord.config import Settings

MASK = "<masked>"
_SECRET_NAME = re.compile(r"password|passwd|pwd|secret|token|credential|accesskey|secretkey|apikey", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/:@\s]*:)(?P<password>[^@/\s]*)@", re.IGNORECASE)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return ",".join(_text(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={_text(v)}" for k, v in value.items())
    return "" if value is None else str(value)


def masked(name: str, value: str) -> str:
    """Hide credentials: the whole value under a credential-like name, else a URL's password."""
    if _SECRET_NAME.search(name.replace(".", "").replace("_", "")):
        return MASK if value else value
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}@", value)


def visible_properties(settings: Settings) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in dataclasses.fields(settings):
        prop = f.metadata.get("prop")
        if prop:
            out[str(prop)] = masked(str(prop), _text(getattr(settings, f.name)))
    return dict(sorted(out.items()))


async def properties(request: Request) -> Response:
    return JSONResponse(visible_properties(service_of(request).settings))


async def self_discovered(request: Request) -> Response:
    return JSONResponse({"selfDiscovered": True})


def routes() -> list[Route]:
    return [
        Route("/status/properties", properties, methods=["GET"]),
        Route("/status/selfDiscovered/status", self_discovered, methods=["GET"]),
        Route("/status/selfDiscovered", self_discovered, methods=["GET"]),
    ]
