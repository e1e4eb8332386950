"""``esafety redis acl``: the Redis ACL users of this deployment, for an external Redis.

Without ``--apply`` it prints an ACL file (``aclfile`` in redis.conf) for the deployment's
prefix; with ``--apply`` it creates the users on the configured Redis with ``ACL SETUSER``
and turns the ``default`` user off. Either way the passwords are kept in 0600 files in
``--credentials-dir`` (made on first use, reused after) and only their SHA-256 is written or
sent; each esafety process then names its file (``ESAFETY_REDIS_PASSWORD_FILE`` or
``?password_file=`` in its URL). ``--template`` prints the ACL file with placeholders
instead of hashes, as docker/redis-users.acl.template holds.

``esafety redis migrate-keys`` moves the keys a version before the Redis Cluster hash tag
wrote (``esafety:hits``) to their current names (``{esafety}:hits``); the admin service and
``esafety up`` do the same at every start (see :mod:`store.key_migration`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any, cast

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from deployment.instance import Instance
from esafety.embedded_redis import load_or_create_password
from store import redis_acl
from store.connection import connect, is_cluster_url
from store.key_migration import move_legacy_keys_at
from store.keys import Keys, legacy_prefix

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

TEMPLATE_PLACEHOLDER = "@{role}_PASSWORD_SHA256@"
"""Stands for a role's password hash in the template (``@ADMIN_PASSWORD_SHA256@``)."""


def acl_template(prefix: str) -> str:
    """The ACL file with a placeholder for each password hash, for a start script to fill."""

    lines = ["user default " + " ".join(redis_acl.DEFAULT_USER_RULES)]
    for role, user in redis_acl.ROLES.items():
        rules = redis_acl.role_rules(role, prefix)
        placeholder = TEMPLATE_PLACEHOLDER.format(role=role.upper())
        lines.append(f"user {user} {rules[0]} #{placeholder} " + " ".join(rules[1:]))
    return "\n".join(lines) + "\n"


def cmd_redis_acl(args: argparse.Namespace, instance: Instance) -> int:

    prefix = args.prefix if args.prefix is not None else instance.config.redis_prefix
    if args.template:
        sys.stdout.write(acl_template(prefix))
        return EXIT_OK
    directory = Path(args.credentials_dir) if args.credentials_dir else (
        instance.ensure_data_dir() / "redis-credentials")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    passwords = {role: load_or_create_password(directory / f"{role}.password")
                 for role in redis_acl.ROLES}
    if not args.apply:
        sys.stdout.write(redis_acl.acl_file(prefix, passwords))
    else:
        if instance.redis_url is None:
            sys.stderr.write("esafety: --apply needs a Redis: give --redis-url, "
                             "ESAFETY_REDIS_URL or redis_url (a user allowed to run ACL)\n")
            return EXIT_USAGE
        hashes = {role: redis_acl.password_hash(p) for role, p in passwords.items()}
        error = asyncio.run(_apply(instance.redis_url, redis_acl.setuser_commands(prefix, hashes)))
        if error:
            sys.stderr.write(f"esafety: cannot set the ACL users: {error}\n")
            return EXIT_USAGE
    for role, user in redis_acl.ROLES.items():
        sys.stderr.write(f"{role}: user {user}, password in {directory / f'{role}.password'} "
                         f"(URL redis://{user}@HOST:6379/0?password_file=...)\n")
    return EXIT_OK


async def _apply(url: str, commands: list[list[str]]) -> str | None:

    client = connect(url)
    nodes: dict[str, Any] = {}
    try:
        if is_cluster_url(url):
            # ACL users are each node's own: on a Redis Cluster every node gets them.
            cluster = cast(RedisCluster, client)
            await cluster.initialize()
            nodes["target_nodes"] = cluster.get_nodes()
        for command in commands:
            await client.execute_command(*command, **nodes)  # type: ignore[no-untyped-call]
        try:
            await client.execute_command("ACL", "SAVE", **nodes)  # type: ignore[no-untyped-call]
        except (RedisError, RedisClusterException):
            pass  # no aclfile configured: the users live until the next restart
    except (RedisError, RedisClusterException) as exc:
        return str(exc)
    finally:
        await client.aclose()
    return None


def cmd_redis_migrate_keys(args: argparse.Namespace, instance: Instance) -> int:
    prefix = instance.config.redis_prefix
    url = instance.store_url(redis_acl.ADMIN_USER)
    if url is None:
        sys.stderr.write("esafety: migrate-keys needs a Redis: give --redis-url, "
                         "ESAFETY_REDIS_URL or redis_url (the admin user), or run it while "
                         "esafety up runs on this data directory\n")
        return EXIT_USAGE
    if legacy_prefix(prefix) is None:
        sys.stdout.write(f"redis_prefix {prefix!r} already holds a hash tag: nothing to move\n")
        return EXIT_OK
    summary = asyncio.run(move_legacy_keys_at(url, prefix))
    if summary is None:
        sys.stderr.write("esafety: cannot move the keys (see the warning above)\n")
        return EXIT_FAILED
    sys.stdout.write(f"moved {summary.moved} keys from {prefix}* to {Keys(prefix).prefix}*\n")
    for key in summary.kept:
        sys.stdout.write(f"kept {key}: its new name already exists\n")
    return EXIT_FAILED if summary.kept else EXIT_OK


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    redis = sub.add_parser("redis", help="Redis access control for this deployment")
    redis_sub = redis.add_subparsers(dest="redis_command", required=True, metavar="ACTION")
    acl = redis_sub.add_parser(
        "acl", help="print (or --apply) the ACL users: esafety-admin, esafety-proxy, "
                    "default off")
    acl.add_argument("--prefix", help="key prefix (default: redis_prefix in the config)")
    acl.add_argument("--credentials-dir", metavar="DIR",
                     help="where the 0600 password files are kept (default: "
                          "DATA_DIR/redis-credentials)")
    acl.add_argument("--apply", action="store_true",
                     help="create the users on the configured Redis (ACL SETUSER, ACL SAVE)")
    acl.add_argument("--template", action="store_true",
                     help="print the ACL file with password-hash placeholders")
    acl.set_defaults(handler=cmd_redis_acl)
    migrate = redis_sub.add_parser(
        "migrate-keys", help="move keys written before the Redis Cluster hash tag "
                             "(esafety:hits) to their names now ({esafety}:hits)")
    migrate.set_defaults(handler=cmd_redis_migrate_keys)
