"""Acceptance of the filtering core against the UT1 tree, through the real ``esafety`` CLI.

Runs on the shared UT1 snapshot when present, else on ``tests/fixtures/ut1_mini.yaml`` (see the
``ut1_dir`` fixture). The plain pass feeds *every* line of every mapped block list to one
``esafety check - --json`` call; the evasion pass uses a deterministic sample.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from categories.definitions import CategoryKind, load_definitions

REPO = Path(__file__).resolve().parent.parent.parent

# The UT1 lists the issue names; each must be mapped to a block category and present.
BRIEF_BLOCK_LISTS = (
    "adult", "mixed_adult", "gambling", "agressif", "dangerous_material", "drogue", "hacking",
    "malware", "phishing", "vpn", "redirector", "doh", "warez", "sect", "stalkerware",
    "cryptojacking", "residential-proxies", "dating", "social_networks",
)
BENIGN_LISTS = ("press", "bank", "shopping")
SQUIDGUARD_FILES = ("domains", "urls")
BOUNDARIES = "/?&;#"
IDEOGRAPHIC_FULL_STOP = "\u3002"


def run_esafety(data_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESAFETY_")}
    env["ESAFETY_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "esafety.cli", "--data-dir", str(data_dir), *args],
        input=stdin, capture_output=True, text=True, env=env, cwd=REPO, timeout=240, check=False,
    )


def check_many(data_dir: Path, urls: list[str], *extra: str) -> list[dict[str, Any]]:
    proc = run_esafety(data_dir, "check", "-", "--json", *extra, stdin="\n".join(urls) + "\n")
    assert proc.returncode in (0, 1), proc.stderr
    decisions = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [d["url"] for d in decisions] == urls, "one decision per input line, in order"
    return decisions


# -- an independent model of what the lists say, for the expected outcome ---------------------

def split_entry(raw: str) -> tuple[str, str]:
    """Host and path of a list line, lower-cased, the way squidGuard reads it."""
    text = raw.strip().lower().partition("#")[0]  # a fragment never reaches the server
    host, slash, path = text.partition("/")
    host = host.strip(".")
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    return host, ("/" + path).rstrip("/") if slash else ""


def parents(host: str) -> list[str]:
    labels = host.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


@dataclass
class ListModel:
    domains: set[str] = field(default_factory=set)
    urls: dict[str, set[str]] = field(default_factory=dict)

    def add(self, raw: str) -> None:
        host, path = split_entry(raw)
        if path:
            self.urls.setdefault(host, set()).add(path)
        else:
            self.domains.add(host)

    def covers(self, host: str, path: str = "/") -> bool:
        return self.most_specific(host, path) is not None

    def most_specific(self, host: str, path: str = "/") -> tuple[int, int] | None:
        """How specific the most specific entry covering host and path is: (host labels,
        path length), a domain entry counting as path length 0; None when nothing covers."""
        best: tuple[int, int] | None = None
        for parent in parents(host):
            labels = parent.count(".") + 1
            if parent in self.domains:
                best = max(best or (labels, 0), (labels, 0))
            for prefix in self.urls.get(parent, ()):
                if path == prefix or (path.startswith(prefix) and path[len(prefix)] in BOUNDARIES):
                    best = max(best or (labels, len(prefix)), (labels, len(prefix)))
        return best

    def beats(self, other: ListModel, host: str, path: str = "/") -> bool:
        """True when this model's most specific entry is strictly more specific than any of
        ``other``'s (the policy's rule between allow and block entries: a tie blocks)."""
        mine = self.most_specific(host, path)
        theirs = other.most_specific(host, path)
        return mine is not None and (theirs is None or mine > theirs)


def list_lines(ut1_dir: Path, name: str) -> Iterable[tuple[str, str]]:
    """(file, line) for every content line of a list category's domains and urls files."""
    for file_name in SQUIDGUARD_FILES:
        path = ut1_dir / name / file_name
        if path.is_file():
            for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
                line = raw.strip()
                if line and not line.startswith("#"):
                    yield f"{name}/{file_name}", line


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass
class UT1:
    root: Path
    data_dir: Path
    report: dict[str, Any]
    block_lists: list[str]
    allow: ListModel
    block: ListModel


@pytest.fixture(scope="module")
def ut1(ut1_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> UT1:
    data_dir = tmp_path_factory.mktemp("ut1-data")
    proc = run_esafety(data_dir, "lists", "import", str(ut1_dir), "--source", "ut1", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    categories = load_definitions()
    present = {p.name for p in ut1_dir.iterdir() if p.is_dir()}
    block_lists, allow_lists = [], []
    for name, ids in sorted(categories.categories_for_list.items()):
        kinds = {categories[c].kind for c in ids}
        if name in present and CategoryKind.BLOCK in kinds:
            block_lists.append(name)
        if name in present and CategoryKind.ALLOW in kinds:
            allow_lists.append(name)
    allow, block = ListModel(), ListModel()
    for name in allow_lists:
        for _file, line in list_lines(ut1_dir, name):
            allow.add(line)
    for category in categories.values():
        model = allow if category.kind is CategoryKind.ALLOW else (
            block if category.kind is CategoryKind.BLOCK else None)
        for entry in category.entries if model is not None else ():
            model.add(entry.value)
    for name in block_lists:
        for _file, line in list_lines(ut1_dir, name):
            block.add(line)
    return UT1(ut1_dir, data_dir, report, block_lists, allow, block)


def test_every_listed_ut1_category_is_mapped_to_a_block_category(ut1: UT1) -> None:
    assert set(BRIEF_BLOCK_LISTS) <= set(ut1.block_lists)
    assert {"liste_blanche", "sexual_education"} <= {p.name for p in ut1.root.iterdir()}
    by_file = {item["file"]: item for item in ut1.report["lists"]}
    for name in BRIEF_BLOCK_LISTS:
        files = [by_file[f] for f in (f"{name}/domains", f"{name}/urls") if f in by_file]
        assert files, f"{name} was not imported"
        assert sum(f["accepted"] for f in files) > 0, f"{name} imported no entries"
        assert all(f["mapped_to"] and f["refused"] is None for f in files)


def test_every_line_of_every_mapped_block_list_is_blocked(ut1: UT1) -> None:
    lines = [line for name in ut1.block_lists for _file, line in list_lines(ut1.root, name)]
    decisions = check_many(ut1.data_dir, lines)
    rejected_at_import = {
        (ex["text"]) for item in ut1.report["lists"]
        if item["name"] in ut1.block_lists and item["file"].endswith(SQUIDGUARD_FILES)
        for ex in item["examples"]}
    rejected_count = sum(item["rejected"] for item in ut1.report["lists"]
                         if item["name"] in ut1.block_lists
                         and item["file"].endswith(SQUIDGUARD_FILES))
    block_categories = {c.id for c in load_definitions().values() if c.kind is CategoryKind.BLOCK}
    allowed_by_precedence, invalid, wrong = [], [], []
    blocked_over_allow: list[str] = []
    """Lines under an allow entry that block because they are at least as specific."""
    for line, decision in zip(lines, decisions, strict=True):
        host, path = split_entry(line)
        if decision["rule"] == "invalid-url":
            invalid.append(line)
            assert decision["action"] == "block"
        elif ut1.allow.beats(ut1.block, host, path or "/"):
            allowed_by_precedence.append(line)
            if decision["action"] != "allow" or decision["rule"] != "allow-list":
                wrong.append(decision)
        elif (decision["action"], decision["rule"]) != ("block", "category") \
                or decision["category"] not in block_categories or not decision["matched"]:
            wrong.append(decision)
        elif ut1.allow.covers(host, path or "/"):
            blocked_over_allow.append(line)
            if "allow-list entry" not in decision["reason"]:
                wrong.append(decision)  # the explanation must name the allow entry it beat
    assert wrong == [], f"{len(wrong)} list entries not blocked, e.g. {wrong[:5]}"
    print(f"{len(allowed_by_precedence)} list lines allowed by a more specific allow entry: "
          f"{sorted(allowed_by_precedence)[:40]}")
    print(f"{len(blocked_over_allow)} list lines under an allow entry blocked because the block "
          f"entry is at least as specific: {sorted(blocked_over_allow)[:40]}")
    # Lines the importer refused are exactly the ones the check blocks as unreadable.
    assert len(invalid) == rejected_count
    if rejected_count <= 20 * len(ut1.block_lists):
        assert set(invalid) <= rejected_at_import
    counts = Counter(d["action"] for d in decisions)
    assert counts["block"] == len(lines) - len(allowed_by_precedence)
    assert counts["allow"] == len(allowed_by_precedence)
    for known in ("vpn.mozilla.org", "cri.univ-tlse1.fr/tools/test_filtrage/gambling/"):
        if known in lines:  # the full UT1 tree: a VPN and a filter-test page under allowed hosts
            assert known in blocked_over_allow
    if ut1.root.name == "ut1_mini":
        assert sorted(invalid) == ["www.1.2.3.4"]
        assert allowed_by_precedence == []
        # An exact tie (the same domain on both lists) blocks, and so does a listed child of
        # an allowed parent.
        assert sorted(blocked_over_allow) == [
            "open-courseware-hub.test", "sexual-health-clinic.test", "vpn.study-portal.test"]


# -- evasion forms -----------------------------------------------------------------------------

def pct(text: str) -> str:
    return "".join(f"%{ord(c):02X}" for c in text)


def ipv4_forms(addr: str) -> list[str]:
    a, b, c, d = (int(x) for x in addr.split("."))
    n = int(ipaddress.IPv4Address(addr))
    return [
        f"http://{n}/",
        f"http://{oct(n).replace('0o', '0')}/",
        f"http://{hex(n)}/",
        f"http://{hex(n).upper().replace('0X', '0x')}/",
        f"http://0{a:o}.0{b:o}.0{c:o}.0{d:o}/",
        f"http://{a:#x}.{b:#x}.{c:#x}.{d:#x}/",
        f"http://{a}.{b}.{c * 256 + d}/",
        f"http://{a}.{b * 65536 + c * 256 + d}/",
        f"http://[::ffff:{addr}]/",
        f"http://[::FFFF:{a * 256 + b:x}:{c * 256 + d:x}]/",
        f"http://{addr}./",
        f"http://{addr}:8080/",
        f"http://user@{addr}/",
        f"http://{pct(str(a))}.{b}.{c}.{d}/",
    ]


def name_forms(host: str, rng: random.Random) -> list[tuple[str, str]]:
    """(url, canonical host it must match) for the evasion forms of a domain entry."""
    token = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(8))
    first, _, rest = host.partition(".")
    forms = [
        (f"HTTP://{host.upper()}/", host),
        (f"http://{host}./", host),
        (f"http://{host}:8080/", host),
        (f"https://{host}:443/index.html", host),
        (f"http://good-site.example@{host}/", host),
        (f"http://user:pass@{host}:81/", host),
        (f"http://{pct(first)}.{rest}/", host),
        (f"http://{pct(host)}/", host),
        (f"http://www.{host}/", f"www.{host}"),
        (f"http://{token}.{host}/", f"{token}.{host}"),
        (f"http://a.b.{token}.{host}/", f"a.b.{token}.{host}"),
        (f"http:\\\\{host}\\page", host),
        (f"//{host}//a//b", host),
        (f"http://{host}/a/../b/./c", host),
        ("http://" + host.replace(".", IDEOGRAPHIC_FULL_STOP) + "/", host),
        (f"http://{host[:1]}\t{host[1:]}/", host),
        (f"{host}:443", host),
        (f"http://{host}/?q=1#frag", host),
    ]
    if "xn--" in host:
        try:
            unicode_host = host.encode("ascii").decode("idna")
        except UnicodeError:
            unicode_host = ""
        if unicode_host and unicode_host != host:
            forms.append((f"http://{unicode_host}/", host))
            if unicode_host.upper().lower() == unicode_host:  # not e.g. dotless i -> I
                forms.append((f"http://{unicode_host.upper()}/", host))
    return forms


def url_forms(host: str, path: str) -> list[str]:
    """Evasion forms of a ``host/path`` entry that must still match it."""
    sep = "&" if "?" in path else "?"
    letter = next((i for i, c in enumerate(path) if c.isalpha()), None)
    encoded = path if letter is None else path[:letter] + pct(path[letter]) + path[letter + 1:]
    forms = [
        f"http://{host}{path}",
        f"HTTP://{host.upper()}{path.upper()}",
        f"http://{host}{path}/deeper/page.html",
        f"http://{host}{path}{sep}x=1",
        f"http://{host}{path}#fragment",
        f"http://{host}{path.replace('/', '//')}",
        f"http://{host}/zz/..{path}",
        f"http://{host}/.{path}",
        f"http://{host}{encoded}",
        f"http://{host}:8080{path}",
        f"http://visitor@{host}{path}",
        f"http://{host}./{path.lstrip('/')}",
    ]
    if not is_ip(host):
        forms.append(f"http://www.{host}{path}")
    elif ":" not in host:
        forms.append(f"http://{int(ipaddress.IPv4Address(host))}{path}")
        forms.append(f"http://[::ffff:{host}]{path}")
    return forms


def sample(items: list[str], key: str, size: int) -> list[str]:
    items = sorted(set(items))
    return items if len(items) <= size else random.Random(key).sample(items, size)


def test_evasion_forms_of_listed_entries_are_blocked(ut1: UT1) -> None:
    urls: list[str] = []
    must_match: list[tuple[str, str]] = []  # (canonical host, path) each url must hit
    per_kind: Counter[str] = Counter()
    for name in ut1.block_lists:
        domains, paths = [], []
        for _file, line in list_lines(ut1.root, name):
            host, path = split_entry(line)
            if "." not in host or any(c in host for c in " */") \
                    or ut1.allow.beats(ut1.block, host, path or "/"):
                continue
            if host.rsplit(".", 1)[-1].isdigit() and not is_ip(host):
                continue  # refused at import (e.g. www.1.2.3.4); counted in the plain test
            (paths if path else domains).append(line)
        rng = random.Random(f"evasion-{name}")
        idn = [line for line in domains if "xn--" in line or not line.isascii()]
        for line in sorted(set(sample(domains, f"d-{name}", 25) + idn[:25])):
            host, _ = split_entry(line)
            if is_ip(host):
                if ":" in host:
                    continue
                for url in ipv4_forms(host):
                    urls.append(url)
                    must_match.append((host, "/"))
                    per_kind["ipv4"] += 1
                continue
            for url, canonical in name_forms(host, rng):
                if ut1.allow.beats(ut1.block, canonical):
                    continue
                urls.append(url)
                must_match.append((canonical, "/"))
                per_kind["idn" if "xn--" in host or not line.isascii() else "name"] += 1
            if not line.isascii():
                urls.append(f"http://{host}/")  # the punycode form of a Unicode entry
                must_match.append((host, "/"))
                per_kind["idn"] += 1
        for line in sample(paths, f"u-{name}", 25):
            host, path = split_entry(line)
            if "%" in line or not path[1:2].isalnum():
                continue
            for url in url_forms(host, path):
                urls.append(url)
                must_match.append((host, path))
                per_kind["url"] += 1
    assert per_kind["name"] > 100 and per_kind["ipv4"] > 0 and per_kind["url"] > 0
    assert per_kind["idn"] > 0
    decisions = check_many(ut1.data_dir, urls)
    failures = [(u, d["action"], d["rule"], d["reason"]) for u, d in zip(urls, decisions, strict=True)
                if d["action"] != "block" or d["rule"] != "category"]
    assert failures == [], f"{len(failures)} of {len(urls)} evasion forms got through: {failures[:10]}"
    assert len(decisions) == len(must_match)


def test_url_entries_match_on_path_segment_boundaries_only(ut1: UT1) -> None:
    """``host/foo`` blocks ``/foo``, ``/foo/x`` and ``/foo?x`` but never ``/foobar``."""
    negatives: list[str] = []
    positives: list[str] = []
    for name in ut1.block_lists:
        candidates = []
        for _file, line in list_lines(ut1.root, name):
            host, path = split_entry(line)
            if not path or "%" in line or "?" in path or not path[-1].isalnum() or is_ip(host):
                continue
            longer = path + "zq9"
            if ut1.block.covers(host, longer) or ut1.allow.covers(host, longer) \
                    or ut1.allow.covers(host, path + "/zq9") or ut1.block.covers(host, "/"):
                continue
            candidates.append(line)
        for line in sample(candidates, f"b-{name}", 40):
            host, path = split_entry(line)
            negatives.append(f"http://{host}{path}zq9")
            positives.append(f"http://{host}{path}/zq9")
    assert len(negatives) >= 5
    decisions = check_many(ut1.data_dir, negatives + positives)
    got = [(d["url"], d["action"]) for d in decisions]
    assert got == [(u, "allow") for u in negatives] + [(u, "block") for u in positives]


def test_domains_only_in_benign_categories_are_allowed(ut1: UT1) -> None:
    lines = sorted({line for name in BENIGN_LISTS for file, line in list_lines(ut1.root, name)
                    if file.endswith("/domains")})
    decisions = check_many(ut1.data_dir, lines)
    only_benign = covered = ip_literals = 0
    wrong = []
    for line, decision in zip(lines, decisions, strict=True):
        host, _ = split_entry(line)
        if ut1.allow.beats(ut1.block, host):
            expected = ("allow", "allow-list")
        elif ut1.block.covers(host):
            expected = ("block", "category")
            covered += 1
        elif is_ip(host):
            expected = ("block", "ip-literal")  # guests may not browse by bare IP address
            ip_literals += 1
        else:
            expected = ("allow", "default")
            only_benign += 1
        if (decision["action"], decision["rule"]) != expected:
            wrong.append((line, expected, decision["action"], decision["rule"], decision["matched"]))
    assert wrong == [], f"{len(wrong)} benign domains decided wrongly, e.g. {wrong[:5]}"
    assert only_benign > len(lines) // 2
    if ut1.root.name == "ut1_mini":
        assert (covered, ip_literals) == (1, 1)
