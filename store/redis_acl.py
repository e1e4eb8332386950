"""Redis ACL users for one deployment (Redis 6.2+ / 7 ACL rules), one per role.

* ``esafety-admin``: the admin API and the CLI. Every key and channel under the deployment's
  prefix (``~{esafety}:*``, and the pre-hash-tag ``~esafety:*`` for the one-time move),
  every command except the ``@dangerous`` ones (FLUSHALL, CONFIG, KEYS, ACL SETUSER,
  DEBUG, SHUTDOWN, ...); ``INFO`` is allowed back for backups and metrics.
* ``esafety-proxy``: a proxy worker. It reads the policy version, the overrides, accounts,
  session tokens and the accounts change log (for sign-in); it listens on the policy and
  accounts channels; it writes only what the hit writer (``store.hits.INGEST_SCRIPT``)
  writes, and rate-limit / sign-in lockout counters (``ratelimit:*``).
  It cannot write overrides, accounts, roles, tokens, workflow records or the audit log, nor
  read the hit log, nor publish on the policy channel.
* ``default``: off, so a client that never authenticates can do nothing (see
  :data:`DEFAULT_USER_RULES` for why its rights are nonetheless full).

Each rule list below is what ``ACL SETUSER <user>`` takes after the password; the same rules
written with ``#<sha256 of the password>`` form an ACL file (``aclfile`` in redis.conf), so
the server's files never hold a password in clear.
"""

from __future__ import annotations

import hashlib

from store.keys import Keys, legacy_prefix

ADMIN_USER = "esafety-admin"
PROXY_USER = "esafety-proxy"
ROLES = {"admin": ADMIN_USER, "proxy": PROXY_USER}

_PROXY_COMMANDS = (
    # connection set-up, health checks, SELECT of the URL's database; on a Redis Cluster the
    # client learns which node holds the deployment's slot (COMMAND is in @connection)
    "+@connection", "-@dangerous", "+cluster|slots", "+cluster|shards",
    # reads: policy version, overrides, accounts, tokens, the accounts change log,
    # rate-limit counters
    "+get", "+hget", "+hgetall", "+exists", "+ttl", "+pttl", "+zrangebyscore", "+zscore",
    "+time",
    # the hit writer is a script; the commands it runs are checked against the keys too
    "+evalsha", "+eval", "+script|load", "+script|exists",
    "+set", "+xadd", "+hincrby", "+zincrby", "+hset", "+expire", "+pexpire",
    # rate-limit and sign-in lockout counters (also inside their scripts)
    "+incr", "+incrby", "+decr", "+del",
    # policy change notifications
    "+subscribe", "+unsubscribe", "+psubscribe", "+punsubscribe",
    # pipelines with transaction=True
    "+multi", "+exec", "+discard", "+watch", "+unwatch",
)


def _proxy_keys(keys: Keys) -> tuple[str, ...]:
    day = "*"
    return (
        f"%R~{keys.policy_version}", f"%R~{keys.overrides}", f"%R~{keys.class_sessions}",
        f"%R~{keys.user('*')}", f"%R~{keys.token('*')}",
        # which extension install a token belongs to (the device in its hits): read only
        f"%R~{keys.token_device('*')}",
        # accounts:version / accounts:changes: which signed-in users to re-check
        f"%R~{keys.accounts_version}", f"%R~{keys.accounts_changes}",
        # who is at which address (RADIUS accounting, the portal): read only
        f"%R~{keys.address_bindings}", f"%R~{keys.address_bindings_version}",
        f"%W~{keys.hits}", f"~{keys.hit_batch('*')}", f"~{keys.day_counts(day)}",
        f"~{keys.top_hosts(day)}", f"~{keys.hitref(day)}",
        f"~{keys.rate_limit('*', '*')}",
        f"&{keys.policy_channel}", f"&{keys.accounts_channel}",
    )


def _hit_writer_selector(keys: Keys) -> str:
    """An ACL selector that lets the hit writer's script *declare* the hit stream.

    Redis checks the keys a script declares (``EVAL ... KEYS``) as read *and* write, whatever
    the script does with them, while the proxy may only write the hit log (``%W~``). This
    selector allows EVAL/EVALSHA alone over exactly the script's keys; every command the
    script then runs is checked against the user's rules again, so its XADD is allowed and
    any read of the stream (XRANGE, ...) is still refused."""
    day = "*"
    return (f"(~{keys.hits} ~{keys.hit_batch('*')} ~{keys.day_counts(day)} "
            f"~{keys.top_hosts(day)} ~{keys.hitref(day)} +eval +evalsha)")


def role_rules(role: str, prefix: str) -> list[str]:
    """The ACL rules (without the password) of ``role`` for keys under ``prefix``.

    ``prefix`` is the configured one; the keys are under its hash-tagged form
    (``esafety:`` -> ``~{esafety}:*``; ACL patterns are globs, in which ``{`` and ``}`` are
    plain characters). The admin user may also reach the keys under the configured prefix
    as versions before the hash tag spelled them (``~esafety:*``), so the admin service can
    move them once (:mod:`store.key_migration`); channels are under the tagged prefix only."""
    keys = Keys(prefix)
    reset = ["on", "resetkeys", "resetchannels", "nocommands"]
    if role == "admin":
        old = legacy_prefix(prefix)
        legacy = [f"~{old}*"] if old is not None else []
        return [*reset, f"~{keys.prefix}*", *legacy, f"&{keys.prefix}*", "+@all",
                "-@dangerous", "+info"]
    if role == "proxy":
        return [*reset, *_proxy_keys(keys), *_PROXY_COMMANDS, _hit_writer_selector(keys)]
    raise ValueError(f"unknown Redis role {role!r}; one of {', '.join(ROLES)}")


DEFAULT_USER_RULES = ["off", "resetpass", "allkeys", "allchannels", "allcommands"]
"""``default`` is off and has no password (not even ``nopass``): no client can sign in as it,
a client that never authenticates gets NOAUTH for every command, and protected mode never
treats the server as open. Its rights stay full on purpose: Redis replays the AOF as the
``default`` user and (Redis before 7.2.12/8.x, redis/redis#14541) re-checks its rights on
every MULTI/EXEC block, including the hit writer's script effects, silently dropping the
blocks it may not run, which lost data on restart with ``nocommands`` here."""


def password_hash(password: str) -> str:
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


def acl_file(prefix: str, passwords: dict[str, str]) -> str:
    """An ACL file for ``aclfile``: ``default`` off and one line per role in ``passwords``
    (role -> password), each with the password's SHA-256, never the password itself."""
    lines = ["user default " + " ".join(DEFAULT_USER_RULES)]
    for role, password in passwords.items():
        rules = role_rules(role, prefix)
        lines.append(f"user {ROLES[role]} {rules[0]} #{password_hash(password)} "
                     + " ".join(rules[1:]))
    return "\n".join(lines) + "\n"


def setuser_commands(prefix: str, password_hashes: dict[str, str]) -> list[list[str]]:
    """``ACL SETUSER`` argument lists that create or reset every role's user on an external
    Redis (role -> SHA-256 of its password), ``default`` last."""
    commands = []
    for role, digest in password_hashes.items():
        rules = role_rules(role, prefix)
        commands.append(["ACL", "SETUSER", ROLES[role], "reset", rules[0], f"#{digest}",
                         *rules[1:]])
    commands.append(["ACL", "SETUSER", "default", *DEFAULT_USER_RULES])
    return commands
