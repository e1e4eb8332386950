"""Reading and validating request input: JSON bodies, query parameters, dates and pages.

Every problem is a 400 ``invalid_input`` naming the field and what it expects, whether it is
in the query string or the body; a body that is not JSON at all is a 400 ``bad_json``.
Unknown body fields are refused too, so a typo is never silently ignored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from admin_api.errors import ApiError, bad_input
from store.records import hit_id_day

MAX_BODY_BYTES = 64 * 1024
DEFAULT_PAGE = 50
MAX_PAGE = 500
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


async def json_body(request: web.Request, allowed: Collection[str]) -> dict[str, Any]:
    """The body as a JSON object with only ``allowed`` fields (an empty body is ``{}``)."""
    raw = await request.read()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large", f"The body is over {MAX_BODY_BYTES} bytes.")
    if not raw.strip():
        return {}
    if request.content_type != "application/json":
        # also keeps cross-site HTML forms (which cannot send this type) out
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_json", "The body is not valid JSON.") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "The body must be a JSON object.")
    try:  # JSON's \u escapes can spell lone surrogates, which no store can encode
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ApiError(400, "bad_json", "The body contains invalid Unicode (a lone "
                       "surrogate escape).") from exc
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise bad_input(f"unknown field {unknown[0]!r}; expected: {', '.join(sorted(allowed))}",
                        unknown[0])
    return data


def text(data: Mapping[str, Any], name: str, *, required: bool = False, max_length: int = 200,
         min_length: int = 0, pattern: re.Pattern[str] | None = None, what: str = ""
         ) -> str | None:
    """A string field (body or query), stripped; None when absent and not required."""
    value = data.get(name)
    if value is None or (isinstance(value, str) and not value.strip() and not required):
        if required:
            raise bad_input(f"{name} is required", name)
        return None
    if not isinstance(value, str):
        raise bad_input(f"{name} must be a string", name)
    value = value.strip()
    if len(value) < max(min_length, 1 if required else 0):
        raise bad_input(f"{name} must have at least {max(min_length, 1)} characters", name)
    if len(value) > max_length:
        raise bad_input(f"{name} must be at most {max_length} characters", name)
    if _CONTROL.search(value):
        raise bad_input(f"{name} contains control characters", name)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise bad_input(f"{name} is not valid Unicode text", name) from exc
    if pattern is not None and not pattern.fullmatch(value):
        raise bad_input(f"{name} is not valid{': ' + what if what else ''}", name)
    return value


def required_text(data: Mapping[str, Any], name: str, **kwargs: Any) -> str:
    value = text(data, name, required=True, **kwargs)
    assert value is not None
    return value


HIT_REFERENCE = re.compile(r"[0-9]{8}-[0-9A-Za-z]{8}")


def hit_reference(data: Mapping[str, Any], name: str = "hit_id") -> str | None:
    """A block reference as shown on the block page, like ``20261122-7KQ2X9AB``."""
    value = text(data, name, max_length=17)
    if value is None:
        return None
    if not HIT_REFERENCE.fullmatch(value) or hit_id_day(value.upper()) is None:
        raise bad_input(f"{name} must be a block reference like 20261122-7KQ2X9AB", name)
    return value.upper()


def choice(data: Mapping[str, Any], name: str, options: Collection[str], *,
           default: str | None = None) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        return default
    if not isinstance(value, str) or value not in options:
        raise bad_input(f"{name} must be one of: {', '.join(options)}", name)
    return value


def boolean(data: Mapping[str, Any], name: str, default: bool = False) -> bool:
    value = data.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise bad_input(f"{name} must be true or false", name)


def parse_time(value: Any, name: str, tz: ZoneInfo, *, end_of_day: bool = False) -> float:
    """An ISO 8601 date or date-time as epoch seconds. A bare date means its start (or, with
    ``end_of_day``, the start of the next day, so ``to=2026-11-23`` includes that day); a time
    without an offset is local time in ``tz``."""
    if not isinstance(value, str) or not value or len(value) > 40:
        raise bad_input(f"{name} must be an ISO 8601 date or time like 2026-11-23 or "
                        "2026-11-23T12:15:00Z", name)
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime.combine(day, time(0), tz)
            if end_of_day:
                moment = datetime.combine(day + timedelta(days=1), time(0), tz)
            return moment.timestamp()
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except (ValueError, OverflowError) as exc:
        raise bad_input(f"{name} {value[:40]!r} is not an ISO 8601 date or time like "
                        "2026-11-23 or 2026-11-23T12:15:00Z", name) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    try:
        return parsed.timestamp()
    except (OverflowError, OSError, ValueError) as exc:
        raise bad_input(f"{name} is out of range", name) from exc


def optional_time(data: Mapping[str, Any], name: str, tz: ZoneInfo, *,
                  end_of_day: bool = False) -> float | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    return parse_time(value, name, tz, end_of_day=end_of_day)


def time_range(data: Mapping[str, Any], tz: ZoneInfo) -> tuple[float | None, float | None]:
    start = optional_time(data, "from", tz)
    end = optional_time(data, "to", tz, end_of_day=True)
    if start is not None and end is not None and end < start:
        raise bad_input("to is before from", "to")
    return start, end


def page_limit(data: Mapping[str, Any], default: int = DEFAULT_PAGE, maximum: int = MAX_PAGE
               ) -> int:
    value = data.get("limit")
    if value is None or value == "":
        return default
    if not isinstance(value, str) or not value.isdigit() or not 1 <= int(value) <= maximum:
        raise bad_input(f"limit must be a whole number from 1 to {maximum}", "limit")
    return int(value)


def offset_cursor(data: Mapping[str, Any]) -> int:
    """The cursor of an offset-paged list (an opaque number this server returned)."""
    value = data.get("cursor")
    if value is None or value == "":
        return 0
    if not isinstance(value, str) or not value.isdigit() or len(value) > 9:
        raise bad_input("cursor is not one this server returned", "cursor")
    return int(value)


def page_of(items: list[Any], offset: int, limit: int) -> tuple[list[Any], str | None]:
    chunk = items[offset:offset + limit]
    return chunk, str(offset + limit) if offset + limit < len(items) else None


def query_params(request: web.Request, allowed: Collection[str]) -> Mapping[str, str]:
    """The query parameters, refusing unknown and repeated ones."""
    query = request.query
    for name in query:
        if name not in allowed:
            raise bad_input(f"unknown query parameter {name!r}", name)
        if len(query.getall(name)) > 1:
            raise bad_input(f"{name} is given more than once", name)
    return query
