"""``esafety check`` and ``esafety lists``: exit codes, output, groups, times and stdin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from esafety.cli import main
from tests.harness.list_fixtures import list_tree

REPO = Path(__file__).resolve().parent.parent.parent
MINI = list_tree("ut1_mini")


def run_esafety(*args: str, stdin: str | None = None, env_extra: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESAFETY_")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "esafety.cli", *args], input=stdin,
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False)


class CLI:
    """The real ``esafety`` entry point in this process, against one tmp data directory."""

    def __init__(self, capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
        self.capsys = capsys
        self.data_dir = data_dir

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        try:
            code = main(["--data-dir", str(self.data_dir), *args])
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *args: str) -> list[dict[str, Any]]:
        code, out, err = self("check", *args, "--json")
        assert code in (0, 1), err
        return [json.loads(line) for line in out.splitlines()]

    def one(self, url: str, *args: str) -> tuple[str, str, str | None]:
        [d] = self.json(url, *args)
        return d["action"], d["rule"], d["category"]


@pytest.fixture(scope="module")
def mini_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with the mini UT1 tree and an illegal list imported as ``iwf``."""
    data_dir = tmp_path_factory.mktemp("cli-data")
    assert main(["--data-dir", str(data_dir), "lists", "import", str(MINI), "--source", "ut1"]) == 0
    iwf = tmp_path_factory.mktemp("iwf") / "iwf-list.txt"
    iwf.write_text("abuse-images.test\nopen-courseware-hub.test\n")
    assert main(["--data-dir", str(data_dir), "lists", "import", str(iwf), "--list", "iwf"]) == 0
    return data_dir


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, mini_data: Path) -> CLI:
    for name in list(os.environ):
        if name.startswith("ESAFETY_"):
            monkeypatch.delenv(name)  # never the user's config or data directory
    return CLI(capsys, mini_data)


# -- exit codes and output ----------------------------------------------------------------------

def test_exit_code_is_0_for_allowed_and_1_for_blocked(cli: CLI) -> None:
    assert cli("check", "http://daily-news-gazette.test/")[0] == 0
    assert cli("check", "http://bet-ace-777.test/")[0] == 1
    assert cli("check", "daily-news-gazette.test", "bet-ace-777.test")[0] == 1
    assert cli("check", "daily-news-gazette.test", "county-herald.test")[0] == 0


def test_json_output_has_one_object_per_url_with_the_explanation(cli: CLI) -> None:
    urls = ["http://WWW.Bet-Ace-777.test:8080/", "county-herald.test", "community-forum.test/drugs/x"]
    decisions = cli.json(*urls)
    assert [d["url"] for d in decisions] == urls
    for d in decisions:
        assert {"url", "action", "category", "reason", "matched", "rule"} <= set(d)
    bet, herald, forum = decisions
    assert (bet["action"], bet["category"], bet["matched"], bet["rule"]) == (
        "block", "gambling", "bet-ace-777.test", "category")
    assert bet["source"] == "ut1/gambling/domains" and bet["line"] == 2
    assert "gambling" in bet["reason"].lower()
    assert (herald["action"], herald["category"], herald["matched"]) == ("allow", None, None)
    assert herald["reason"]
    assert (forum["action"], forum["matched"]) == ("block", "community-forum.test/drugs")


def test_text_output_explains_each_decision(cli: CLI) -> None:
    code, out, _ = cli("check", "bet-ace-777.test", "county-herald.test")
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == ("BLOCK bet-ace-777.test category=gambling rule=category "
                        "matched=bet-ace-777.test (ut1/gambling/domains:2)")
    assert lines[2] == "ALLOW county-herald.test rule=default"
    assert len(lines) == 4


def test_unreadable_urls_are_blocked_not_errors(cli: CLI) -> None:
    assert cli.one("http://www.1.2.3.4/") == ("block", "invalid-url", None)
    assert cli("check", "http://bad site.test/")[0] == 1


# -- precedence through the CLI --------------------------------------------------------------------

def test_illegal_list_imported_as_iwf_beats_allow_lists_and_groups(cli: CLI) -> None:
    for group in ("staff", "learner", "guest"):
        assert cli.one("http://abuse-images.test/", "--group", group) == (
            "block", "illegal-list", "child_abuse")
    # on the education allow-list too, but the illegal list comes first
    assert cli.one("open-courseware-hub.test", "--group", "staff") == (
        "block", "illegal-list", "child_abuse")


def test_the_more_specific_of_an_allow_and_a_block_entry_wins(cli: CLI) -> None:
    assert cli.one("general-blog.test/adult-corner/consent") == ("allow", "allow-list", "sexual_education")
    assert cli.one("general-blog.test/adult-corner") == ("block", "category", "pornography")
    assert cli.one("study-portal.test") == ("allow", "allow-list", "allowlist")
    # a listed child of an allowed parent, and the same domain on both lists (a tie), block
    assert cli.one("vpn.study-portal.test") == ("block", "category", "circumvention")
    assert cli.one("sexual-health-clinic.test") == ("block", "category", "pornography")
    code, out, _ = cli("check", "http://vpn.study-portal.test/")
    assert code == 1
    assert ("The block entry vpn.study-portal.test (ut1/vpn/domains) is more specific than the "
            "allow-list entry study-portal.test (ut1/liste_blanche/domains), so it wins.") in out


def test_groups_and_users(cli: CLI) -> None:
    # A Monday morning: learners get social networks at break and lunch.
    monday = ("--at", "2026-01-12T09:00")
    assert cli.one("friendspace.test", "--group", "staff", *monday) == (
        "allow", "group-allow", "social_networks")
    assert cli.one("friendspace.test", "--user", "alice", *monday) == (
        "block", "category", "social_networks")
    assert cli.one("198.51.100.99", "--group", "staff") == ("allow", "default", None)
    assert cli.one("198.51.100.99", "--group", "learner") == ("block", "ip-literal", "circumvention")


@pytest.mark.parametrize(
    ("at", "action"),
    [
        ("2026-01-12T11:59", "block"),
        ("2026-01-12T12:00", "allow"),  # lunch starts, London time
        ("2026-01-12T12:59", "allow"),
        ("2026-01-12T13:00", "block"),
        ("2026-01-12T10:30:00+00:00", "allow"),  # break
        ("2026-01-12T10:45:00Z", "block"),
        ("2026-07-06T12:00", "allow"),  # summer: naive times are London time (BST)
        ("2026-07-06T11:00:00Z", "allow"),  # = 12:00 BST
        ("2026-07-06T12:30:00Z", "block"),  # = 13:30 BST
        ("2026-03-30T11:15:00+00:00", "allow"),  # first Monday of BST: 12:15 local
        ("2026-03-30T12:15:00+00:00", "block"),  # 13:15 local
        ("2026-03-27T12:15:00+00:00", "allow"),  # the Friday before, GMT
        ("2026-01-17T12:30", "block"),  # Saturday
    ],
)
def test_learner_social_networks_follow_the_time_windows(cli: CLI, at: str, action: str) -> None:
    decided = cli.one("http://friendspace.test/", "--group", "learner", "--at", at)
    assert decided[0] == action
    assert decided[1] == ("time-window" if action == "allow" else "category")


# -- usage and configuration errors ---------------------------------------------------------------

@pytest.mark.parametrize("at", ["yesterday", "2026-13-01T12:00", "12:00", ""])
def test_bad_at_is_a_usage_error(cli: CLI, at: str) -> None:
    code, out, err = cli("check", "bet-ace-777.test", "--at", at)
    assert (code, out) == (2, "")
    assert "--at" in err


def test_missing_urls_is_a_usage_error(cli: CLI) -> None:
    assert cli("check")[0] == 2
    assert cli("no-such-command")[0] == 2


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("colour: red\n", "colour: is not a known field"),
        ("timezone: Mars/Olympus\n", "unknown time zone"),
        ("groups:\n  learner:\n    allow: [child_abuse]\n", "can never be overridden"),
        ("groups:\n  learner:\n    allow_during:\n      social_networks: [teatime]\n",
         "unknown time window 'teatime'"),
        ("time_windows:\n  lunch:\n    start: '25:00'\n    end: '13:00'\n", "time_windows.lunch"),
        ("groups: [oops\n", "not valid YAML"),
        ("groups:\n  byod:\n    always_allow: [gambling]\n",
         "always_allow cannot name the prohibited category 'gambling'"),
        ("groups:\n  byod:\n    online_during: [assembly]\n", "unknown time window 'assembly'"),
        ("networks:\n  - cidr: 10.0.30.0/24\n    group: learner\n    online_during: [teatime]\n",
         "networks.0.online_during"),
        ("class_sessions:\n  tutors:\n    - staff: [t.jones]\n      groups: [year9]\n",
         "class_sessions.tutors.0.groups: group 'year9' is not defined"),
        ("class_sessions:\n  tutors:\n    - staff: [t.jones]\n      networks: [Lab 4]\n",
         "no network under networks has the name 'Lab 4'"),
        ("class_sessions:\n  tutors:\n    - groups: [learner]\n", "staff"),
        ("class_sessions:\n  max_minutes: 0\n", "class_sessions.max_minutes"),
    ],
)
def test_bad_config_is_a_usage_error(cli: CLI, tmp_path: Path, config: str, message: str) -> None:
    path = tmp_path / "esafety.yaml"
    path.write_text(config)
    code, out, err = cli("--config", str(path), "check", "county-herald.test")
    assert (code, out) == (2, "")
    assert message in err
    assert cli("--config", str(tmp_path / "missing.yaml"), "check", "county-herald.test")[0] == 2


def test_config_can_change_windows_groups_and_time_zone(cli: CLI, tmp_path: Path) -> None:
    path = tmp_path / "esafety.yaml"
    path.write_text(
        "timezone: Asia/Tokyo\n"
        "time_windows:\n  lunch:\n    days: mon-sat\n    start: '12:30'\n    end: '13:30'\n"
        "groups:\n  exam:\n    block: [banking]\n    block_uncategorised: true\n")

    def one(url: str, *args: str) -> tuple[str, str]:
        code, out, err = cli("--config", str(path), "check", url, "--json", *args)
        assert code in (0, 1), err
        decision = json.loads(out)
        return decision["action"], decision["rule"]

    saturday_lunch_tokyo = "2026-01-17T03:45:00Z"  # 12:45 in Tokyo
    assert one("friendspace.test", "--group", "learner", "--at", saturday_lunch_tokyo) == (
        "allow", "time-window")
    assert one("friendspace.test", "--group", "learner", "--at", "2026-01-17T12:45")[0] == "allow"
    assert one("friendspace.test", "--group", "learner", "--at", "2026-01-17T12:15")[0] == "block"
    assert one("friendspace.test", "--group", "learner", "--at", "2026-01-12T12:00:00Z")[0] == "block"
    assert one("northshire-building-society.test", "--group", "exam") == ("block", "category")
    assert one("county-herald.test", "--group", "exam") == ("block", "default")
    assert one("study-portal.test", "--group", "exam") == ("allow", "allow-list")


# -- as a real process: stdin, environment -----------------------------------------------------------

def test_stdin_reads_100000_urls_and_answers_every_one_in_order(mini_data: Path) -> None:
    kinds = ["http://bet-ace-777.test/p{}", "http://county-herald.test/a/{}", "sub{}.friendspace.test",
             "http://198.51.100.23/{}", "community-forum.test/drugs/{}", "community-forum.test/drugsafe{}",
             "http://www.1.2.3.4/{}"]
    expected = ["block", "allow", "block", "block", "block", "allow", "block"]
    urls = [kinds[i % len(kinds)].format(i) for i in range(100_000)]
    stdin = "# a comment line is skipped\n\n" + "\n".join(urls) + "\n"
    proc = run_esafety("--data-dir", str(mini_data), "check", "-", "--json", stdin=stdin)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 100_000
    decisions = [json.loads(line) for line in lines]
    assert [d["url"] for d in decisions] == urls
    assert [d["action"] for d in decisions] == [expected[i % len(kinds)] for i in range(100_000)]


def test_urls_on_the_command_line_and_stdin_mix(mini_data: Path) -> None:
    proc = run_esafety("--data-dir", str(mini_data), "check", "county-herald.test", "-", "--json",
                       stdin="bet-ace-777.test\n")
    assert proc.returncode == 1
    assert [json.loads(line)["url"] for line in proc.stdout.splitlines()] == [
        "county-herald.test", "bet-ace-777.test"]


def test_empty_stdin_is_a_usage_error(mini_data: Path) -> None:
    proc = run_esafety("--data-dir", str(mini_data), "check", "-", stdin="")
    assert proc.returncode == 2 and "no URLs given" in proc.stderr


def test_data_dir_comes_from_the_environment(mini_data: Path, tmp_path: Path) -> None:
    env = {"ESAFETY_DATA_DIR": str(mini_data), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    proc = run_esafety("check", "bet-ace-777.test", env_extra=env)
    assert proc.returncode == 1 and "category=gambling" in proc.stdout
    # an empty data directory has no UT1 lists: only the built-in curated entries apply
    proc = run_esafety("--data-dir", str(tmp_path / "empty"), "check", "bet-ace-777.test", "dns.google",
                       env_extra=env)
    assert proc.returncode == 1
    assert proc.stdout.startswith("ALLOW bet-ace-777.test") and "BLOCK dns.google" in proc.stdout
    assert not (tmp_path / "xdg").exists()


def test_lists_import_exit_codes(cli: CLI, tmp_path: Path) -> None:
    assert cli("lists", "import", str(tmp_path / "missing.txt"))[0] == 2
    garbage = tmp_path / "gambling.txt"
    garbage.write_bytes(bytes(range(256)) * 100)
    code, out, _ = CLI(cli.capsys, tmp_path / "d")("lists", "import", str(garbage))
    assert code == 1 and "REFUSED" in out


def test_categories_command_lists_the_definitions(cli: CLI) -> None:
    code, out, _ = cli("categories", "--json")
    rows = {row["id"]: row for row in json.loads(out)}
    assert code == 0
    assert rows["child_abuse"]["illegal"] and not rows["child_abuse"]["overridable"]
    assert "iwf" in rows["child_abuse"]["lists"]
