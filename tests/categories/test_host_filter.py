"""The C host filter in front of the host trie must never hide an entry.

``DomainIndex._covers(host)`` answers False only when no entry covers the host; the trie
decides everything else. These tests hold the filter to that against the trie itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from categories import _urlfast  # fails loudly when the extension was not built
from categories.domain_index import (
    URL_FLAG,
    DomainIndex,
    IndexLoadError,
    ListInfo,
    build_index,
    host_key,
    load_index,
    save_index,
)
from categories.list_formats import EntryKind

LABELS = st.sampled_from(["a", "b", "ab", "com", "co", "uk", "example", "x-y", "1", "xn--p1ai", "zz"])
HOSTS = st.lists(LABELS, min_size=1, max_size=5).map(".".join)


def _index(domains: list[str], urls: list[str] | None = None) -> DomainIndex:
    entries = [(0, EntryKind.DOMAIN, d, n) for n, d in enumerate(domains, 1)]
    entries += [(0, EntryKind.URL, u, n) for n, u in enumerate(urls or [], 1)]
    return build_index([ListInfo("test", "test/list")], entries)


def _trie_covers(index: DomainIndex, host: str) -> bool:
    return bool(index._hosts_prefixes(host_key(host)))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(HOSTS, min_size=1, max_size=30), st.lists(HOSTS, min_size=1, max_size=30),
       st.lists(HOSTS, max_size=3))
def test_no_false_negatives(domains: list[str], probes: list[str], url_hosts: list[str]) -> None:
    index = _index(domains, [f"{h}/path" for h in url_hosts])
    assert index._host_filter is not None
    for host in [*probes, *domains, *url_hosts, *(f"www.{d}" for d in domains)]:
        key = host_key(host)
        if _trie_covers(index, host):
            assert index._covers(host), host
        assert index.host_has_entries(key) == _trie_covers(index, host)
        assert index.host_has_url_rules(key) == any(
            index._host_combo[kid] & URL_FLAG for _p, kid in index._hosts.iter_prefixes_with_ids(key))


def test_answers_for_subdomains_parents_and_strangers() -> None:
    index = _index(["example.com", "bad.co.uk"], ["shop.org/x"])
    assert index._covers("example.com")
    assert index._covers("www.example.com")
    assert index._covers("a.b.bad.co.uk")
    assert index._covers("shop.org")  # the host of a URL entry: the path decides
    # Certain negatives (a false positive here would only cost a trie query, but with three
    # keys and 16 bits a key these hosts are, in practice, answered by the filter).
    assert not _trie_covers(index, "xample.com") and not index._covers("xample.com")
    assert not _trie_covers(index, "co.uk") and not index._covers("co.uk")


def test_non_ascii_hosts_always_ask_the_trie() -> None:
    index = _index(["example.com"])
    assert index._covers("bücher.example")


def test_large_random_set_has_a_low_false_positive_rate() -> None:
    domains = [f"d{n}.example{n % 97}.com" for n in range(20_000)]
    index = _index(domains)
    strangers = [f"s{n}.other{n % 89}.net" for n in range(20_000)]
    false_positives = sum(index._covers(h) for h in strangers)
    assert all(index._covers(d) for d in domains)
    assert false_positives < len(strangers) * 0.03


def test_filter_format_is_checked() -> None:
    data = _urlfast.filter_build(["moc.elpmaxe."], 1)
    assert data[:4] == b"ESHF"
    _urlfast.HostFilter(data)
    with pytest.raises(ValueError):
        _urlfast.HostFilter(b"ESHF\x02" + data[5:])
    with pytest.raises(ValueError):
        _urlfast.HostFilter(data[:-1])
    with pytest.raises(ValueError):
        _urlfast.filter_build(["no-trailing-dot"], 1)
    with pytest.raises(TypeError):
        _urlfast.filter_build([b"moc."], 1)  # type: ignore[list-item]


def _saved(tmp_path: Path) -> Path:
    index = _index(["example.com", "bad.org"], ["shop.net/x"])
    save_index(index, tmp_path, {})
    return tmp_path


def test_snapshot_round_trip_keeps_the_filter(tmp_path: Path) -> None:
    loaded, meta = load_index(_saved(tmp_path))
    assert "hosts.filter" in meta["sha256"]
    assert loaded._host_filter is not None
    assert loaded._covers("www.example.com") and loaded._covers("shop.net")
    assert not loaded._covers("example.net")


def test_corrupt_filter_is_refused(tmp_path: Path) -> None:
    directory = _saved(tmp_path)
    data = bytearray((directory / "hosts.filter").read_bytes())
    data[20] ^= 0xFF
    (directory / "hosts.filter").write_bytes(bytes(data))
    with pytest.raises(IndexLoadError):
        load_index(directory)


def test_snapshot_without_a_filter_loads_and_asks_the_trie(tmp_path: Path) -> None:
    directory = _saved(tmp_path)
    meta = json.loads((directory / "index.json").read_text())
    del meta["sha256"]["hosts.filter"]
    (directory / "index.json").write_text(json.dumps(meta))
    (directory / "hosts.filter").unlink()
    loaded, _meta = load_index(directory)
    assert loaded._host_filter is None
    assert loaded._covers("www.example.com")
    assert not loaded._covers("example.net")
