"""The compiler: one Flux task per rule, from the templates in ``flux/``.

Every value a user wrote reaches Flux as a literal made here: strings through
:func:`flux_string` (escaped, never spliced into code), durations and numbers from validated
values. The templates hold the code; the compiler only fills their ``{{name}}`` slots.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from ...models.conditions import Condition
from ...models.enums import Severity
from ...models.rules import Rule
from ...resources import read_resource

__all__ = [
    "CompileOptions",
    "compile_rule",
    "flux_duration",
    "flux_float",
    "flux_string",
    "render_template",
    "task_name",
]

TASK_PREFIX = "catcher-"
"""Catcher's tasks are named ``catcher-<rule id>``; tasks sync leaves every other task alone."""

_SLOT = re.compile(r"\{\{(\w+)\}\}")


@dataclass(frozen=True)
class CompileOptions:
    """Where tasks read and write."""

    source_bucket: str = "efd/autogen"
    trigger_bucket: str = "catcher/autogen"
    trigger_measurement: str = "catcher_triggers"
    state_lookback: timedelta = timedelta(days=7)
    influxdb_url: str = ""
    """The InfluxDB the tasks read and write, named in each ``from``/``to`` with the task host's
    secret :data:`TOKEN_SECRET` (Kapacitor's Flux tasks need both); empty: the host's own."""

    @classmethod
    def of(cls, config: Any) -> CompileOptions:
        """The options a configuration gives (``CATCHER_SOURCE_BUCKET`` and so on)."""
        return cls(
            source_bucket=config.source_bucket,
            trigger_bucket=config.trigger_bucket,
            trigger_measurement=config.trigger_measurement,
            influxdb_url=config.tasks_influxdb_url,
        )


TOKEN_SECRET = "catcher_influxdb_token"  # noqa: S105 - the secret's name, not its value
"""The task host's secret holding the InfluxDB credentials (``[fluxtask.secrets]`` in
Kapacitor, the organization's secrets in InfluxDB 2.x), read by ``secrets.get``."""


def _connection(options: CompileOptions) -> dict[str, str]:
    if not options.influxdb_url:
        return {
            "connection": "// from() and to() use the task host's own InfluxDB (InfluxDB 2.x).",
            "connection_args": "",
        }
    return {
        "connection": "\n".join(
            [
                "// The InfluxDB this task reads and writes, and its credentials (a secret).",
                f"influxHost = {flux_string(options.influxdb_url)}",
                f"influxToken = secrets.get(key: {flux_string(TOKEN_SECRET)})",
            ]
        ),
        "connection_args": ", host: influxHost, token: influxToken",
    }


def flux_string(text: str) -> str:
    """A Flux string literal that reads back as ``text``, whatever it holds."""
    out = ['"']
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            out.append("\\\\")
        elif char == '"':
            out.append('\\"')
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif char == "$" and text[index + 1 : index + 2] == "{":
            out.append("\\${")  # ${ starts an interpolation in Flux strings
            index += 1
        elif ord(char) < 0x20 or ord(char) == 0x7F:  # noqa: PLR2004 - control characters
            out.append("".join(f"\\x{b:02x}" for b in char.encode()))
        else:
            out.append(char)
        index += 1
    out.append('"')
    return "".join(out)


def flux_duration(value: timedelta) -> str:
    """A Flux duration literal (whole seconds when possible)."""
    micros = round(value.total_seconds() * 1_000_000)
    if micros < 0:
        raise ValueError("a Flux duration here cannot be negative")
    if micros % 1_000_000 == 0:
        seconds = micros // 1_000_000
        parts = []
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
            count, seconds = divmod(seconds, size)
            if count:
                parts.append(f"{count}{unit}")
        return "".join(parts) or "0s"
    if micros % 1000 == 0:
        return f"{micros // 1000}ms"
    return f"{micros}us"


def flux_float(value: float) -> str:
    """A Flux float literal (negative values in parentheses)."""
    if not math.isfinite(value):
        raise ValueError(f"{value} cannot be written in Flux")
    text = repr(float(value))
    if "e" in text or "E" in text:  # Flux float literals have no exponent
        text = format(Decimal(text), "f")
        text += "" if "." in text else ".0"
    return f"({text})" if text.startswith("-") else text


def task_name(rule: Rule) -> str:
    """The task's name."""
    return TASK_PREFIX + rule.id


def render_template(template: str, values: dict[str, str]) -> str:
    """Fill a template's ``{{name}}`` slots; every slot and every value must be used."""
    slots = set(_SLOT.findall(template))
    if slots != set(values):
        missing = ", ".join(sorted(slots - set(values))) or "none"
        unused = ", ".join(sorted(set(values) - slots)) or "none"
        raise ValueError(f"Template slots do not match: missing {missing}; unused {unused}.")
    return _SLOT.sub(lambda m: values[m.group(1)], template)


def _template(name: str) -> str:
    return read_resource("flux", f"{name}.flux")


def _list(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def _strings(items: list[str]) -> str:
    return _list([flux_string(i) for i in items])


def _source_rows(condition: Condition, indent: int) -> str:
    """The source's rows, whether its series columns are tags or fields.

    Sasquatch's Telegraf writes every Avro field as a field (``salIndex`` included), other
    databases such columns as tags: the value and the series columns that are fields are
    pivoted onto one row per point, and every series column is made a string, so that both
    layouts group and filter alike.
    """
    source = condition.source
    pad = " " * indent
    field = flux_string(source.efd_field)
    columns = sorted({*source.group_by, *source.tags})
    wanted = " or ".join(f"r._field == {flux_string(f)}" for f in [source.efd_field, *columns])
    strings = "".join(
        f", {flux_string(c)}: if exists r[{flux_string(c)}] then string(v: r[{flux_string(c)}])"
        ' else ""'
        for c in columns
    )
    rows = [
        (
            f"|> filter(fn: (r) => r._measurement == {flux_string(source.measurement)} and"
            f" ({wanted}))"
        ),
        '|> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
        f"|> filter(fn: (r) => exists r[{field}])",
        f"|> map(fn: (r) => ({{r with _value: float(v: r[{field}]){strings}}}))",
        *(
            f"|> filter(fn: (r) => r[{flux_string(key)}] == {flux_string(value)})"
            for key, value in sorted(source.tags.items())
        ),
        f"|> group(columns: {_strings(list(source.group_by))})",
    ]
    return "\n".join(pad + row for row in rows)


def _common(
    rule: Rule, condition: Condition, options: CompileOptions, indent: int
) -> dict[str, str]:
    source = condition.source
    group_by = list(source.group_by)
    series = [f"{flux_string(tag + '=')} + r[{flux_string(tag)}]" for tag in sorted(group_by)]
    return {
        "task_name": flux_string(task_name(rule)),
        "every": flux_duration(rule.schedule.every),
        "offset": flux_duration(rule.schedule.offset),
        "rule_id": flux_string(rule.id),
        "source_bucket": flux_string(options.source_bucket),
        "trigger_bucket": flux_string(options.trigger_bucket),
        "trigger_measurement": flux_string(options.trigger_measurement),
        "source_rows": _source_rows(condition, indent),
        "series_columns": "\n".join(
            f"{' ' * 16}{flux_string(tag)}: r[{flux_string(tag)}]," for tag in group_by
        ),
        "series_expression": ' + "," + '.join(series) if series else '""',
        "tag_columns": _strings(["_measurement", "rule_id", *group_by]),
        **_connection(options),
    }


def _threshold_values(rule: Rule, condition: Condition, options: CompileOptions) -> dict[str, str]:
    thresholds = condition.thresholds
    assert thresholds is not None  # the caller checked
    group_by = list(condition.source.group_by)
    keep = _strings([*group_by, "kind", "x", "level"])
    hysteresis = flux_float(thresholds.hysteresis)
    if thresholds.big_is_bad:
        reached = f"x >= threshold or previousLevel >= level and x > threshold - {hysteresis}"
        extreme = "min"
    else:
        reached = f"x <= threshold or previousLevel >= level and x < threshold + {hysteresis}"
        extreme = "max"
    chain = " else ".join(
        f"if reached(x: x, threshold: {flux_float(level)}, previousLevel: previousLevel,"
        f" level: {int(severity)}) then {int(severity)}"
        for severity, level in thresholds.levels()
    )
    held = ""
    streams = ["current", "previous"]
    if thresholds.held_for is not None:
        held = (
            "held =\n"
            f"    source(start: experimental.subDuration(d: {flux_duration(thresholds.held_for)},"
            " from: evaluatedAt))\n"
            f"        |> {extreme}()\n"
            '        |> map(fn: (r) => ({r with kind: "held", x: float(v: r._value), level: 0}))\n'
            f"        |> keep(columns: {keep})\n"
        )
        streams = ["current", "held", "previous"]
    prefix = (
        f"{condition.aggregate} of {condition.source.measurement}.{condition.source.field}"
        f" over {flux_duration(condition.window)} is "
    )
    return {
        **_common(rule, condition, options, indent=8),
        "window": flux_duration(condition.window),
        "group_by": _strings(group_by),
        "aggregate": condition.aggregate,
        "keep_columns": keep,
        "held_stream": held,
        "state_lookback": "-" + flux_duration(options.state_lookback),
        "reached_expression": reached,
        "level_expression": f"{chain} else 1",
        "streams": _list(streams),
        "reason_prefix": flux_string(prefix),
    }


def _deadman_values(rule: Rule, condition: Condition, options: CompileOptions) -> dict[str, str]:
    deadman = condition.deadman
    assert deadman is not None  # the caller checked
    severity = Severity(deadman.severity)
    prefix = f"last point of {condition.source.measurement}.{condition.source.field} was "
    return {
        **_common(rule, condition, options, indent=4),
        "timeout": flux_duration(deadman.timeout),
        "lookback": flux_duration(deadman.lookback),
        "deadman_level": str(int(severity)),
        "deadman_severity": flux_string(severity.name),
        "reason_prefix": flux_string(prefix),
    }


def compile_rule(rule: Rule, options: CompileOptions | None = None) -> str:
    """The Flux task of a rule with a condition."""
    options = options or CompileOptions()
    condition = rule.condition
    if condition is None:
        raise ValueError(f"Rule {rule.id!r} has no condition to compile; it fires by hand only.")
    if condition.thresholds is not None:
        text = render_template(_template("threshold"), _threshold_values(rule, condition, options))
    else:
        text = render_template(_template("deadman"), _deadman_values(rule, condition, options))
    # An empty slot on a line of its own leaves a blank line: drop those.
    return re.sub(r"\n[ ]*\n(?=[ ]+\|>)", "\n", text)
