"""Fields of SAL telemetry records: how a rule names one, and whether a schema has it.

SAL arrays (``motorCurrent`` double[6], ESS ``temperatureItem`` float[16]) are addressed
as ``name[i]``, or by the EFD's flattened ``name{i}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ...models.rules import Rule

__all__ = ["field_problems", "field_value", "units_of"]

_FLATTENED = re.compile(r"(?P<name>.*?)(?P<index>\d+)")


def field_value(record: dict[str, Any], field: str) -> Any:
    """A record's field.

    ``name[i]``, or the EFD's flattened ``name{i}``, is element ``i`` of the SAL array
    ``name``.
    """
    if field.endswith("]") and "[" in field:
        name, _, index = field[:-1].partition("[")
    elif field in record:
        return record[field]
    elif found := _FLATTENED.fullmatch(field):
        name, index = found["name"], found["index"]
    else:
        return None
    array = record.get(name)
    if isinstance(array, list) and index.isdigit() and int(index) < len(array):
        return array[int(index)]
    return None


_NUMBERS = {"int", "long", "float", "double"}


def _numeric(avro_type: Any) -> bool:
    if isinstance(avro_type, list):  # a union, e.g. ["null", "double"]
        return any(_numeric(t) for t in avro_type if t != "null")
    if isinstance(avro_type, dict):
        return avro_type.get("type") in _NUMBERS
    return avro_type in _NUMBERS


def _array_of_numbers(avro_type: Any) -> bool:
    if isinstance(avro_type, list):
        return any(_array_of_numbers(t) for t in avro_type if t != "null")
    return (
        isinstance(avro_type, dict)
        and avro_type.get("type") == "array"
        and _numeric(avro_type.get("items"))
    )


def field_problems(
    rules: Iterable[Rule], schemas: Mapping[str, dict[str, Any] | None]
) -> list[str]:
    """What the telemetry topics' registered schemas say against the stream rules' fields.

    A topic without a registered schema (``None``) cannot be checked and is not a problem.
    """
    problems = []
    for rule in rules:
        assert rule.condition is not None
        source = rule.condition.source
        schema = schemas.get(source.measurement)
        if schema is None:
            continue
        fields = {f["name"]: f["type"] for f in schema.get("fields", []) if "name" in f}
        element = source.element
        if element is None and source.field in fields and _numeric(fields[source.field]):
            continue
        flattened = _FLATTENED.fullmatch(source.field)
        array = element[0] if element else flattened["name"] if flattened else None
        if array is not None and array in fields and _array_of_numbers(fields[array]):
            continue
        known = ", ".join(
            sorted(n for n, t in fields.items() if _numeric(t) or _array_of_numbers(t))
        )
        problems.append(
            f"rule {rule.id!r}: {source.measurement} has no number field {source.field!r}"
            f" (its schema's numbers and arrays of numbers: {known or 'none'})"
        )
    return problems


def units_of(schema: dict[str, Any] | None, field: str) -> str | None:
    """The units a telemetry schema gives a rule's field (an array's for its elements).

    SAL's Avro schemas carry ``units`` on each field; ``unitless`` and none give None.
    """
    if schema is None:
        return None
    flattened = _FLATTENED.fullmatch(field)
    names = {field, field.partition("[")[0], flattened["name"] if flattened else field}
    for entry in schema.get("fields", []):
        if entry.get("name") in names:
            units = entry.get("units")
            if isinstance(units, str) and units and units != "unitless":
                return units
    return None
