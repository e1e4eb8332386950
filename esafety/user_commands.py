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

from admin_api.directory_groups import MANAGED_BY
from deployment.instance import Instance, NoStoreError
from esafety.admin_store import admin_store
from esafety.known_names import UnknownNameError, known_group
from esafety.user_import import UserImportError, parse_rows
from store.accounts import AccountError
from store.records import natural_group
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
    async def main() -> T:
        store = admin_store(instance)
        try:
            return await work(store)
        finally:
            await store.aclose()
    return asyncio.run(main())


def cmd_users_add(args: argparse.Namespace, instance: Instance) -> int:
    try:
        group = known_group(instance.config, args.group or natural_group(args.role))
    except UnknownNameError as exc:
        return _fail(str(exc))
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
    except (AccountError, NoStoreError) as exc:
        return _fail(str(exc))


def cmd_users_import(args: argparse.Namespace, instance: Instance) -> int:
    try:
        with Path(args.file).open(encoding="utf-8-sig", newline="") as handle:
            if args.group is not None:
                known_group(instance.config, args.group)
            rows = parse_rows(handle, instance.config.profiles, default_role=args.role,
                              default_group=args.group)
    except OSError as exc:
        return _fail(f"cannot read {args.file}: {exc.strerror}")
    except (UserImportError, UnknownNameError) as exc:
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
    except (AccountError, NoStoreError) as exc:
        return _fail(str(exc))


def cmd_users_list(args: argparse.Namespace, instance: Instance) -> int:
    async def work(store: Store) -> int:
        users = [user.public() for user in await store.accounts.all()]
        if args.json:
            sys.stdout.write(json.dumps(users) + "\n")
        elif not users:
            sys.stdout.write("no users yet: add one with esafety users add NAME --role ROLE "
                             "(or esafety users import FILE.csv)\n")
        else:
            for user_data in users:
                flag = " (disabled)" if user_data["disabled"] else ""
                sys.stdout.write(f"{user_data['name']:32} {user_data['role']:11} "
                                 f"{user_data['group']}{flag}\n")
        return EXIT_OK
    try:
        return _with_store(instance, work)
    except NoStoreError as exc:
        return _fail(str(exc))


def cmd_users_edit(args: argparse.Namespace, instance: Instance) -> int:
    if args.role is None and args.group is None and args.display_name is None:
        return _fail("nothing to change: give --role, --group or --display-name")
    try:
        group = known_group(instance.config, args.group) if args.group is not None else None
    except UnknownNameError as exc:
        return _fail(str(exc))

    async def work(store: Store) -> int:
        user = await store.accounts.get(args.name)
        if user is None:
            return _fail(f"no user {args.name!r}", EXIT_FAILED)
        if user.managed_by == MANAGED_BY and (args.role is not None or group is not None):
            return _fail(f"{user.name}'s role and group follow the directory groups (the next "
                         "directory sync would undo a change here): move them between groups "
                         "in the directory", EXIT_FAILED)
        updated = replace(user, role=args.role or user.role, group=group or user.group,
                          display_name=(args.display_name if args.display_name is not None
                                        else user.display_name))
        await store.accounts.save(updated)
        await store.audit.append(actor=_actor(), action="user.update", target=user.name,
                                 before=user.public(), after=updated.public())
        sys.stdout.write(f"updated {updated.name} ({updated.role}, group {updated.group})\n")
        return EXIT_OK
    try:
        return _with_store(instance, work)
    except (AccountError, NoStoreError) as exc:
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
    except NoStoreError as exc:
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
    except NoStoreError as exc:
        return _fail(str(exc))
