"""Every error as JSON ``{"error": {"code", "message"}}``, and never a stack trace.

Handlers raise :class:`ApiError`; :func:`error_middleware` turns it, aiohttp's own HTTP
exceptions (unknown route, wrong method, body too large) and anything unexpected into that
shape. Unexpected exceptions are logged server-side with the request id and answered with a
generic 500; a Redis outage is a 503.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {400: "bad_request", 401: "unauthorised", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 406: "not_acceptable", 409: "conflict",
               413: "body_too_large", 415: "unsupported_media_type", 429: "too_many_requests"}
_HTTP_MESSAGES = {404: "There is no such resource.",
                  405: "This method is not allowed here.",
                  413: "The request body is too large."}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


def bad_input(message: str, field: str | None = None) -> ApiError:
    """A malformed or invalid request: always 400 with code ``invalid_input``."""
    return ApiError(400, "invalid_input", message, field=field)


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"There is no {what} with that id.")


def error_response(status: int, code: str, message: str, *, field: str | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return web.json_response({"error": body}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, field=exc.field,
                              headers=exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        message = _HTTP_MESSAGES.get(exc.status) or exc.reason
        return error_response(exc.status, _HTTP_CODES.get(exc.status, "error"), message,
                              headers=headers)
    except asyncio.CancelledError:
        raise
    except RedisError:
        log.exception("Redis error handling %s %s", request.method, request.path)
        return error_response(503, "unavailable", "The data store is unavailable; try again "
                              "shortly.")
    except Exception:
        reference = secrets.token_hex(4)
        log.exception("unexpected error %s handling %s %s", reference, request.method,
                      request.path)
        return error_response(500, "internal_error", "Something went wrong on the server. "
                              f"It has been logged (reference {reference}).")
