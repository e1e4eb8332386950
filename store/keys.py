"""The Redis key layout, in one place. Every key starts with the deployment's prefix.

The prefix is a Redis Cluster hash tag, so every key of one deployment hashes to the same
slot and scripts and transactions over several of them run on a Redis Cluster too: the
configured ``redis_prefix`` ``esafety:`` gives keys ``{esafety}:hits``, ``{esafety}:overrides``
and so on (:func:`hash_tagged`). A prefix that already holds a tag (``{centre-a}:``) is kept
as it is. Keys written by versions before the tag (``esafety:hits``) are moved once by
:mod:`store.key_migration`.

Streams hold append-only facts, hashes and sorted sets hold state and indexes, and a version
counter plus a pub/sub channel carry policy changes:

======================================  =========  ============================================
key                                     type       holds
======================================  =========  ============================================
``hits``                                stream     one entry per logged request (HitRecord)
``hitref:<YYYYMMDD>``                   hash       hit id -> stream id, blocked hits only
``hitbatch:<batch id>``                 string     marks a hit batch as written (exactly once)
``count:<YYYYMMDD>``                    hash       "action|category|group|site" -> count
``tophosts:<YYYYMMDD>``                 zset       blocked host -> count
``tophosts:<YYYYMMDD>:site:<site>``     zset       one site's blocked host -> count
``policy:version``                      string     integer, bumped on every policy change
``policy:changed``                      channel    publishes the new version
``overrides``                           hash       override id -> JSON Override
``class-sessions:open``                 hash       session id -> JSON ClassSession, not yet
                                                   closed (read by proxies with the overrides)
``class-sessions:log``                  hash       session id -> JSON ClassSession, open and
                                                   closed, kept for ``retention.hits_days``
``class-sessions:by-start``             zset       session id -> start time
``seq:<name>``                          string     id counters
``user:<name>``                         hash       a user account (UserRecord)
``users``                               set        every user name
``token:<sha256>``                      string     a session/bearer token -> user name (TTL)
``usertokens:<name>``                   set        token digests of a user, for revocation
``sso-attempt:<sha256 of state>``       string     a single sign-on under way: JSON with the
                                                   PKCE verifier, nonce and browser binding
                                                   (TTL 10 minutes, read once)
``accounts:version``                    string     integer, bumped on every change to who a
                                                   signed-in user is (disable, group, password,
                                                   tokens revoked)
``accounts:changed``                    channel    publishes the new accounts version
``accounts:changes``                    zset       user name -> the accounts version at which
                                                   they last changed (the latest 10,000)
``ratelimit:signin-pair:<user>|<addr>`` hash       failed sign-ins of one name from one address
                                                   (``fails``, ``until``), with a TTL
``ratelimit:signin-addr:<address>``     string     sign-in attempts from an address, all names
``ratelimit:signin-addrlock:<address>`` string     set while an address is over its cap (TTL)
``unblock:<id>``                        string     JSON UnblockRequest
``unblock:index``                       zset       request ids by creation time
``unblock:open:<user>:<target>``        string     id of the user's open request for a site
``report:<id>``                         string     JSON AccidentReport
``report:index``                        zset       report ids by creation time
``alert:<id>``                          string     JSON Alert
``alert:index``                         zset       alert ids by creation time
``alert:group:<user>:<category>``       string     the open alert that groups repeats
``<kind>:by-<field>:<value>``           zset       unblock/report/alert ids with that status,
                                                   user, ... by creation time
``<kind>:figures:<YYYYQn>``             hash       counts of the quarter's records (total, by
                                                   status, ...) for the quarterly report
``<kind>:durations:<YYYYQn>``           zset       id -> seconds to decision (turnaround,
                                                   time to acknowledge)
``<kind>:figures|durations:<YYYYQn>:site:<site>``  the same, of one site's records; figures
                                                   outlive their records (counters_days)
``alert:outbox``                        zset       ``<alert id>|<channel>`` -> next delivery
                                                   try (the record is on the alert)
``digest:<YYYY-Www>``                   string     the weekly digest of that week is claimed
``<kind>:index-format``                 string     the index format the records were built to
``audit``                               stream     append-only audit log
``ratelimit:<scope>:<key>``             string     counters with TTL
``directory:sync:due``                  string     the directory sync of this interval is
                                                   claimed (TTL: the interval)
``directory:sync:running``              string     a directory sync is running (TTL)
======================================  =========  ============================================
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "{esafety}:"


def has_hash_tag(prefix: str) -> bool:
    """True when keys starting with ``prefix`` hash by a tag inside it: a ``{`` followed later
    by a ``}`` with something between (Redis hashes only the first such ``{...}``)."""
    start = prefix.find("{")
    if start < 0:
        return False
    end = prefix.find("}", start + 1)
    return end > start + 1


def hash_tagged(prefix: str) -> str:
    """``prefix`` as a hash tag: ``esafety:`` -> ``{esafety}:``, ``centre-a`` -> ``{centre-a}``.

    The tag is the prefix without its trailing ``:``s, which stay after the tag. A prefix with
    a tag of its own is returned unchanged, so this is idempotent; the empty prefix (every key,
    for tests) stays empty."""
    if not prefix or has_hash_tag(prefix):
        return prefix
    name = prefix.rstrip(":")
    if not name:
        raise ValueError(f"a Redis key prefix needs a name before its ':': {prefix!r}")
    return "{" + name + "}" + prefix[len(name):]


def legacy_prefix(prefix: str) -> str | None:
    """The prefix that versions before the hash tag used for the configured ``prefix``: the
    configured text itself, unless it already held a tag (then nothing was ever elsewhere)."""
    if not prefix or has_hash_tag(prefix):
        return None
    return prefix


@dataclass(frozen=True)
class Keys:
    """Every key name under one prefix. The prefix given is made a hash tag
    (:func:`hash_tagged`): ``Keys("esafety:").prefix == "{esafety}:"``."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", hash_tagged(self.prefix))

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # hits
    @property
    def hits(self) -> str:
        return self._k("hits")

    def hitref(self, day: str) -> str:
        return self._k("hitref", day)

    def hit_batch(self, batch_id: str) -> str:
        return self._k("hitbatch", batch_id)

    def day_counts(self, day: str) -> str:
        return self._k("count", day)

    def top_hosts(self, day: str) -> str:
        return self._k("tophosts", day)

    def site_top_hosts(self, day: str, site: str) -> str:
        """zset: one site's blocked hosts of the day -> count (the proxy's hit writer)."""
        return self._k("tophosts", day, "site", site)

    # policy
    @property
    def policy_version(self) -> str:
        return self._k("policy", "version")

    @property
    def policy_channel(self) -> str:
        return self._k("policy", "changed")

    @property
    def overrides(self) -> str:
        return self._k("overrides")

    def sequence(self, name: str) -> str:
        return self._k("seq", name)

    # accounts
    def user(self, name: str) -> str:
        return self._k("user", name)

    @property
    def users(self) -> str:
        return self._k("users")

    def token(self, digest: str) -> str:
        return self._k("token", digest)

    def user_tokens(self, name: str) -> str:
        return self._k("usertokens", name)

    def sso_attempt(self, state_digest: str) -> str:
        return self._k("sso-attempt", state_digest)

    @property
    def accounts_version(self) -> str:
        return self._k("accounts", "version")

    @property
    def accounts_changes(self) -> str:
        return self._k("accounts", "changes")

    @property
    def accounts_channel(self) -> str:
        return self._k("accounts", "changed")

    # sign-in limits (admin login and proxy sign-in share them)
    def signin_pair(self, user: str, address: str) -> str:
        return self.rate_limit("signin-pair", f"{user}|{address}")

    def signin_address(self, address: str) -> str:
        return self.rate_limit("signin-addr", address)

    def signin_address_lock(self, address: str) -> str:
        return self.rate_limit("signin-addrlock", address)

    # workflow records
    def unblock(self, request_id: str) -> str:
        return self._k("unblock", request_id)

    @property
    def unblock_index(self) -> str:
        return self._k("unblock", "index")

    def unblock_open(self, user: str, target: str) -> str:
        return self._k("unblock", "open", user, target)

    def report(self, report_id: str) -> str:
        return self._k("report", report_id)

    @property
    def report_index(self) -> str:
        return self._k("report", "index")

    def alert(self, alert_id: str) -> str:
        return self._k("alert", alert_id)

    @property
    def alert_index(self) -> str:
        return self._k("alert", "index")

    def alert_group(self, user: str, category: str) -> str:
        return self._k("alert", "group", user, category)

    @property
    def alert_outbox(self) -> str:
        """zset: ``<alert id>|<channel>`` -> when its next delivery try is due."""
        return self._k("alert", "outbox")

    def digest_claim(self, week: str) -> str:
        """string: set once the weekly digest of ``week`` (``2026-W49``) is claimed."""
        return self._k("digest", week)

    @property
    def audit(self) -> str:
        return self._k("audit")

    def rate_limit(self, scope: str, key: str) -> str:
        return self._k("ratelimit", scope, key)

    # browser extension devices (added for the extension's device sign-in; keep at the end)
    def extension_device(self, device_id: str) -> str:
        """hash: a signed-in extension install (user, refresh-token digest, hit key)."""
        return self._k("extdevice", device_id)

    def extension_devices(self, user: str) -> str:
        """set: the device ids of a user's extension installs, for revocation."""
        return self._k("extdevices", user)

    def token_device(self, digest: str) -> str:
        """string: the extension install a bearer token was issued to (the proxy reads it so
        an extension-signed browser's hits carry the install id); expires with the token."""
        return self._k("tokendevice", digest)

    # indexes and quarterly figures of workflow records (store.indexed_collection; keep at
    # the end)
    def record_index(self, kind: str, field: str, value: str) -> str:
        """zset: ids of ``kind`` records whose ``field`` is ``value``, by creation time."""
        return self._k(kind, f"by-{field}", value)

    def record_figures(self, kind: str, quarter: str, site: str | None = None) -> str:
        """hash: counts of the ``kind`` records created in ``quarter`` (``2026Q3``), of one
        site's records when ``site`` is given."""
        if site is None:
            return self._k(kind, "figures", quarter)
        return self._k(kind, "figures", quarter, "site", site)

    def record_durations(self, kind: str, quarter: str, site: str | None = None) -> str:
        """zset: id -> seconds to its decision, of ``kind`` records created in ``quarter``
        (of one site's records when ``site`` is given)."""
        if site is None:
            return self._k(kind, "durations", quarter)
        return self._k(kind, "durations", quarter, "site", site)

    def record_index_format(self, kind: str) -> str:
        """string: the index format every ``kind`` record has been indexed to."""
        return self._k(kind, "index-format")

    # identity bindings: who is at which address (RADIUS accounting, the Wi-Fi portal)
    @property
    def address_bindings(self) -> str:
        """hash: client address -> JSON binding (user, device, group, source, expiry)."""
        return self._k("identity", "bindings")

    @property
    def address_bindings_version(self) -> str:
        """string (counter): bumped by every change of the bindings; proxies poll it."""
        return self._k("identity", "bindings", "version")

    # the directory (LDAP / Active Directory) group sync
    @property
    def directory_sync_due(self) -> str:
        """string: held (with the sync interval as TTL) by the admin host whose turn it is."""
        return self._k("directory", "sync", "due")

    @property
    def directory_sync_running(self) -> str:
        """string: held (with a TTL) while one directory sync runs."""
        return self._k("directory", "sync", "running")

    # class sessions: staff open the network for a lesson (keep at the end)
    @property
    def class_sessions(self) -> str:
        """hash: session id -> JSON ClassSession, of every session not yet closed (proxies
        read it with the overrides, in the same transaction as the policy version)."""
        return self._k("class-sessions", "open")

    @property
    def class_session_log(self) -> str:
        """hash: session id -> JSON ClassSession, of every session kept (open and closed),
        for the session lists and the hours opened."""
        return self._k("class-sessions", "log")

    @property
    def class_session_starts(self) -> str:
        """zset: session id -> when it starts, for listing and pruning the log."""
        return self._k("class-sessions", "by-start")

    # first-run set-up (keep at the end)
    @property
    def setup_token(self) -> str:
        """string: the SHA-256 digest of the one-time set-up token, with a time to live."""
        return self._k("setup", "token")
