"""The compact matcher: domains and URL prefixes in two marisa tries with packed payloads.

Why this shape (measured in ``bench/matcher.py``):

* A Python ``set`` of millions of ``str`` costs about 100 bytes a domain. A marisa trie of the
  same domains costs about 7 bytes a domain, loads by ``mmap`` in microseconds, and answers
  a prefix query in about a microsecond.
* Host keys are stored *character-reversed* with a trailing dot (``example.com`` becomes
  ``moc.elpmaxe.``). Reversing a string is one cheap operation, and one prefix query over the
  reversed request host (``moc.elpmaxe.www.``) then finds the host and every listed parent
  domain at once, always on a label boundary.
* URL entries (``host/path``) live in a second trie keyed by the reversed host key followed by
  the path. A host that has URL entries carries a flag in its payload, so the URL trie is only
  consulted for those hosts; for every other host one trie query decides.
* Each key's payload is a 16-bit "combination" id (which lists hold the key; the top bit is the
  has-URL-rules flag) and a 32-bit line number, in flat little-endian arrays read in place.
* At 5 million domains a prefix query misses the CPU caches and costs 1-3 microseconds, and
  most requests are for hosts no entry covers. A blocked Bloom filter over the host keys
  (``hosts.filter``, 16 bits a key, built and read by the optional C extension
  ``categories._urlfast``) answers those in about 0.05 microseconds without touching the trie;
  it is never wrong when it says no, and the trie decides whenever it says maybe. Without
  the extension, or for a snapshot without the file, every lookup asks the trie.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import marisa_trie

from categories.list_formats import EntryKind

try:  # the C host filter (optional: without it every lookup asks the trie)
    from categories import _urlfast
except ImportError:  # pragma: no cover - exercised where no compiler was available
    _urlfast = None  # type: ignore[assignment]

URL_FLAG = 0x8000
_DOMAIN = EntryKind.DOMAIN
_URL = EntryKind.URL
_COMBO_MASK = 0x7FFF
_URL_BOUNDARIES = frozenset("/?&;#")
FORMAT_VERSION = 1


def host_key(host: str) -> str:
    """The trie key of a canonical host: reversed, with a trailing dot."""
    return host[::-1] + "."


@dataclass(frozen=True, slots=True)
class ListInfo:
    """One imported list: its list-category name (e.g. ``gambling``) and where it came from."""

    name: str
    source: str
    """``ut1/gambling``, ``local/blocklist.txt`` or ``categories/definitions/weapons.yaml``."""


class IndexMatch(NamedTuple):
    list_id: int
    line: int
    entry: str
    """The matched entry: a domain, or ``host/path`` for a URL entry."""
    kind: EntryKind


# ``IndexMatch.__new__(IndexMatch, ...)`` is exactly ``IndexMatch(...)``, at half the cost.
_new_match = IndexMatch.__new__


class _Builder:
    def __init__(self) -> None:
        self.keys: dict[str, int | list[int]] = {}
        self.flags: set[str] = set()

    def add(self, key: str, list_id: int, line: int) -> None:
        packed = (list_id << 32) | (line & 0xFFFFFFFF)
        current = self.keys.get(key)
        if current is None:
            self.keys[key] = packed
        elif isinstance(current, list):
            if all(p >> 32 != list_id for p in current):
                current.append(packed)
        elif current >> 32 != list_id:
            self.keys[key] = [current, packed]

    def freeze(self, combos: dict[tuple[int, ...], int]) -> tuple[
        marisa_trie.Trie, array[int], array[int], dict[int, list[list[int]]]
    ]:
        for key in self.flags:
            self.keys.setdefault(key, [])
        trie = marisa_trie.Trie(list(self.keys))
        size = len(trie)
        combo_arr = array("H", bytes(2 * size))
        line_arr = array("I", bytes(4 * size))
        extras: dict[int, list[list[int]]] = {}
        for key, kid in trie.iteritems():
            value = self.keys[key]
            packed_list = value if isinstance(value, list) else [value]
            list_ids = tuple(sorted(p >> 32 for p in packed_list))
            combo = combos.setdefault(list_ids, len(combos))
            if combo > _COMBO_MASK:
                raise ValueError("too many distinct list combinations for one snapshot")
            combo_arr[kid] = combo | (URL_FLAG if key in self.flags else 0)
            by_list = {p >> 32: p & 0xFFFFFFFF for p in packed_list}
            if list_ids:
                line_arr[kid] = by_list[list_ids[0]]
            if len(list_ids) > 1:
                extras[kid] = [[lid, by_list[lid]] for lid in list_ids]
        return trie, combo_arr, line_arr, extras


class DomainIndex:
    """Read-only lookups of host and URL entries; build with :func:`build_index`."""

    def __init__(
        self,
        lists: list[ListInfo],
        combos: list[tuple[int, ...]],
        hosts: marisa_trie.Trie,
        host_combo: Any,
        host_line: Any,
        host_extras: dict[int, list[list[int]]],
        urls: marisa_trie.Trie,
        url_combo: Any,
        url_line: Any,
        url_extras: dict[int, list[list[int]]],
        keepalive: list[Any] | None = None,
        host_filter: Any = None,
    ) -> None:
        self.lists = lists
        self.combos = combos
        self._hosts = hosts
        self._host_combo = host_combo
        self._host_line = host_line
        self._host_extras = host_extras
        self._urls = urls
        self._url_combo = url_combo
        self._url_line = url_line
        self._url_extras = url_extras
        self._keepalive = keepalive or []
        self._hosts_prefixes = hosts.prefixes
        self._host_filter = host_filter
        self._covers = self._make_cover_test(host_filter)

    def _make_cover_test(self, host_filter: Any) -> Callable[[str], bool]:
        """``covers(host)``: False when no entry covers the canonical host (certain), True when
        one may. The C host filter answers most hosts without a trie query; without it (no
        compiler, an old snapshot, a filter of another version) the trie answers."""
        if host_filter is not None and _urlfast is not None:
            try:
                return _urlfast.HostFilter(host_filter).may_match
            except ValueError:
                pass
        prefixes = self._hosts_prefixes
        return lambda host: bool(prefixes(host[::-1] + "."))

    @property
    def host_count(self) -> int:
        return len(self._hosts)

    @property
    def url_count(self) -> int:
        return len(self._urls)

    def _payload(self, kid: int, combo_arr: Any, line_arr: Any, extras: dict[int, list[list[int]]]
                 ) -> list[tuple[int, int]]:
        list_ids = self.combos[combo_arr[kid] & _COMBO_MASK]
        if not list_ids:
            return []
        if len(list_ids) == 1:
            return [(list_ids[0], line_arr[kid])]
        return [(lid, line) for lid, line in extras[kid]]

    def _filtered_out(self, rev_key: str) -> bool:
        """True when the host filter is certain that no entry covers this host key."""
        return (self._host_filter is not None and rev_key.endswith(".")
                and not self._covers(rev_key[-2::-1]))

    def host_has_entries(self, rev_key: str) -> bool:
        """Cheap first test: does any entry cover this host (reversed key) at all?"""
        return not self._filtered_out(rev_key) and bool(self._hosts_prefixes(rev_key))

    def lookup(self, rev_key: str, path: str) -> list[IndexMatch]:
        """All entries that cover the host (given as :func:`host_key`) and path."""
        if not self._hosts_prefixes(rev_key):
            return []
        return self._lookup(rev_key, path)

    def _lookup(self, rev_key: str, path: str) -> list[IndexMatch]:
        """:meth:`lookup` without its quick exit, for callers that checked :attr:`_covers`."""
        out: list[IndexMatch] = []
        host_combo = self._host_combo
        combos = self.combos
        for prefix, kid in self._hosts.iter_prefixes_with_ids(rev_key):
            combo = host_combo[kid]
            list_ids = combos[combo & _COMBO_MASK]
            # What _payload gives, inlined (the hot path of a listed host).
            if len(list_ids) == 1:
                out.append(_new_match(IndexMatch, list_ids[0], self._host_line[kid],
                                      prefix[-2::-1], _DOMAIN))
            elif list_ids:
                entry = prefix[-2::-1]
                out.extend([_new_match(IndexMatch, lid, line, entry, _DOMAIN)
                            for lid, line in self._host_extras[kid]])
            if combo & URL_FLAG:
                out.extend(self._lookup_urls(prefix, path))
        return out

    def host_has_url_rules(self, rev_key: str) -> bool:
        """True when a URL entry exists for this host or a parent: the path decides."""
        return not self._filtered_out(rev_key) and any(
            self._host_combo[kid] & URL_FLAG for _p, kid in self._hosts.iter_prefixes_with_ids(rev_key))

    def _lookup_urls(self, prefix: str, path: str) -> list[IndexMatch]:
        key = prefix + path
        size = len(key)
        head = len(prefix)
        out: list[IndexMatch] = []
        for found, kid in self._urls.iter_prefixes_with_ids(key):
            if len(found) < size and key[len(found)] not in _URL_BOUNDARIES:
                continue
            entry = prefix[-2::-1] + found[head:]
            list_ids = self.combos[self._url_combo[kid] & _COMBO_MASK]
            # What _payload gives, inlined.
            if len(list_ids) == 1:
                out.append(_new_match(IndexMatch, list_ids[0], self._url_line[kid], entry, _URL))
            elif list_ids:
                out.extend([_new_match(IndexMatch, lid, line, entry, _URL)
                            for lid, line in self._url_extras[kid]])
        return out

    def entries_under(self, rev_key: str, path: str = "") -> Iterator[IndexMatch]:
        """Every entry a rule on this host (as :func:`host_key`) would cover: domain entries for
        the host and its subdomains and every URL entry on them; with ``path``, only the URL
        entries at or below that path (on segment boundaries). Not for the hot path."""
        if not path:
            for key, kid in self._hosts.iteritems(rev_key):
                for lid, line in self._payload(kid, self._host_combo, self._host_line,
                                               self._host_extras):
                    yield IndexMatch(lid, line, key[-2::-1], EntryKind.DOMAIN)
        for key, kid in self._urls.iteritems(rev_key):
            slash = key.find("/")
            entry_path = key[slash:]
            if path and not (entry_path == path or (entry_path.startswith(path) and (
                    path.endswith("/") or entry_path[len(path)] in _URL_BOUNDARIES))):
                continue
            entry = key[:slash][-2::-1] + entry_path
            for lid, line in self._payload(kid, self._url_combo, self._url_line, self._url_extras):
                yield IndexMatch(lid, line, entry, EntryKind.URL)

    def iter_host_entries(self) -> Iterable[tuple[str, tuple[int, ...]]]:
        """Every domain entry with its list ids (for exports and the extension's rules)."""
        for key, kid in self._hosts.iteritems():
            list_ids = self.combos[self._host_combo[kid] & _COMBO_MASK]
            if list_ids:
                yield key[-2::-1], list_ids


def build_index(lists: list[ListInfo], entries: Iterable[tuple[int, EntryKind, str, int]]
                ) -> DomainIndex:
    """Build an in-memory index from ``(list_id, kind, canonical value, line)`` tuples."""
    hosts, urls = _Builder(), _Builder()
    for list_id, kind, value, line in entries:
        if kind is EntryKind.DOMAIN:
            hosts.add(host_key(value), list_id, line)
        else:
            slash = value.find("/")
            hk = host_key(value[:slash])
            urls.add(hk + value[slash:], list_id, line)
            hosts.flags.add(hk)
    combos: dict[tuple[int, ...], int] = {(): 0}
    h_trie, h_combo, h_line, h_extras = hosts.freeze(combos)
    u_trie, u_combo, u_line, u_extras = urls.freeze(combos)
    combo_list = [c for c, _ in sorted(combos.items(), key=lambda kv: kv[1])]
    host_filter = _urlfast.filter_build(h_trie.iterkeys(), len(h_trie)) if _urlfast else None
    return DomainIndex(lists, combo_list, h_trie, h_combo, h_line, h_extras,
                       u_trie, u_combo, u_line, u_extras, host_filter=host_filter)


_FILES = ("hosts.marisa", "hosts.combo", "hosts.line", "urls.marisa", "urls.combo", "urls.line")
_FILTER_FILE = "hosts.filter"
"""Optional: a snapshot compiled without the C extension has none, and its lookups ask the trie."""


def save_index(index: DomainIndex, directory: Path, extra_meta: dict[str, Any]) -> None:
    """Write the index files and ``index.json`` into ``directory`` (which must exist)."""
    index._hosts.save(str(directory / "hosts.marisa"))
    index._urls.save(str(directory / "urls.marisa"))
    for name, arr in (("hosts.combo", index._host_combo), ("hosts.line", index._host_line),
                      ("urls.combo", index._url_combo), ("urls.line", index._url_line)):
        data = array(arr.typecode, arr)
        if sys.byteorder != "little":
            data.byteswap()
        (directory / name).write_bytes(data.tobytes())
    files: tuple[str, ...] = _FILES
    if index._host_filter is not None:
        (directory / _FILTER_FILE).write_bytes(index._host_filter)
        files = (*_FILES, _FILTER_FILE)
    meta = {
        "format": FORMAT_VERSION,
        "lists": [{"name": li.name, "source": li.source} for li in index.lists],
        "combos": [list(c) for c in index.combos],
        "host_extras": {str(k): v for k, v in index._host_extras.items()},
        "url_extras": {str(k): v for k, v in index._url_extras.items()},
        "hosts": index.host_count,
        "urls": index.url_count,
        # A corrupt file of the right size would otherwise load and match wrongly.
        "sha256": {name: _file_digest(directory / name) for name in files},
        **extra_meta,
    }
    (directory / "index.json").write_text(json.dumps(meta, separators=(",", ":")))


class IndexLoadError(RuntimeError):
    """A snapshot on disk is missing, incomplete or inconsistent."""


def _file_digest(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _mapped_array(path: Path, typecode: str, count: int, keepalive: list[Any]) -> Any:
    size = path.stat().st_size
    itemsize = array(typecode).itemsize
    if size != itemsize * count:
        raise IndexLoadError(f"{path.name}: expected {itemsize * count} bytes, found {size}")
    if size == 0:
        return array(typecode)
    with path.open("rb") as fh:
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    keepalive.append(mapped)
    if sys.byteorder != "little":
        data = array(typecode, mapped[:])
        data.byteswap()
        return data
    return memoryview(mapped).cast(typecode)  # type: ignore[call-overload]


def load_index(directory: Path) -> tuple[DomainIndex, dict[str, Any]]:
    """Map a saved index into memory (no copy); return it with its metadata."""
    try:
        meta = json.loads((directory / "index.json").read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise IndexLoadError(f"unsupported snapshot format {meta.get('format')!r}")
        for name in _FILES:
            if not (directory / name).is_file():
                raise IndexLoadError(f"snapshot file {name} is missing")
            if _file_digest(directory / name) != meta["sha256"][name]:
                raise IndexLoadError(f"snapshot file {name} is corrupt (checksum mismatch)")
        hosts = marisa_trie.Trie()
        hosts.mmap(str(directory / "hosts.marisa"))
        urls = marisa_trie.Trie()
        urls.mmap(str(directory / "urls.marisa"))
        if len(hosts) != meta["hosts"] or len(urls) != meta["urls"]:
            raise IndexLoadError("trie sizes do not match the snapshot's metadata")
        keepalive: list[Any] = [hosts, urls]
        host_filter = None
        if _FILTER_FILE in meta["sha256"]:
            filter_path = directory / _FILTER_FILE
            if _file_digest(filter_path) != meta["sha256"][_FILTER_FILE]:
                raise IndexLoadError(f"snapshot file {_FILTER_FILE} is corrupt (checksum mismatch)")
            with filter_path.open("rb") as fh:
                host_filter = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            keepalive.append(host_filter)
        index = DomainIndex(
            lists=[ListInfo(li["name"], li["source"]) for li in meta["lists"]],
            combos=[tuple(c) for c in meta["combos"]],
            hosts=hosts,
            host_combo=_mapped_array(directory / "hosts.combo", "H", len(hosts), keepalive),
            host_line=_mapped_array(directory / "hosts.line", "I", len(hosts), keepalive),
            host_extras={int(k): v for k, v in meta["host_extras"].items()},
            urls=urls,
            url_combo=_mapped_array(directory / "urls.combo", "H", len(urls), keepalive),
            url_line=_mapped_array(directory / "urls.line", "I", len(urls), keepalive),
            url_extras={int(k): v for k, v in meta["url_extras"].items()},
            keepalive=keepalive,
            host_filter=host_filter,
        )
    except IndexLoadError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise IndexLoadError(f"cannot load snapshot in {directory}: {exc}") from exc
    return index, meta
