"""`JsonMatch`: grades answers that should be JSON (extraction tasks, structured output).

Three checks, in order: the answer parses as JSON (taken from a ```json fence, or the first
JSON object or array in the text); it validates against a JSON Schema (given, or derived
from a dict reference: an object with the reference's keys required, each of its value's
type); its fields equal the reference's (numbers numerically, strings ignoring case and
whitespace).

Schemas are checked with the ``jsonschema`` package when it is installed (any draft it
knows). Without it, `schema_errors` checks a documented subset: ``type`` (a name or a list
of names), ``enum``, ``const``, ``required``, ``properties``, ``additionalProperties:
false``, ``items``, ``minItems``/``maxItems``, ``minimum``/``maximum``; other keywords are
ignored (never reported as errors).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import ConfigError
from aigw_lab.scorers.base import Score, Scorer

if TYPE_CHECKING:
    from aigw_lab.datasets.items import DatasetItem
    from aigw_lab.types import ChatResponse

__all__ = ["JsonMatch", "extract_json", "schema_errors", "schema_from_reference"]

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_DECODER = json.JSONDecoder()
_NOT_FOUND = object()


def extract_json(text: str) -> Any:
    """The JSON value in ``text``: the whole text, else a fenced ```json block, else the
    first object or array that parses. Raises ``ValueError`` when there is none."""
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    for block in _FENCE.findall(text):
        try:
            return json.loads(block)
        except ValueError:
            continue
    for start, char in enumerate(text):
        if char in "{[":
            try:
                return _DECODER.raw_decode(text, start)[0]
            except ValueError:
                continue
    raise ValueError("no JSON object or array in the answer")


_TYPE_OF = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}


def _type_name(value: Any) -> str:
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "array"
    return _TYPE_OF.get(type(value), "string")


def schema_from_reference(reference: Any) -> dict[str, Any]:
    """A JSON Schema a reference value satisfies: for a dict, an object requiring its keys,
    each typed like the reference's value (integers accept any number: "34.0" is fine)."""
    kind = _type_name(reference)
    if kind in ("integer", "number"):
        return {"type": "number"}
    if kind == "object":
        return {
            "type": "object",
            "required": list(reference),
            "properties": {key: schema_from_reference(v) for key, v in reference.items()},
        }
    if kind == "array":
        return (
            {"type": "array", "items": schema_from_reference(reference[0])}
            if reference
            else {"type": "array"}
        )
    return {"type": kind}


def _is_type(value: Any, name: str) -> bool:
    actual = _type_name(value)
    if name == "number":
        return actual in ("integer", "number")
    if name == "integer":
        return actual == "integer" or (actual == "number" and float(value).is_integer())
    return actual == name


def schema_errors(schema: Mapping[str, Any], value: Any, path: str = "$") -> list[str]:
    """Errors of ``value`` against ``schema`` under the subset described in the module doc
    (the fallback when ``jsonschema`` is not installed); empty when it validates."""
    errors: list[str] = []
    wanted = schema.get("type")
    if wanted is not None:
        names = [wanted] if isinstance(wanted, str) else list(wanted)
        if not any(_is_type(value, n) for n in names):
            return [f"{path}: expected {' or '.join(names)}, got {_type_name(value)}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']!r}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: {value!r} is not {schema['const']!r}")
    if isinstance(value, Mapping):
        errors += [
            f"{path}: missing {key!r}" for key in schema.get("required", ()) if key not in value
        ]
        properties = schema.get("properties") or {}
        for key, sub in properties.items():
            if key in value:
                errors += schema_errors(sub, value[key], f"{path}.{key}")
        if schema.get("additionalProperties") is False:
            errors += [f"{path}: unexpected {key!r}" for key in value if key not in properties]
    if isinstance(value, list):
        if "items" in schema and isinstance(schema["items"], Mapping):
            for i, element in enumerate(value):
                errors += schema_errors(schema["items"], element, f"{path}[{i}]")
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{path}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{path}: more than {schema['maxItems']} items")
    if _type_name(value) in ("integer", "number"):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: {value} is above the maximum {schema['maximum']}")
    return errors


def _jsonschema_validator(schema: Mapping[str, Any]) -> Any:
    """A ``jsonschema`` validator for ``schema``, or None when the package is missing."""
    try:
        # lazy: optional: jsonschema validates only when installed
        import jsonschema
    except ImportError:
        return None
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError(
            f"the JSON Schema is invalid: {exc.message}", hint="fix the schema given to JsonMatch"
        ) from exc
    return cls(schema)


def _same(got: Any, expected: Any, rel_tol: float) -> bool:
    if isinstance(expected, bool) or isinstance(got, bool):
        return got is expected
    if isinstance(expected, (int, float)):
        if isinstance(got, str):
            try:
                got = float(got.replace(",", ""))
            except ValueError:
                return False
        return isinstance(got, (int, float)) and math.isclose(got, expected, rel_tol=rel_tol)
    if isinstance(expected, str):
        return isinstance(got, str) and " ".join(got.lower().split()) == " ".join(
            expected.lower().split()
        )
    if isinstance(expected, Mapping):
        return (
            isinstance(got, Mapping)
            and set(got) >= set(expected)
            and all(_same(got[k], v, rel_tol) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(got, list)
            and len(got) == len(expected)
            and all(_same(g, e, rel_tol) for g, e in zip(got, expected, strict=True))
        )
    return bool(got == expected)


class JsonMatch(Scorer):
    """Grades a JSON answer (see the module doc).

    ``schema``: a JSON Schema the answer must satisfy; without one and with
    ``derive_schema``, one is derived from a dict or list reference. ``compare``: compare
    ``fields`` (default: ``item.metadata["fields"]``, else the reference's keys) with the
    reference. The value is 1.0 when everything checked passes, else 0.0, or with
    ``partial=True`` the fraction of fields that match; the label names the first failure
    (``invalid_json``, ``schema_mismatch``, ``field_mismatch``).
    """

    def __init__(
        self,
        schema: Mapping[str, Any] | None = None,
        *,
        derive_schema: bool = True,
        compare: bool = True,
        fields: Sequence[str] | None = None,
        partial: bool = False,
        rel_tol: float = 1e-6,
        name: str = "json",
    ) -> None:
        if schema is not None and not isinstance(schema, Mapping):
            raise ConfigError(
                f"JsonMatch schema is a {type(schema).__name__}",
                hint='pass a JSON Schema dict, e.g. {"type": "object", "required": ["name"]}',
            )
        self.schema = dict(schema) if schema is not None else None
        self.derive_schema = derive_schema
        self.compare = compare
        self.fields = tuple(fields) if fields is not None else None
        self.partial = partial
        self.rel_tol = rel_tol
        self.name = name
        # Built once for a fixed schema; derived schemas are checked with the subset.
        self._validator = _jsonschema_validator(self.schema) if self.schema is not None else None

    def score(self, item: DatasetItem, response: ChatResponse) -> Score:
        try:
            answer = extract_json(response.text)
        except ValueError as exc:
            return Score(self.name, 0.0, label="invalid_json", comment=str(exc))
        reference = item.reference
        if isinstance(reference, str) and reference.lstrip()[:1] in ("{", "["):
            try:
                reference = json.loads(reference)
            except ValueError:
                pass
        errors = self._schema_errors(reference, answer)
        if errors:
            return Score(
                self.name,
                0.0,
                label="schema_mismatch",
                comment="; ".join(errors[:5]),
                details={"errors": errors[:20]},
            )
        if not self.compare or not isinstance(reference, (Mapping, list)):
            return Score(self.name, 1.0, label="valid_json")
        if isinstance(reference, list) or not isinstance(answer, Mapping):
            ok = _same(answer, reference, self.rel_tol)
            return Score(self.name, 1.0 if ok else 0.0, label="correct" if ok else "field_mismatch")
        keys = self.fields or tuple(item.metadata.get("fields") or reference)
        wrong = [
            key
            for key in keys
            if not _same(answer.get(key, _NOT_FOUND), reference.get(key), self.rel_tol)
        ]
        matched = (len(keys) - len(wrong)) / len(keys) if keys else 1.0
        value = matched if self.partial else (0.0 if wrong else 1.0)
        details = {"fields_matched": matched, "mismatched": wrong}
        return Score(
            self.name, value, label="field_mismatch" if wrong else "correct", details=details
        )

    def _schema_errors(self, reference: Any, answer: Any) -> list[str]:
        schema = self.schema
        if schema is None:
            if not self.derive_schema or not isinstance(reference, (Mapping, list)):
                return []
            return schema_errors(schema_from_reference(reference), answer)
        if self._validator is not None:
            return [
                f"${''.join(f'[{p!r}]' for p in err.absolute_path)}: {err.message}"
                for err in self._validator.iter_errors(answer)
            ]
        return schema_errors(schema, answer)
