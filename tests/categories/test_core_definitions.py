"""Category definitions: the built-in set, and schema errors that name the file, line and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from categories.definitions import (
    CategoryKind,
    builtin_definitions_dir,
    load_definitions,
)
from categories.list_formats import EntryKind
from categories.validated_yaml import SchemaProblem, ValidationFailed

GOOD = """\
id: {id}
title: Test category
description: A category used by the tests.
uksic: gambling
kind: block
severity: medium
overridable: true
lists: [{id}_list]
domains:
  - curated-{id}.test
urls:
  - curated-{id}.test/Some/Path/
"""


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(directory: Path) -> list[SchemaProblem]:
    with pytest.raises(ValidationFailed) as info:
        load_definitions(directory)
    return info.value.problems


def test_builtin_definitions_load_and_map_the_ut1_lists() -> None:
    categories = load_definitions()
    assert len(categories) == len(list(builtin_definitions_dir().glob("*.yaml")))
    for list_name, category_id in [("adult", "pornography"), ("gambling", "gambling"),
                                   ("vpn", "circumvention"), ("liste_blanche", "allowlist"),
                                   ("iwf", "child_abuse"), ("social_networks", "social_networks"),
                                   ("bank", "banking")]:
        assert category_id in categories.categories_for_list[list_name]
    assert categories["child_abuse"].illegal and not categories["child_abuse"].overridable
    assert categories["sexual_education"].kind is CategoryKind.ALLOW
    assert categories["banking"].kind is CategoryKind.NEUTRAL and categories["banking"].no_decrypt
    assert categories["gambling"].source_file == "categories/definitions/gambling.yaml"


def test_a_good_file_loads_with_canonical_curated_entries(tmp_path: Path) -> None:
    write(tmp_path, "sample", GOOD.format(id="sample"))
    category = load_definitions(tmp_path)["sample"]
    assert [(e.kind, e.value, e.line) for e in category.entries] == [
        (EntryKind.DOMAIN, "curated-sample.test", 10),
        (EntryKind.URL, "curated-sample.test/some/path", 12),
    ]
    assert category.reason == "A category used by the tests."
    assert not category.illegal and category.overridable


def test_digest_changes_when_a_definition_changes(tmp_path: Path) -> None:
    write(tmp_path, "sample", GOOD.format(id="sample"))
    before = load_definitions(tmp_path).digest
    write(tmp_path, "sample", GOOD.format(id="sample").replace("medium", "high"))
    assert load_definitions(tmp_path).digest != before


@pytest.mark.parametrize(
    ("edit", "line", "field", "message"),
    [
        (("severity: medium", "severity: severe"), 6, "severity",
         "must be one of: low, medium, high, critical (got 'severe')"),
        (("kind: block", "kind: blocked"), 5, "kind", "must be one of: block"),
        (("uksic: gambling", "uksic: betting"), 4, "uksic", "must be one of:"),
        (("overridable: true", "overridable: true\ncolour: red"), 8, "colour",
         "is not a known field"),
        (("title: Test category\n", ""), 1, "title", "is required"),
        (("id: sample", "id: other_name"), 1, "id",
         "must equal the file name 'sample'"),
        (("overridable: true", "illegal: true\noverridable: true"), 8,
         "overridable", "an illegal list can never be overridden"),
        (("overridable: true", "overridable: yes please"), 7, "overridable",
         "must be of type boolean"),
        (("  - curated-sample.test\n", "  - curated sample.test\n"), 10,
         "domains[0]", "is not valid"),
        (("  - curated-sample.test\n", "  - curated-sample.test/with/path\n"), 10,
         "domains[0]", "has a path; put it under urls"),
        (("lists: [sample_list]", "lists: [sample_list, 'bad list']"), 8,
         "lists[1]", "must match"),
        (("id: sample", "id: Sample"), 1, "id", "must match lower-case letters"),
    ],
    ids=["bad-enum", "bad-kind", "bad-uksic", "unknown-field", "missing-required", "id-not-file-name",
         "illegal-and-overridable", "wrong-type", "bad-domain", "domain-with-path", "bad-list-name",
         "bad-id-pattern"],
)
def test_schema_errors_name_the_file_line_and_field(
        tmp_path: Path, edit: tuple[str, str], line: int, field: str, message: str) -> None:
    write(tmp_path, "fine", GOOD.format(id="fine"))
    good = GOOD.format(id="sample")
    assert edit[0] in good
    write(tmp_path, "sample", good.replace(*edit))
    problems = problems_of(tmp_path)
    assert [(p.file, p.line, p.field) for p in problems] == [("sample.yaml", line, field)]
    assert message in problems[0].message
    assert f"sample.yaml:{line}: {field}: " in str(ValidationFailed(problems))


def test_illegal_list_defaults_to_locked_and_must_block(tmp_path: Path) -> None:
    text = GOOD.format(id="sample").replace("overridable: true\n", "illegal: true\n")
    write(tmp_path, "sample", text)
    category = load_definitions(tmp_path)["sample"]
    assert category.illegal and not category.overridable
    write(tmp_path, "sample", text.replace("kind: block", "kind: allow"))
    assert [(p.line, p.field) for p in problems_of(tmp_path)] == [(5, "kind")]


def test_every_problem_in_every_file_is_reported_at_once(tmp_path: Path) -> None:
    write(tmp_path, "one", GOOD.format(id="one").replace("severity: medium", "severity: 3"))
    write(tmp_path, "two", GOOD.format(id="two").replace("kind: block\n", ""))
    write(tmp_path, "three", "id: three\ntitle: [unclosed\n")
    problems = problems_of(tmp_path)
    assert sorted((p.file, p.field) for p in problems) == [
        ("one.yaml", "severity"), ("three.yaml", ""), ("two.yaml", "kind")]
    broken = next(p for p in problems if p.file == "three.yaml")
    assert "not valid YAML" in broken.message and broken.line is not None


def test_a_folder_without_definitions_is_an_error(tmp_path: Path) -> None:
    assert "no category files found" in problems_of(tmp_path)[0].message


def test_a_broken_copy_of_the_builtin_set_names_only_the_broken_file(tmp_path: Path) -> None:
    for path in builtin_definitions_dir().glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    gambling = tmp_path / "gambling.yaml"
    gambling.write_text(gambling.read_text().replace("severity: medium", "severity: severe"))
    problems = problems_of(tmp_path)
    assert [(p.file, p.field) for p in problems] == [("gambling.yaml", "severity")]
    assert problems[0].line == gambling.read_text().splitlines().index("severity: severe") + 1
