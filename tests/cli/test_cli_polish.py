"""The command line explains itself: help on every option, unknown groups and roles refused
with the known ones named, and empty lists that say so."""

from __future__ import annotations

import argparse
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from esafety.cli import build_parser, main


def _walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:  # the subcommands, with their help
                yield f"{path} {choice.dest}", choice
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{path} {name}")
        else:
            yield path, action


def test_every_subcommand_option_and_positional_has_help() -> None:
    missing, seen = [], 0
    for where, action in _walk(build_parser(), "esafety"):
        seen += 1
        if action.help is argparse.SUPPRESS:
            continue  # internal (esafety up passes it to its children)
        if not (action.help or "").strip():
            missing.append(f"{where}: {'/'.join(action.option_strings) or action.dest}")
    assert seen > 80  # the walk reached the nested subcommands
    assert missing == []


def test_help_text_reaches_the_user() -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["users", "add", "--help"])
    assert exit_.value.code == 0


class CLI:
    def __init__(self, capsys: pytest.CaptureFixture[str], base: list[str]) -> None:
        self.capsys = capsys
        self.base = base

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        try:
            code = main([*self.base, *args])
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        redis_url: str) -> CLI:
    """The real entry point on an empty data directory and a real Redis, under a key prefix
    of its own."""
    for name in list(os.environ):
        if name.startswith("ESAFETY_"):
            monkeypatch.delenv(name)
    config = tmp_path / "esafety.yaml"
    config.write_text(yaml.safe_dump({"redis_prefix": f"esafety-test-{uuid.uuid4().hex[:10]}:",
                                      "groups": {"apprentices": {"block": ["gambling"]}}}))
    return CLI(capsys, ["--config", str(config), "--data-dir", str(tmp_path / "data"),
                        "--redis-url", redis_url])


def test_empty_lists_say_they_are_empty(cli: CLI) -> None:
    code, out, _err = cli("users", "list")
    assert code == 0 and "no users yet" in out and "esafety users add" in out
    code, out, _err = cli("users", "list", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _err = cli("lists", "status")
    assert code == 0 and "no block lists imported yet" in out and "esafety lists import" in out


KNOWN_GROUPS = "learner, staff, guest, apprentices"


def test_an_unknown_group_is_refused_naming_the_known_ones(cli: CLI, tmp_path: Path) -> None:
    csv = tmp_path / "learners.csv"
    csv.write_text("username\nada\n")
    bad_row = tmp_path / "bad.csv"
    bad_row.write_text("username,group\nada,nosuchgroup\n")
    for args in (["users", "add", "ada", "--group", "nosuchgroup"],
                 ["users", "import", str(csv), "--group", "nosuchgroup"],
                 ["users", "import", str(bad_row)],
                 ["check", "http://example.com/", "--group", "nosuchgroup"]):
        code, _out, err = cli(*args)
        assert code == 2, args
        assert "unknown group 'nosuchgroup'" in err and KNOWN_GROUPS in err, (args, err)
    code, out, _err = cli("users", "list")
    assert "no users yet" in out  # nothing was written

    assert cli("users", "add", "ada", "--group", "apprentices")[0] == 0
    code, _out, err = cli("users", "edit", "ada", "--group", "nosuchgroup")
    assert code == 2 and "unknown group 'nosuchgroup'" in err and KNOWN_GROUPS in err
    code, out, _err = cli("users", "list")
    assert out.split() == ["ada", "learner", "apprentices"]


def test_an_unknown_role_is_refused_naming_the_known_ones(cli: CLI, tmp_path: Path) -> None:
    roles = ("learner", "staff", "it_support", "manager", "dsl", "admin")
    bad_row = tmp_path / "bad.csv"
    bad_row.write_text("username,role\nada,wizard\n")
    for args in (["users", "add", "ada", "--role", "wizard"],
                 ["users", "edit", "ada", "--role", "wizard"],
                 ["users", "import", str(bad_row)]):
        code, _out, err = cli(*args)
        assert code == 2, args
        assert "wizard" in err and all(role in err for role in roles), (args, err)
    assert "no users yet" in cli("users", "list")[1]


def test_users_edit_changes_role_group_and_name_and_import_takes_defaults(
        cli: CLI, tmp_path: Path) -> None:
    assert cli("users", "add", "sam", "--role", "staff")[0] == 0
    code, out, err = cli("users", "edit", "sam", "--role", "it_support", "--group", "staff",
                         "--display-name", "Sam Jones")
    assert code == 0, err
    assert "updated sam (it_support, group staff)" in out
    code, out, _err = cli("users", "list", "--json")
    [sam] = json.loads(out)
    assert (sam["role"], sam["group"], sam["display_name"]) == ("it_support", "staff",
                                                                 "Sam Jones")
    assert cli("users", "edit", "sam")[0] == 2  # nothing to change
    assert cli("users", "edit", "nobody", "--group", "staff")[0] == 1

    csv = tmp_path / "cohort.csv"
    csv.write_text("username,group\nada,\nbob,learner\n")
    code, out, err = cli("users", "import", str(csv), "--group", "apprentices")
    assert code == 0, err
    rows = sorted(line.split("\t")[:3] for line in out.splitlines())
    assert rows == [["ada", "learner", "apprentices"], ["bob", "learner", "learner"]]
