"""Fields of SAL telemetry records: array elements, flattened names, the schema check."""

from __future__ import annotations

import pytest

from catcher.models.rules import Rule
from catcher.services.evaluation.fields import field_problems, field_value, units_of


def test_array_elements_are_addressed_by_index() -> None:
    record = {"temperatureItem": [1.0, 2.5, 3.0], "plain": 4.0}
    assert field_value(record, "temperatureItem[1]") == 2.5
    assert field_value(record, "temperatureItem[7]") is None
    assert field_value(record, "plain") == 4.0


ESS_SCHEMA = {
    "type": "record",
    "name": "temperature",
    "fields": [
        {"name": "private_efdStamp", "type": "double"},
        {"name": "salIndex", "type": "long"},
        {"name": "temperatureItem", "type": {"type": "array", "items": "float"}},
        {"name": "location", "type": "string"},
        {"name": "numChannels", "type": ["null", "int"]},
    ],
}


def _on(field: str, measurement: str = "lsst.sal.ESS.temperature") -> Rule:
    return Rule.model_validate(
        {
            "id": f"r-{field.replace('[', '-').rstrip(']')}",
            "description": "d",
            "condition": {
                "engine": "stream",
                "source": {"measurement": measurement, "field": field},
                "thresholds": {"warning": 1},
            },
        }
    )


def test_fields_are_checked_against_the_registered_schema() -> None:
    rules = [_on(f) for f in ("temperatureItem[3]", "temperatureItem3", "numChannels")]
    schemas = {"lsst.sal.ESS.temperature": ESS_SCHEMA}
    assert field_problems(rules, schemas) == []
    problems = field_problems([_on("temperature"), _on("location")], schemas)
    assert len(problems) == 2
    assert problems[0].startswith(
        "rule 'r-temperature': lsst.sal.ESS.temperature has no number field 'temperature'"
    )
    assert "numChannels, private_efdStamp, salIndex, temperatureItem)" in problems[0]
    assert field_problems([_on("anything", "lsst.sal.X.y")], {"lsst.sal.X.y": None}) == []


def test_an_array_element_has_one_name_in_the_efd() -> None:
    source = _on("temperatureItem[3]").condition.source  # type: ignore[union-attr]
    assert (source.element, source.efd_field) == (("temperatureItem", 3), "temperatureItem3")
    plain = _on("temperatureItem3").condition.source  # type: ignore[union-attr]
    assert (plain.element, plain.efd_field) == (None, "temperatureItem3")
    for bad in ("temperatureItem[]", "temperatureItem[-1]", "a b", "x[1]y"):
        with pytest.raises(ValueError, match="a field is a name"):
            _on(bad)


def test_units_come_from_the_schema_for_fields_and_array_elements() -> None:
    schema = {
        "fields": [
            {"name": "motorCurrent", "type": {"type": "array", "items": "double"}, "units": "A"},
            {"name": "salIndex", "type": "long", "units": "unitless"},
            {"name": "raw", "type": "double"},
        ]
    }
    assert units_of(schema, "motorCurrent[2]") == "A"
    assert units_of(schema, "motorCurrent2") == "A"
    assert units_of(schema, "salIndex") is None
    assert units_of(schema, "raw") is None
    assert units_of(None, "raw") is None
