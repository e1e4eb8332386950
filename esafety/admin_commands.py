"""``esafety admin`` and ``esafety users``: subcommands of the admin API.

The admin service (aiohttp and its routes) loads inside :func:`cmd_admin`, when it runs."""

from __future__ import annotations

import argparse

from deployment.instance import Instance
from esafety import user_commands
from esafety.service_entry import DEFAULTS, add_admin_options
from store.records import ROLES


def cmd_admin(args: argparse.Namespace, instance: Instance) -> int:
    from esafety.admin_process import run_admin
    return run_admin(args, instance)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the admin API's subcommands."""
    admin = sub.add_parser("admin", help=f"run the admin API (default {DEFAULTS.admin}, "
                                         "under /api/v1)")
    add_admin_options(admin)
    admin.set_defaults(handler=cmd_admin)

    users = sub.add_parser("users", help="manage user accounts")
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    roles = ", ".join(ROLES)
    add = users_sub.add_parser("add", help="create a user")
    add.add_argument("name", metavar="NAME",
                     help="the sign-in name (1-64 letters, digits, . _ @ -)")
    add.add_argument("--role", choices=ROLES, default="learner", metavar="ROLE",
                     help=f"what the user may do: {roles} (default: learner)")
    add.add_argument("--group", metavar="GROUP",
                     help="filtering group, one of the config's groups (default: learner for "
                          "learners, else staff)")
    add.add_argument("--display-name", metavar="TEXT",
                     help="the name people read (default: none)")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of stdin (default: generate "
                          "one and print it once)")
    add.set_defaults(handler=user_commands.cmd_users_add)
    edit = users_sub.add_parser("edit", help="change a user's role, group or display name")
    edit.add_argument("name", metavar="NAME", help="the user to change")
    edit.add_argument("--role", choices=ROLES, metavar="ROLE",
                      help=f"the new role: {roles}")
    edit.add_argument("--group", metavar="GROUP",
                      help="the new filtering group, one of the config's groups")
    edit.add_argument("--display-name", metavar="TEXT", help="the new display name")
    edit.set_defaults(handler=user_commands.cmd_users_edit)
    imp = users_sub.add_parser("import", help="create users from a CSV file (username, "
                               "password, role, group, display_name)")
    imp.add_argument("file", metavar="FILE",
                     help="CSV with a header row; only username is required, a blank password "
                          "is generated and printed once")
    imp.add_argument("--role", choices=ROLES, metavar="ROLE",
                     help=f"role of rows without one: {roles} (default: learner)")
    imp.add_argument("--group", metavar="GROUP",
                     help="filtering group of rows without one (default: the role's: learner "
                          "for learners, else staff)")
    imp.set_defaults(handler=user_commands.cmd_users_import)
    lst = users_sub.add_parser("list", help="list users")
    lst.add_argument("--json", action="store_true", help="print the users as a JSON array")
    lst.set_defaults(handler=user_commands.cmd_users_list)
    dis = users_sub.add_parser("disable", help="disable a user and end their sessions")
    dis.add_argument("name", metavar="NAME", help="the user to disable")
    dis.set_defaults(handler=user_commands.cmd_users_disable)
    rev = users_sub.add_parser("revoke-tokens", help="end all of a user's sessions")
    rev.add_argument("name", metavar="NAME", help="the user whose sessions end")
    rev.set_defaults(handler=user_commands.cmd_users_revoke)
