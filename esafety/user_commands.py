"""``esafety users ...`` and ``esafety admin``: the command-line side of the admin API.

Account changes made here are written to the audit log as ``cli:<login name>``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import secrets
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from admin_api.roles import natural_group
from admin_api.server import ListenError, settings_for
from deployment.instance import Instance
from esafety.user_import import UserImportError, parse_rows
from store.accounts import AccountError
from store.connection import connect
from store.redis_store import Store

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
T = TypeVar("T")


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    sys.stderr.write(f"esafety: {message}\n")
    return code


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _with_store(instance: Instance, work: Callable[[Store], Awaitable[T]]) -> T:
    settings = settings_for(instance)

    async def main() -> T:
        store = Store(connect(settings.redis_url), settings.keys, tz=settings.timezone)
        try:
            return await work(store)
        finally:
            await store.aclose()
    return asyncio.run(main())


def cmd_users_add(args: argparse.Namespace, instance: Instance) -> int:
    group = args.group or natural_group(args.role)
    if group not in instance.config.profiles:
        return _fail(f"group {group!r} is not defined (groups: "
                     f"{', '.join(instance.config.profiles)})")
    generated = not args.password_stdin
    password = (sys.stdin.readline().rstrip("\r\n") if args.password_stdin
                else secrets.token_urlsafe(12))

    async def work(store: Store) -> int:
        if await store.accounts.get(args.name) is not None:
            return _fail(f"user {args.name!r} already exists", EXIT_FAILED)
        user = await store.accounts.create(args.name, args.role, group, password,
                                           args.display_name or "")
        await store.audit.append(actor=_actor(), action="user.create", target=user.name,
                                 after=user.public())
        sys.stdout.write(f"created {user.name} ({user.role}, group {user.group})\n")
        if generated:
            sys.stdout.write(f"password (shown once): {password}\n")
        return EXIT_OK
    try:
        return _with_store(instance, work)
    except (AccountError, ListenError) as exc:
        return _fail(str(exc))


def cmd_users_import(args: argparse.Namespace, instance: Instance) -> int:
    try:
        with Path(args.file).open(encoding="utf-8-sig", newline="") as handle:
            rows = parse_rows(handle, instance.config.profiles)
    except OSError as exc:
        return _fail(f"cannot read {args.file}: {exc.strerror}")
    except UserImportError as exc:
        return _fail(str(exc))

    async def work(store: Store) -> int:
        existing = [r.username for r in rows if await store.accounts.get(r.username)]
        if existing:
            return _fail("nothing was imported: these users already exist: "
                         + ", ".join(existing[:20]), EXIT_FAILED)
        for row in rows:
            user = await store.accounts.create(row.username, row.role, row.group,
                                               row.password, row.display_name)
            await store.audit.append(actor=_actor(), action="user.create",
                                     target=user.name, after=user.public())
            shown = f"\t{row.password}" if row.generated else ""
            sys.stdout.write(f"{user.name}\t{user.role}\t{user.group}{shown}\n")
        sys.stderr.write(f"imported {len(rows)} users; generated passwords are shown once, "
                         "above\n")
        return EXIT_OK
    try:
        return _with_store(instance, work)
    except (AccountError, ListenError) as exc:
        return _fail(str(exc))


def cmd_users_list(args: argparse.Namespace, instance: Instance) -> int:
    async def work(store: Store) -> int:
        users = [user.public() for user in await store.accounts.all()]
        if args.json:
            sys.stdout.write(json.dumps(users) + "\n")
        else:
            for user_data in users:
                flag = " (disabled)" if user_data["disabled"] else ""
                sys.stdout.write(f"{user_data['name']:32} {user_data['role']:11} "
                                 f"{user_data['group']}{flag}\n")
        return EXIT_OK
    try:
        return _with_store(instance, work)
    except ListenError as exc:
        return _fail(str(exc))


def cmd_users_disable(args: argparse.Namespace, instance: Instance) -> int:
    async def work(store: Store) -> int:
        user = await store.accounts.get(args.name)
        if user is None:
            return _fail(f"no user {args.name!r}", EXIT_FAILED)
        updated = replace(user, disabled=True)
        await store.accounts.save(updated)
        revoked = await store.accounts.revoke_all_tokens(user.name)
        await store.audit.append(actor=_actor(), action="user.disable", target=user.name,
                                 before=user.public(), after=updated.public())
        sys.stdout.write(f"disabled {user.name}; ended {revoked} sessions\n")
        return EXIT_OK
    try:
        return _with_store(instance, work)
    except ListenError as exc:
        return _fail(str(exc))


def cmd_users_revoke(args: argparse.Namespace, instance: Instance) -> int:
    async def work(store: Store) -> int:
        if await store.accounts.get(args.name) is None:
            return _fail(f"no user {args.name!r}", EXIT_FAILED)
        revoked = await store.accounts.revoke_all_tokens(args.name)
        await store.audit.append(actor=_actor(), action="user.revoke_tokens",
                                 target=args.name, after={"revoked": revoked})
        sys.stdout.write(f"ended {revoked} sessions of {args.name}\n")
        return EXIT_OK
    try:
        return _with_store(instance, work)
    except ListenError as exc:
        return _fail(str(exc))
