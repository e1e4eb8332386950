"""List import: every source format, counted refusals, garbage that is refused without harm,
and snapshots that survive corruption."""

from __future__ import annotations

import json
import os
import random
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from categories.definitions import load_definitions
from categories.list_formats import ListFormat
from categories.list_import import ImportError_, read_source
from categories.snapshot import KEEP_SNAPSHOTS, ListStore, SnapshotError
from esafety.cli import main
from tests.harness.list_fixtures import list_tree

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
MINI = list_tree("ut1_mini")
LISTS = FIXTURES / "lists"
CATEGORIES = load_definitions()

PROSE = """\
Dear customer,

Thank you for your order. Unfortunately the file you asked for could not be found on
this server. Please check the address and try again later, or contact our support team
who will be happy to help you with any questions you may have about your subscription.
Our office is open from nine in the morning until five in the afternoon on weekdays.
We apologise for any inconvenience this may cause and thank you for your patience.
If you believe that you have reached this page in error, please let us know.
Kind regards,
The Support Team
P.S. Remember to renew your subscription before the end of the month.
This message was generated automatically, please do not reply to it.
"""


class CLI:
    """The real ``esafety`` entry point, run in this process (a subprocess costs ~0.5 s)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, data_dir: Path, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(["--data-dir", str(data_dir), *args])
        out, err = self.capsys.readouterr()
        return code, out, err

    def check(self, data_dir: Path, *urls: str) -> dict[str, tuple[str, str | None]]:
        code, out, err = self(data_dir, "check", *urls, "--json")
        assert code in (0, 1), err
        decisions = [json.loads(line) for line in out.splitlines()]
        return {d["url"]: (d["action"], d["category"]) for d in decisions}

    def import_json(self, data_dir: Path, path: Path, *args: str, expect: int = 0) -> dict[str, Any]:
        code, out, err = self(data_dir, "lists", "import", str(path), "--json", *args)
        assert code == expect, err
        report: dict[str, Any] = json.loads(out)
        return report


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CLI:
    for name in list(os.environ):
        if name.startswith("ESAFETY_"):
            monkeypatch.delenv(name)  # never the user's config or data directory
    return CLI(capsys)


def summary(imported: list[Any]) -> dict[str, tuple[int, int]]:
    return {item.file: (len(item.result.entries), item.result.rejected_count) for item in imported}


def make_tarball(tree: Path, target: Path, top: str = "blacklists") -> Path:
    with tarfile.open(target, "w:gz") as archive:
        archive.add(tree, arcname=top)
    return target


# -- reading each format ------------------------------------------------------------------------

def test_squidguard_tree_reads_every_category_and_counts_refusals() -> None:
    imported = read_source(MINI)
    files = summary(imported)
    categories = {p.name for p in MINI.iterdir() if p.is_dir()}
    assert {item.name for item in imported} == categories
    assert files["redirector/domains"] == (3, 1)  # www.1.2.3.4 is refused
    assert files["gambling/domains"] == (5, 0)
    assert files["adult/urls"] == (3, 0)
    # Regular-expression lists cannot be used, and say so line by line.
    assert files["adult/expressions"] == (0, 1) and files["redirector/expressions"] == (0, 1)
    expressions = next(i for i in imported if i.file == "adult/expressions")
    assert expressions.result.rejected_examples[0].reason == "regular-expression lists are not supported"
    assert all(item.refused is None for item in imported)
    gambling = next(i for i in imported if i.file == "gambling/domains")
    assert "xn--glcksspiel-palast-32b.test" in {e.value for e in gambling.result.entries}
    assert "casino-royal-win.test" in {e.value for e in gambling.result.entries}


@pytest.mark.parametrize("suffix", [".tar.gz", ".tgz", ".tar"])
def test_squidguard_tarball_reads_the_same_as_the_tree(tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"blacklists{suffix}"
    mode = "w" if suffix == ".tar" else "w:gz"
    with tarfile.open(target, mode) as archive:
        archive.add(MINI, arcname="blacklists")
    from_tar = read_source(target)
    from_tree = read_source(MINI)

    def key(items: list[Any]) -> list[Any]:
        return sorted((i.file, [(e.kind, e.value, e.line) for e in i.result.entries],
                       i.result.rejected_count) for i in items)

    assert key(from_tar) == key(from_tree)


@pytest.mark.parametrize(
    ("name", "fmt", "accepted", "rejected"),
    [("hosts.txt", ListFormat.HOSTS, 6, 4), ("adblock.txt", ListFormat.ADBLOCK, 4, 5),
     ("plain.txt", ListFormat.PLAIN, 5, 3)],
)
def test_flat_files_are_detected_and_read(name: str, fmt: ListFormat, accepted: int, rejected: int) -> None:
    [item] = read_source(LISTS / name)
    assert (item.name, item.file, item.format) == (name.split(".")[0], name, fmt)
    assert (len(item.result.entries), item.result.rejected_count) == (accepted, rejected)
    assert item.refused is None


def test_list_name_and_format_can_be_given(tmp_path: Path) -> None:
    path = tmp_path / "mixed.txt"
    path.write_text("a-site.test/x\nb-site.test/y\nc-site.test\n")
    [item] = read_source(path, list_name="gambling", fmt=ListFormat.PLAIN)
    assert item.name == "gambling" and item.result.rejected_count == 2
    [item] = read_source(path, list_name="gambling")
    assert item.format is ListFormat.URLS and item.result.rejected_count == 0


@pytest.mark.parametrize("kind", ["missing", "empty-folder", "bad-tar"])
def test_things_that_are_not_list_sources_are_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "source"
    if kind == "empty-folder":
        path.mkdir()
        (path / "readme.txt").write_text("hello")
    elif kind == "bad-tar":
        path = tmp_path / "lists.tar.gz"
        path.write_bytes(b"this is not a tarball at all")
    with pytest.raises(ImportError_):
        read_source(path)


def test_binary_and_prose_files_are_refused_as_garbage(tmp_path: Path) -> None:
    binary = tmp_path / "binary.txt"
    binary.write_bytes(random.Random(7).randbytes(64 * 1024))
    [item] = read_source(binary, list_name="gambling")
    assert item.refused is not None and "binary" in item.refused
    assert item.result.rejected_count > 0
    prose = tmp_path / "prose.txt"
    prose.write_text(PROSE)
    [item] = read_source(prose, list_name="gambling")
    assert item.refused is not None and "does not look like" in item.refused
    assert item.result.rejected_count == 11
    undecodable = tmp_path / "latin1.txt"
    undecodable.write_bytes(bytes(range(0x80, 0x100)) * 20 + b"\n" + b"\xe9\xe8\n" * 30)
    [item] = read_source(undecodable, list_name="gambling")
    assert item.refused is not None


# -- through the CLI: reports, mapping and blocking ---------------------------------------------

@pytest.mark.parametrize(
    ("name", "blocked", "allowed", "accepted", "rejected"),
    [
        ("hosts.txt", ["tracker-one.test", "http://WWW.Upper-Case-Host.test/", "tracker-three.test"],
         ["tracker-four.test", "tracker-five.test", "nodot.test"], 6, 4),
        ("adblock.txt",
         ["adblock-one.test", "http://adblock-three.test/", "cdn.adblock-four.test/tracker/pixel/1"],
         ["cdn.adblock-four.test/other", "allowed-exception.test", "adblock-scripts.test"], 4, 5),
        ("plain.txt", ["plain-one.test", "x.plain-three.test", "plain-five.test"],
         ["plain-six.test", "nodot"], 5, 3),
    ],
)
def test_cli_imports_each_flat_format_and_reports_every_refused_line(
        cli: CLI, tmp_path: Path, name: str, blocked: list[str], allowed: list[str], accepted: int,
        rejected: int) -> None:
    report = cli.import_json(tmp_path, LISTS / name, "--list", "gambling")
    [item] = report["lists"]
    assert (item["accepted"], item["rejected"], item["mapped_to"]) == (accepted, rejected, ["gambling"])
    assert report["rejected_total"] == rejected
    assert len(item["examples"]) == rejected and all(e["reason"] and e["line"] for e in item["examples"])
    decisions = cli.check(tmp_path, *blocked, *allowed)
    assert {u: decisions[u][0] for u in blocked} == dict.fromkeys(blocked, "block")
    assert all(decisions[u][1] == "gambling" for u in blocked)
    assert {u: decisions[u][0] for u in allowed} == dict.fromkeys(allowed, "allow")


def test_cli_text_report_shows_rejections_and_unmapped_lists(cli: CLI, tmp_path: Path) -> None:
    code, out, err = cli(tmp_path, "lists", "import", str(LISTS / "plain.txt"))
    assert code == 0, err
    assert "rejected lines in total: 3" in out
    assert "line 8: not a domain: not a domain" in out
    assert "imported but not used by any category: plain" in out
    # An unmapped list blocks nothing.
    assert cli.check(tmp_path, "plain-one.test") == {"plain-one.test": ("allow", None)}


def test_importing_a_second_file_keeps_the_first(cli: CLI, tmp_path: Path) -> None:
    """Regression: every flat file used to share the source "local", so importing a second
    file silently dropped everything imported from the first."""
    cli.import_json(tmp_path, LISTS / "hosts.txt", "--list", "gambling")
    cli.import_json(tmp_path, LISTS / "plain.txt", "--list", "drogue")
    assert cli.check(tmp_path, "tracker-one.test", "plain-one.test") == {
        "tracker-one.test": ("block", "gambling"), "plain-one.test": ("block", "drugs")}
    status = json.loads(cli(tmp_path, "lists", "status", "--json")[1])
    assert sorted(s["source"] for s in status["sources"]) == ["hosts", "plain"]
    assert status["host_entries"] == 11


def test_ut1_tree_and_tarball_import_through_the_cli(cli: CLI, tmp_path: Path) -> None:
    tree_dir, tar_dir = tmp_path / "tree", tmp_path / "tar"
    tree = cli.import_json(tree_dir, MINI, "--source", "ut1")
    tarball = cli.import_json(tar_dir, make_tarball(MINI, tmp_path / "ut1.tar.gz"), "--source", "ut1")
    assert sorted((i["file"], i["accepted"], i["rejected"]) for i in tree["lists"]) == sorted(
        (i["file"], i["accepted"], i["rejected"]) for i in tarball["lists"])
    assert tree["rejected_total"] == 3  # www.1.2.3.4 and two expressions lines
    assert set(tree["unmapped_lists"]) == {"press", "shopping"}
    urls = ["bet-ace-777.test", "glücksspiel-palast.test", "daily-news-gazette.test"]
    assert cli.check(tree_dir, *urls) == cli.check(tar_dir, *urls) == {
        "bet-ace-777.test": ("block", "gambling"), "glücksspiel-palast.test": ("block", "gambling"),
        "daily-news-gazette.test": ("allow", None)}


# -- garbage never poisons the snapshot ---------------------------------------------------------

@pytest.mark.parametrize("garbage", ["binary", "prose"])
def test_garbage_flat_file_is_refused_and_the_previous_copy_kept(
        cli: CLI, tmp_path: Path, garbage: str) -> None:
    data_dir = tmp_path / "data"
    source = tmp_path / "gambling.txt"
    source.write_text("first-casino.test\nsecond-casino.test\n")
    first = cli.import_json(data_dir, source)
    assert first["lists"][0]["mapped_to"] == ["gambling"] and first["lists"][0]["refused"] is None
    if garbage == "binary":
        source.write_bytes(random.Random(3).randbytes(100_000))
    else:
        source.write_text(PROSE)
    second = cli.import_json(data_dir, source, expect=1)
    [item] = second["lists"]
    assert item["refused"] and item["rejected"] > 10 and item["accepted"] == 0
    code, out, _err = cli(data_dir, "lists", "import", str(source))
    assert code == 1 and "REFUSED" in out and "previous copy is kept" in out
    assert cli.check(data_dir, "first-casino.test", "second-casino.test") == {
        "first-casino.test": ("block", "gambling"), "second-casino.test": ("block", "gambling")}
    # A good file afterwards replaces the list as usual.
    source.write_text("third-casino.test\n")
    cli.import_json(data_dir, source)
    assert cli.check(data_dir, "first-casino.test", "third-casino.test") == {
        "first-casino.test": ("allow", None), "third-casino.test": ("block", "gambling")}


def test_garbage_file_inside_a_tree_keeps_that_list_and_updates_the_others(cli: CLI, tmp_path: Path) -> None:
    tree = tmp_path / "ut1"
    shutil.copytree(MINI, tree)
    data_dir = tmp_path / "data"
    cli.import_json(data_dir, tree, "--source", "ut1")
    (tree / "gambling" / "domains").write_bytes(random.Random(5).randbytes(50_000))
    (tree / "drogue" / "domains").write_text("new-drug-shop.test\n")
    report = cli.import_json(data_dir, make_tarball(tree, tmp_path / "ut1.tar.gz"), "--source", "ut1",
                         expect=1)
    refused = [i["file"] for i in report["lists"] if i["refused"]]
    assert refused == ["gambling/domains"]
    decisions = cli.check(data_dir, "bet-ace-777.test", "new-drug-shop.test", "legal-highs-shop.test",
                      "sports-portal.test/betting/odds")
    assert decisions == {
        "bet-ace-777.test": ("block", "gambling"),  # kept from the previous import
        "new-drug-shop.test": ("block", "drugs"),  # the good files were imported
        "legal-highs-shop.test": ("allow", None),  # and replaced the old ones
        "sports-portal.test/betting/odds": ("block", "gambling"),
    }


def test_garbage_on_first_import_blocks_nothing_and_says_so(cli: CLI, tmp_path: Path) -> None:
    source = tmp_path / "gambling.txt"
    source.write_text(PROSE)
    report = cli.import_json(tmp_path / "data", source, expect=1)
    assert report["lists"][0]["refused"] and report["host_entries"] == 0


# -- snapshots ------------------------------------------------------------------------------------

def stage_and_compile(store: ListStore, text: str, tmp_path: Path) -> str:
    path = tmp_path / "gambling.txt"
    path.write_text(text)
    store.stage("local", read_source(path), str(path), CATEGORIES)
    return store.compile(CATEGORIES)[0]


def test_each_compile_makes_a_new_snapshot_even_within_one_second(tmp_path: Path) -> None:
    store = ListStore(tmp_path / "data")
    versions = [stage_and_compile(store, f"casino-{i}.test\n", tmp_path) for i in range(KEEP_SNAPSHOTS + 2)]
    assert len(set(versions)) == len(versions)
    assert versions == sorted(versions)  # names sort in the order they were made
    kept = sorted(p.name for p in store.snapshots_dir.iterdir() if p.is_dir())
    assert kept == versions[-KEEP_SNAPSHOTS:]
    assert store.current_version() == versions[-1]


@pytest.mark.parametrize(
    ("file", "damage"),
    [("hosts.combo", "zero"), ("hosts.combo", "random"), ("hosts.line", "random"),
     ("hosts.marisa", "random"), ("hosts.marisa", "truncate"), ("urls.marisa", "truncate"),
     ("index.json", "truncate"), ("hosts.combo", "delete")],
)
def test_corrupt_current_snapshot_falls_back_to_the_previous_one(
        cli: CLI, tmp_path: Path, file: str, damage: str) -> None:
    store = ListStore(tmp_path / "data")
    older = stage_and_compile(store, "old-casino.test\n", tmp_path)
    newer = stage_and_compile(store, "new-casino.test\nnewer-casino.test\n", tmp_path)
    assert store.load_current()[0] == newer  # type: ignore[index]
    path = store.snapshots_dir / newer / file
    data = path.read_bytes()
    if damage == "zero":
        path.write_bytes(bytes(len(data)))
    elif damage == "random":
        path.write_bytes(random.Random(1).randbytes(len(data)))
    elif damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.unlink()
    loaded = store.load_current()
    assert loaded is not None and loaded[0] == older
    # The CLI decides with the older snapshot too.
    assert cli.check(store.data_dir, "old-casino.test", "new-casino.test") == {
        "old-casino.test": ("block", "gambling"), "new-casino.test": ("allow", None)}


def test_when_no_snapshot_loads_check_refuses_to_guess(cli: CLI, tmp_path: Path) -> None:
    store = ListStore(tmp_path / "data")
    version = stage_and_compile(store, "old-casino.test\n", tmp_path)
    (store.snapshots_dir / version / "index.json").write_text("{")
    with pytest.raises(SnapshotError, match="no snapshot loads"):
        store.load_current()
    code, _out, err = cli(store.data_dir, "check", "old-casino.test")
    assert code == 2 and "no snapshot loads" in err


def test_status_reports_the_snapshot_and_sources(cli: CLI, tmp_path: Path) -> None:
    empty = json.loads(cli(tmp_path, "lists", "status", "--json")[1])
    assert (empty["snapshot_version"], empty["sources"]) == (None, [])
    report = cli.import_json(tmp_path, MINI, "--source", "ut1")
    status = json.loads(cli(tmp_path, "lists", "status", "--json")[1])
    assert status["snapshot_version"] == report["snapshot_version"]
    assert status["host_entries"] == report["host_entries"] > 0
    [source] = status["sources"]
    assert source["source"] == "ut1" and source["origin"] == str(MINI)
