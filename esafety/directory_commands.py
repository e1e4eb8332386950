"""``esafety directory sync``: read the directory groups (``identity.ldap``) now, set the
members' accounts, and print what changed (the admin service does the same on a schedule)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from deployment.instance import Instance, NoStoreError
from esafety.admin_store import admin_store

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def cmd_directory_sync(args: argparse.Namespace, instance: Instance) -> int:
    ldap = instance.config.identity.ldap
    if ldap is None:
        sys.stderr.write("esafety: no directory configured: add identity.ldap (url, bind_dn, "
                         "password_env, groups, roles) to the config file\n")
        return EXIT_USAGE
    # ldap3 and the sync worker load only for this command.
    from admin_api.workers.directory_sync import DirectoryError, DirectorySync, SyncReport
    try:
        store = admin_store(instance)
    except NoStoreError as exc:
        sys.stderr.write(f"esafety: {exc}\n")
        return EXIT_USAGE

    async def run() -> SyncReport:
        try:
            return await DirectorySync(
                store, ldap, profiles=instance.config.profiles,
                unidentified_group=instance.config.unidentified_group).sync_now()
        finally:
            await store.aclose()

    try:
        report = asyncio.run(run())
    except DirectoryError as exc:
        sys.stderr.write(f"esafety: directory sync failed, nothing was changed: {exc}\n")
        return EXIT_FAILED
    if args.json:
        sys.stdout.write(json.dumps({
            "members": report.members,
            "changes": [{"kind": c.kind, "user": c.name,
                         "before": c.before.public() if c.before else None,
                         "after": c.after.public()} for c in report.changes],
            "kept_local": list(report.kept_local),
            "skipped": list(report.skipped_names)}) + "\n")
        return EXIT_OK
    for line in report.lines():
        sys.stdout.write(line + "\n")
    sys.stdout.write(f"{report.members} people in the mapped directory groups; "
                     f"{len(report.changes)} accounts changed\n")
    return EXIT_OK


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``esafety directory``."""
    directory = sub.add_parser("directory", help="directory groups (LDAP / Active Directory)")
    directory_sub = directory.add_subparsers(dest="directory_command", required=True,
                                             metavar="ACTION")
    sync = directory_sub.add_parser(
        "sync", help="read the mapped directory groups now and set each member's group and "
                     "role (identity.ldap in the config)")
    sync.add_argument("--json", action="store_true", help="print the changes as JSON")
    sync.set_defaults(handler=cmd_directory_sync)
