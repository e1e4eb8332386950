"""YAML documents checked against a JSON Schema, with errors that name the file, line and field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml


@dataclass(frozen=True)
class SchemaProblem:
    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.field or '(top level)'}: {self.message}"


class ValidationFailed(ValueError):
    """One or more problems in a YAML document; ``str()`` lists them one per line."""

    def __init__(self, problems: list[SchemaProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _line_of(node: yaml.Node | None, path: list[str | int]) -> int | None:
    """Line (1-based) of the node at ``path``, or of its nearest existing parent."""
    line = node.start_mark.line + 1 if node is not None else None
    for step in path:
        if isinstance(node, yaml.MappingNode):
            found = None
            for key_node, value_node in node.value:
                if key_node.value == step:
                    found = value_node
                    line = key_node.start_mark.line + 1
                    break
            if found is None:
                return line
            node = found
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
            if step >= len(node.value):
                return line
            node = node.value[step]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _field_name(path: list[str | int]) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


def _describe(error: jsonschema.ValidationError) -> tuple[list[str | int], str]:
    path = list(error.absolute_path)
    if error.validator == "required":
        missing = str(error.message).split("'")[1] if "'" in error.message else error.message
        return [*path, missing], "is required"
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return [*path, extra[0] if extra else ""], "is not a known field"
    if error.validator == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        return path, f"must be one of: {allowed} (got {error.instance!r})"
    if error.validator == "type":
        return path, f"must be of type {error.validator_value} (got {type(error.instance).__name__})"
    if error.validator == "pattern":
        hint = error.schema.get("description", f"the pattern {error.validator_value}")
        return path, f"must match {hint} (got {error.instance!r})"
    return path, error.message


def load_validated_yaml(path: Path, schema: dict[str, Any], display_name: str | None = None) -> Any:
    """Parse ``path`` and validate it against ``schema``; raise :class:`ValidationFailed`."""
    name = display_name or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationFailed([SchemaProblem(name, None, "", f"cannot read: {exc}")]) from exc
    return validate_yaml_text(text, schema, name)


def validate_yaml_text(text: str, schema: dict[str, Any], name: str) -> Any:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ValidationFailed([SchemaProblem(name, line, "", f"not valid YAML: {problem}")]) from exc
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        field_path, message = _describe(error)
        problems.append(SchemaProblem(name, _line_of(node, field_path), _field_name(field_path), message))
    if problems:
        raise ValidationFailed(problems)
    return data


def line_of_field(text: str, path: list[str | int]) -> int | None:
    """Line of a field in a YAML text, for errors found after schema validation."""
    return _line_of(yaml.compose(text, Loader=yaml.SafeLoader), path)
