"""What ``esafety up`` says at start about a centre that is not set up yet.

While no admin account exists, a one-time set-up token is issued (its digest kept in Redis for
24 hours, replacing any earlier one; see :mod:`store.setup_token`) and the set-up link is
printed on standard output (never logged: the log says only that there is no admin account and
where the link is). Without block lists, it says that only the built-in starter lists are
active, and how to load lists.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TextIO

from redis.exceptions import RedisError

from deployment.instance import Instance
from deployment.listen_address import parse_listen
from deployment.public_address import detected_public_host, url_host
from store.connection import connect
from store.keys import Keys
from store.redis_store import Store
from store.setup_token import has_admin

log = logging.getLogger("esafety.first_run")


def admin_base_url(instance: Instance, admin_listen: str) -> str:
    """The admin service's URL for the set-up link: the configured public URL, else the
    listening address (the detected address when it listens on every interface)."""
    if instance.config.admin_public_url:
        return instance.config.admin_public_url.rstrip("/")
    listen = parse_listen(admin_listen, instance.config.listen.admin.port)
    host = (detected_public_host() if listen.host in ("", "0.0.0.0", "::", "[::]")
            else listen.host.strip("[]"))
    return f"http://{url_host(host)}:{listen.port}"


async def _setup_token(redis_url: str, prefix: str) -> str | None:
    client = connect(redis_url)
    store = Store(client, Keys(prefix=prefix))
    try:
        if has_admin(await store.accounts.all()):
            await store.setup_tokens.clear()
            return None
        return await store.setup_tokens.issue()
    finally:
        await store.aclose()


def first_run_lines(instance: Instance, redis_url: str | None, admin_listen: str) -> list[str]:
    """The lines to print (and log, without the token) about what the centre still needs."""
    base = admin_base_url(instance, admin_listen)
    lines: list[str] = []
    token = None
    if redis_url:
        try:
            token = asyncio.run(_setup_token(redis_url, instance.config.redis_prefix))
        except (RedisError, OSError, KeyError, ValueError) as exc:
            # A store that cannot say (unreachable, or an account record it cannot read)
            # never stops the services from starting.
            log.warning("could not check for an admin account: %r", exc)
    if token is not None:
        log.warning("there is no admin account: make the first one with the one-time set-up "
                    "link printed on esafety up's output (valid 24 hours; a restart prints a "
                    "new one), or with esafety users add NAME --role admin")
        lines += ["No admin account exists yet. Make the first one with this one-time set-up "
                  "link (valid for 24 hours):",
                  f"  {base}/setup?token={token}",
                  "  or on this machine: esafety users add NAME --role admin"]
    if instance.list_store.current_version() is None:
        log.warning("no block lists are loaded: only the built-in starter lists are active; "
                    "import lists in Set-up or with esafety lists import")
        lines += ["No block lists are loaded: only the built-in starter lists are active.",
                  f"  Load lists in Set-up ({base}/setup) or with: esafety lists import "
                  "blacklists.tar.gz"]
    return lines


def print_first_run(instance: Instance, redis_url: str | None, admin_listen: str,
                    out: TextIO) -> None:
    lines = first_run_lines(instance, redis_url, admin_listen)
    if lines:
        out.write("\n".join(lines) + "\n")
        out.flush()
