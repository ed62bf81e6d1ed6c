"""JsonMatch: parsing, schemas (jsonschema and the built-in subset) and field comparison."""

from __future__ import annotations

import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.scorers import JsonMatch, extract_json
from aigw_lab.scorers.structured import schema_errors, schema_from_reference

REFERENCE = {"name": "Maria Lopez", "age": 34, "city": "Valencia"}


def test_extract_json_from_fences_and_prose():
    assert extract_json('{"a": 1}') == {"a": 1}
    assert extract_json('Here:\n```json\n{"a": 1}\n```\nDone.') == {"a": 1}
    assert extract_json('Sure! {"a": [1, 2]} is the object.') == {"a": [1, 2]}
    assert extract_json("The list: [1, 2, 3]") == [1, 2, 3]
    with pytest.raises(ValueError):
        extract_json("no json {here")


@pytest.mark.parametrize(
    ("answer", "value", "label"),
    [
        ('{"name": "Maria Lopez", "age": 34, "city": "Valencia"}', 1.0, "correct"),
        ('```json\n{"name": "maria  lopez", "age": 34.0, "city": "VALENCIA"}\n```', 1.0, "correct"),
        ('{"name": "Maria Lopez", "age": "34", "city": "Valencia"}', 0.0, "schema_mismatch"),
        ('{"name": "Maria Lopez", "age": 43, "city": "Valencia"}', 0.0, "field_mismatch"),
        ('{"name": "Maria Lopez", "city": "Valencia"}', 0.0, "schema_mismatch"),
        ("Maria Lopez, 34, Valencia", 0.0, "invalid_json"),
    ],
)
def test_json_match_against_a_dict_reference(item, respond, answer, value, label):
    score = JsonMatch().score(item(REFERENCE), respond(answer))
    assert (score.value, score.label) == (value, label), score


def test_json_match_partial_credit_and_chosen_fields(item, respond):
    answer = respond('{"name": "Maria Lopez", "age": 43, "city": "Valencia"}')
    partial = JsonMatch(partial=True).score(item(REFERENCE), answer)
    assert partial.value == pytest.approx(2 / 3)
    assert partial.details["mismatched"] == ["age"]
    only_name = JsonMatch(fields=["name", "city"]).score(item(REFERENCE), answer)
    assert only_name.value == 1.0
    from_metadata = item(REFERENCE, metadata={"fields": ["name"]})
    assert JsonMatch().score(from_metadata, answer).value == 1.0


def test_json_match_with_a_given_schema_uses_jsonschema(item, respond):
    schema = {
        "type": "object",
        "required": ["label", "confidence"],
        "properties": {
            "label": {"enum": ["spam", "ham"]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "additionalProperties": False,
    }
    scorer = JsonMatch(schema)
    assert scorer.score(item(None), respond('{"label": "spam", "confidence": 0.9}')).value == 1.0
    bad = scorer.score(item(None), respond('{"label": "eggs", "confidence": 2}'))
    assert bad.label == "schema_mismatch" and len(bad.details["errors"]) == 2
    extra = scorer.score(item(None), respond('{"label": "ham", "confidence": 0.1, "x": 1}'))
    assert extra.label == "schema_mismatch"
    with pytest.raises(ConfigError, match="JSON Schema is invalid"):
        JsonMatch({"type": "no-such-type"})


def test_the_subset_validator_agrees_on_the_documented_keywords():
    schema = {
        "type": "object",
        "required": ["tags", "n"],
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "n": {"type": ["integer", "null"], "maximum": 10},
            "kind": {"enum": ["a", "b"]},
        },
        "additionalProperties": False,
    }
    assert schema_errors(schema, {"tags": ["x"], "n": None}) == []
    assert schema_errors(schema, {"tags": ["x"], "n": 3.0}) == []  # 3.0 is an integer in JSON
    errors = schema_errors(schema, {"tags": [1], "n": 11, "kind": "c", "other": True})
    assert errors == [
        "$.tags[0]: expected string, got integer",
        "$.n: 11 is above the maximum 10",
        "$.kind: 'c' is not one of ['a', 'b']",
        "$: unexpected 'other'",
    ]
    assert schema_errors(schema, {"tags": []}) == ["$: missing 'n'", "$.tags: fewer than 1 items"]
    assert schema_errors({"type": "object"}, [1]) == ["$: expected object, got array"]


def test_a_derived_schema_types_every_reference_field():
    assert schema_from_reference(REFERENCE) == {
        "type": "object",
        "required": ["name", "age", "city"],
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "number"},
            "city": {"type": "string"},
        },
    }


def test_json_match_without_reference_checks_validity_only(item, respond):
    assert JsonMatch().score(item(None), respond("[1, 2]")).label == "valid_json"
    assert JsonMatch().score(item(None), respond("nope")).value == 0.0
    # A reference given as JSON text is parsed.
    as_text = item('{"a": 1}')
    assert JsonMatch().score(as_text, respond('{"a": 1.0}')).value == 1.0
    assert JsonMatch().score(as_text, respond('{"a": 2}')).value == 0.0
