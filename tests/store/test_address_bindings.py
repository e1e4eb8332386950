"""Sign-in bindings (who is at which address) in a real Redis, and how the proxy's identify
stage ranks them: a sign-in on the connection, then a binding, then the address range."""

from __future__ import annotations

import asyncio
import ipaddress
import time

import pytest
import redis.asyncio as aioredis

from deployment.config import Config, Network
from proxy_addons.identify import VERSION_STALE_SECONDS, Identify
from store.accounts import create_user, issue_token
from store.address_bindings import AddressBindings, BindingError
from store.keys import Keys
from tests.harness.proxy import basic


def _identify(redis: aioredis.Redis, keys: Keys, auth: str = "off") -> Identify:
    networks = (Network(ipaddress.ip_network("127.0.0.0/8"), "guest", "main", auth),)
    return Identify(Config(networks=networks), redis, keys)


async def test_a_binding_is_read_back_until_it_expires(redis: aioredis.Redis,
                                                       keys: Keys) -> None:
    bindings = AddressBindings(redis, keys)
    before = await bindings.version()
    made = await bindings.bind("::ffff:127.0.0.5", "sam", "radius", 3600,
                               device="aa:bb:cc:dd:ee:ff", group="learner")
    assert made.address == "127.0.0.5"  # an IPv4-mapped address is the IPv4 one
    assert await bindings.version() == before + 1
    found = await bindings.get("127.0.0.5")
    assert found is not None and (found.user, found.device, found.group) == (
        "sam", "aa:bb:cc:dd:ee:ff", "learner")
    assert await bindings.get("127.0.0.5", now=time.time() + 3601) is None
    assert await bindings.prune(now=time.time() + 3601) == 1
    assert await bindings.all() == {}


async def test_only_the_bound_users_own_stop_removes_a_binding(redis: aioredis.Redis,
                                                               keys: Keys) -> None:
    bindings = AddressBindings(redis, keys)
    await bindings.bind("10.0.0.7", "sam", "portal", 600)
    assert await bindings.unbind("10.0.0.7", user="alex") is False
    assert await bindings.unbind("10.0.0.7", user="sam", source="radius") is False
    assert await bindings.get("10.0.0.7") is not None
    assert await bindings.unbind("10.0.0.7", user="sam", source="portal") is True
    assert await bindings.get("10.0.0.7") is None


async def test_bad_bindings_are_refused_with_a_reason(redis: aioredis.Redis,
                                                      keys: Keys) -> None:
    bindings = AddressBindings(redis, keys)
    for address, user, source, seconds in (("not-an-address", "sam", "portal", 60),
                                           ("10.0.0.1", "", "portal", 60),
                                           ("10.0.0.1", "sam", "guesswork", 60),
                                           ("10.0.0.1", "sam", "portal", 0)):
        with pytest.raises(BindingError):
            await bindings.bind(address, user, source, seconds)
    # Garbage stored under the hash (a hand edit) is ignored and pruned, never raised.
    await redis.hset(keys.address_bindings, "10.0.0.2", "{not json")
    assert await bindings.all() == {}
    assert await bindings.prune() == 1


async def test_identify_ranks_a_binding_above_the_address_range(redis: aioredis.Redis,
                                                                keys: Keys) -> None:
    identify = _identify(redis, keys, auth="required")
    await AddressBindings(redis, keys).bind("127.0.0.5", "sam", "radius", 600,
                                            device="aa:bb:cc:dd:ee:ff", group="learner")
    await identify.refresh_bindings()
    bound = await identify.resolve("", "127.0.0.5", challenge=True)
    assert bound is not None
    assert (bound.user, bound.group, bound.source, bound.device) == (
        "sam", "learner", "radius", "aa:bb:cc:dd:ee:ff")
    # Another address on the same network must still sign in (sign-in is required here).
    assert await identify.resolve("", "127.0.0.6", challenge=True) is None
    # Without a challenge it is the network's identity, never the bound user's.
    other = await identify.resolve("", "127.0.0.6", challenge=False)
    assert other is not None and (other.user, other.source) == (None, "network")
    # The binding ends: the next poll drops it.
    await AddressBindings(redis, keys).unbind("127.0.0.5", user="sam")
    await identify.refresh_bindings()
    assert await identify.resolve("", "127.0.0.5", challenge=True) is None


async def test_identify_ranks_a_token_on_the_connection_above_a_binding(
        redis: aioredis.Redis, keys: Keys) -> None:
    identify = _identify(redis, keys, auth="required")
    await create_user(redis, keys, "lee", "learner", "learner", "long enough pass")
    token = await issue_token(redis, keys, "lee")
    await AddressBindings(redis, keys).bind("127.0.0.5", "sam", "radius", 600,
                                            device="aa:bb:cc:dd:ee:ff", group="staff")
    await identify.refresh_version()
    await identify.refresh_bindings()
    for challenge in (True, False):
        signed_in = await identify.resolve(basic("lee", token), "127.0.0.5", challenge)
        assert signed_in is not None
        assert (signed_in.user, signed_in.group, signed_in.source, signed_in.device) == (
            "lee", "learner", "auth", "")
    # The same address without the token is still the bound user's.
    bound = await identify.resolve("", "127.0.0.5", challenge=True)
    assert bound is not None and (bound.user, bound.source) == ("sam", "radius")


async def test_bindings_fail_closed_when_redis_cannot_be_read(redis: aioredis.Redis,
                                                              keys: Keys) -> None:
    identify = _identify(redis, keys)
    await AddressBindings(redis, keys).bind("127.0.0.5", "staff.member", "portal", 600,
                                            group="staff")
    await identify.refresh_bindings()
    assert identify.fallback_identity("127.0.0.5").group == "staff"
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    identify.redis = dead
    try:
        await asyncio.sleep(VERSION_STALE_SECONDS + 0.3)
        await identify.refresh_bindings()
        fallen = identify.fallback_identity("127.0.0.5")
        # Not the bound (more open) staff identity: the address range's.
        assert (fallen.user, fallen.group, fallen.source) == (None, "guest", "network")
    finally:
        await dead.aclose()
