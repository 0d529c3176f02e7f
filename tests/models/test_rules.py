from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from catcher.exceptions import RuleError
from catcher.models.actions import NoteburstAction
from catcher.models.conditions import Condition
from catcher.models.durations import parse_duration
from catcher.models.enums import Edge, Severity
from catcher.models.rules import RuleSet

NOTEBOOK = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    (tmp_path / "nb.ipynb").write_text(NOTEBOOK)
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_rules_load_with_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
rules:
  - id: m1m3.temp
    description: M1M3 temperature.
    owner: someone
    actions:
      - type: webhook
        url: https://hooks.example.org/x
        on: {severity: serious, edge: falling}
        cooldown: 1h30m
      - type: noteburst
        notebook: nb.ipynb
        parameters: {sal_index: "{tags.salIndex}"}
""",
    )
    rules = RuleSet.from_path(path)
    rule = rules.get("m1m3.temp")
    assert rule is not None
    webhook, notebook = rule.actions
    assert webhook.name == "webhook"
    assert webhook.on.severity == Severity.SERIOUS
    assert webhook.on.edge == Edge.falling
    assert webhook.cooldown == timedelta(hours=1, minutes=30)
    assert isinstance(notebook, NoteburstAction)
    assert notebook.on.severity == Severity.WARNING
    assert notebook.on.edge == Edge.rising
    assert notebook.notebook == tmp_path / "nb.ipynb"
    assert notebook.notebook_content["nbformat"] == 4
    assert rules.action("m1m3.temp", "noteburst") is notebook
    assert rules.action("m1m3.temp", "gone") is None
    assert rules.action("gone", "webhook") is None
    assert rules.by_engine("flux", "flux") == []  # no condition: run by hand only
    assert rules.by_engine("stream", "stream") == []


def test_error_names_file_rule_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
rules:
  - id: good
    description: fine
  - id: bad-rule
    description: broken
    actions:
      - type: webhook
        url_env: HOOK
        on: {severity: LOUD}
""",
    )
    with pytest.raises(RuleError) as info:
        RuleSet.from_path(path)
    assert str(info.value) == (
        f"{path}: rule 'bad-rule': actions[0].on.severity: Unknown severity 'LOUD'; use one of"
        " NONE, WARNING, SERIOUS, CRITICAL."
    )


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ("{type: webhook}", "actions[0]: give exactly one of url, url_env"),
        ("{type: webhook, url: x, url_env: Y}", "got url, url_env"),
        ("{type: webhook, url: ftp://x}", "url must start with http:// or https://"),
        ("{type: webhook, url_env: X, body: {t: '{nope}'}}", "body.t: unknown placeholder {nope}"),
        ("{type: webhook, url_env: X, body: 'a { b'}", "unbalanced '{'"),
        ("{type: webhook, url_env: X, colour: red}", "actions[0].colour: Extra inputs"),
        ("{type: pager, url_env: X}", "does not match any of the expected tags"),
        ("{type: noteburst, notebook: missing.ipynb}", "cannot read notebook"),
        ("{type: noteburst, notebook: nb.ipynb, parameters: {1x: a}}", "Python identifiers: 1x"),
        ("{type: webhook, url_env: X, cooldown: soon}", "'soon' is not a duration"),
        (
            "{type: webhook, url_env: X, name: Bad Name}",
            "actions[0].name: use 1 to 63 lowercase letters",
        ),
    ],
)
def test_action_mistakes_are_explained(tmp_path: Path, action: str, message: str) -> None:
    path = write(tmp_path, f"rules:\n  - id: r\n    description: d\n    actions: [{action}]\n")
    with pytest.raises(RuleError) as info:
        RuleSet.from_path(path)
    text = str(info.value)
    assert text.startswith(f"{path}: rule 'r': ")
    assert message in text


def test_duplicate_action_names_and_rule_ids(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
rules:
  - id: r
    description: d
    actions:
      - {type: webhook, url_env: A}
      - {type: webhook, url_env: B}
""",
    )
    with pytest.raises(RuleError, match="two actions are named 'webhook'"):
        RuleSet.from_path(path)
    write(tmp_path, "rules:\n  - {id: r, description: one}\n", "a.yaml")
    write(tmp_path, "rules:\n  - {id: r, description: two}\n", "b.yml")
    path.unlink()
    with pytest.raises(RuleError) as info:
        RuleSet.from_path(tmp_path)
    assert (
        str(info.value)
        == f"{tmp_path / 'b.yml'}: rule 'r': id: already defined in {tmp_path / 'a.yaml'}"
    )


def test_yaml_and_path_problems(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="no such rules file or directory"):
        RuleSet.from_path(tmp_path / "nope.yaml")
    with pytest.raises(RuleError, match=r"no \*.yaml or \*.yml rules files"):
        RuleSet.from_path(tmp_path)
    path = write(tmp_path, "rules: [\n")
    with pytest.raises(RuleError, match="not valid YAML"):
        RuleSet.from_path(path)
    path = write(tmp_path, "rules:\n  - description: no id\n")
    with pytest.raises(RuleError, match="rule #1: id: Field required"):
        RuleSet.from_path(path)


def test_on_stays_a_key_and_booleans_still_work(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
rules:
  - id: r
    description: d
    actions:
      - {type: noteburst, notebook: nb.ipynb, enable_retry: false, on: {edge: any}}
""",
    )
    action = RuleSet.from_path(path).rules["r"].actions[0]
    assert isinstance(action, NoteburstAction)
    assert action.enable_retry is False
    assert action.on.edge == Edge.any


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (90, 90),
        (1.5, 1.5),
        ("30s", 30),
        ("10m", 600),
        ("1h30m", 5400),
        ("250ms", 0.25),
        ("2d", 172800),
    ],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "5", "m", "-3s", "1 fortnight", True, -1])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def condition_rule(tmp_path: Path, condition: str) -> Path:
    return write(tmp_path, f"rules:\n  - id: c\n    description: d\n    condition: {condition}\n")


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        (
            "{source: {measurement: m, field: f}, thresholds: {warning: 80, critical: 60}}",
            "thresholds: critical (60) must be above warning (80) when big_is_bad is true",
        ),
        (
            (
                "{source: {measurement: m, field: f}, thresholds: {warning: 10, serious: 20,"
                " big_is_bad: false}}"
            ),
            "serious (20) must be below warning (10) when big_is_bad is false",
        ),
        (
            "{source: {measurement: m, field: f}, thresholds: {big_is_bad: true}}",
            "set at least one of warning, serious and critical",
        ),
        ("{source: {measurement: m, field: f}}", "give exactly one of thresholds or deadman"),
        (
            "{source: {measurement: m, field: f}, deadman: {timeout: 10m, lookback: 5m}}",
            "lookback must be longer than timeout",
        ),
        (
            "{source: {measurement: m, field: f}, deadman: {timeout: 1m, severity: NONE}}",
            "severity must be WARNING, SERIOUS or CRITICAL",
        ),
        (
            "{source: {measurement: m, field: f, group_by: [severity]}, deadman: {timeout: 1m}}",
            "tag name 'severity' is reserved",
        ),
        (
            "{source: {measurement: m, field: f}, aggregate: average, deadman: {timeout: 1m}}",
            "condition.aggregate: Input should be 'mean', 'min'",
        ),
        (
            "{source: {measurement: m, field: f}, window: 0s, deadman: {timeout: 1m}}",
            "window 0 (every sample evaluated as it arrives) needs engine: stream and thresholds",
        ),
    ],
)
def test_condition_mistakes_are_explained(tmp_path: Path, condition: str, message: str) -> None:
    path = condition_rule(tmp_path, condition)
    with pytest.raises(RuleError) as info:
        RuleSet.from_path(path)
    assert str(info.value).startswith(f"{path}: rule 'c': condition")
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("condition", "span", "needed"),
    [
        ({"window": "5m", "thresholds": {"warning": 1}}, "5m", "5m"),
        ({"window": "1m", "thresholds": {"warning": 1, "held_for": "10m"}}, "10m", "10m"),
        ({"window": "1m", "deadman": {"timeout": "5m", "lookback": "1h"}}, "1m", "1h"),
        ({"window": "2h", "deadman": {"timeout": "5m", "lookback": "1h"}}, "2h", "2h"),
    ],
)
def test_how_much_history_a_condition_needs(
    condition: dict[str, object], span: str, needed: str
) -> None:
    parsed = Condition.model_validate(
        {"source": {"measurement": "lsst.sal.ESS.temperature", "field": "t"}, **condition}
    )
    assert parsed.samples_span() == parse_duration(span)
    assert parsed.history_needed() == parse_duration(needed)


HOSTILE_RULE = """rules:
  - id: {id}
    description: d
    condition:
      source: {{measurement: lsst.sal.X.y, field: temperature}}
      window: {window}
      thresholds: {{warning: {warning}}}
    actions:
      - name: {name}
        type: webhook
        url_env: {url_env}
        body: {body}
"""


def _hostile(**fields: str) -> str:
    values = {
        "id": "r1",
        "window": "1m",
        "warning": "10",
        "name": "a",
        "url_env": "X_URL",
        "body": "{text: hi}",
    }
    return HOSTILE_RULE.format(**(values | fields))


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_hostile(window=".inf"), "condition.window: a duration is at most 3650 days"),
        (_hostile(window="999999999d"), "condition.window: a duration is at most 3650 days"),
        (_hostile(window=".nan"), "condition.window: nan is not a duration"),
        (_hostile(warning=".nan"), "condition.thresholds.warning: Input should be a finite"),
        (_hostile(warning="-.inf"), "condition.thresholds.warning: Input should be a finite"),
        (_hostile(body="{v: .nan}"), "body: v: nan is not a number JSON can carry"),
        (_hostile(id='"r1\\n"'), "id: use 1 to 128 letters"),
        (_hostile(name='"a\\n"'), "actions[0].name: use 1 to 63 lowercase"),
        (_hostile(url_env='""'), "actions[0].url_env: String should match pattern"),
        (_hostile(url_env='"X_URL\\n"'), "actions[0].url_env: String should match pattern"),
        ("rules:\n  - id: r1\n    id: r2\n", "the key 'id' is given twice"),
        (
            "rules:\n  - id: r1\n    description: d\n    actions:\n      - {name: a, url: 'http://x'}\n",
            "an action needs a type: one of webhook, noteburst, ocps, times_square",
        ),
        ("", "the file is empty; write `rules:` and a list of rules"),
        ("# only a comment\n", "the file is empty"),
        ("rules: " + "[" * 5000 + "]" * 5000, "nested more than 32 levels deep"),
        (BOMB + "rules: *b\n", "aliases (*a) are not allowed in rules files"),
    ],
)
def test_hostile_rules_files_get_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RuleError) as raised:
        RuleSet.from_path(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)


def test_binary_huge_and_repeated_files_are_refused(tmp_path: Path) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x00rules: []\x89PNG")
    huge = tmp_path / "huge.yaml"
    huge.write_text("rules: []\n" + "#" * (1 << 20))
    nul = tmp_path / "nul.yaml"
    nul.write_text("rules: []\x00\n")
    for path, message in (
        (binary, "not UTF-8 text (a binary file?): byte 0 cannot be read"),
        (huge, "a rules file is at most 1024 KiB"),
        (nul, "not a text file"),
    ):
        with pytest.raises(RuleError, match=re.escape(f"{path}: {message}")):
            RuleSet.from_path(path)
    good = write(tmp_path, _hostile(), "good.yaml")
    with pytest.raises(RuleError, match="given twice"):
        RuleSet.from_paths([good, tmp_path / "." / "good.yaml"])
    with pytest.raises(RuleError, match="already defined in"):
        RuleSet.from_paths([good, write(tmp_path, _hostile(), "again.yaml")])


ESCALATION = """
rules:
  - id: m1m3-temperature
    description: d
  - id: dome-wind
    description: d
    alarm:
      escalate: {responder: dome-team, delay: 2m}
escalation:
  - alarms: ["m1m3-temperature:salIndex=1", "m1m3-temperature:salIndex=1?"]
    responder: m1m3-night
    delay: 5m
  - alarms: ["m1m3-*", "dome-*"]
    responder: observing-specialists
    delay: 10m
"""


def test_the_escalation_table_pages_by_name_glob_first_match_wins(tmp_path: Path) -> None:
    rules = RuleSet.from_path(write(tmp_path, ESCALATION))

    def routed(rule_id: str, name: str) -> tuple[str, timedelta] | None:
        settings = rules.alarm_settings(rule_id, name)
        assert settings is not None
        escalate = settings.escalate
        return None if escalate is None else (escalate.responder, escalate.delay)

    m1m3 = "m1m3-temperature"
    assert routed(m1m3, f"{m1m3}:salIndex=1") == ("m1m3-night", timedelta(minutes=5))
    assert routed(m1m3, f"{m1m3}:salIndex=12") == ("m1m3-night", timedelta(minutes=5))
    assert routed(m1m3, f"{m1m3}:salIndex=2") == ("observing-specialists", timedelta(minutes=10))
    assert routed(m1m3, "other") is None  # no glob matches: no escalation
    # A rule's own escalate block comes before the table.
    assert routed("dome-wind", "dome-wind") == ("dome-team", timedelta(minutes=2))
    assert rules.alarm_settings("gone", "gone") is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[{alarms: [], responder: x, delay: 1m}]", "at least 1 item"),
        ("[{alarms: ['m1m3-*'], responder: '', delay: 1m}]", "at least 1 character"),
        ("[{alarms: ['m1m3-*'], responder: x, delay: 0s}]", "longer than zero"),
        ("[{alarms: ['m1m3-*'], responder: x, delay: 1m, pager: y}]", "Extra inputs"),
        (f"[{{alarms: ['{'*' * 501}'], responder: x, delay: 1m}}]", "1 to 500 characters"),
    ],
)
def test_a_bad_escalation_table_is_an_error_naming_it(
    tmp_path: Path, table: str, message: str
) -> None:
    text = f"rules:\n  - id: r\n    description: d\nescalation: {table}\n"
    with pytest.raises(RuleError) as error:
        RuleSet.from_path(write(tmp_path, text))
    assert "escalation" in str(error.value) and message in str(error.value)


def test_the_watchers_own_escalation_scenario(tmp_path: Path) -> None:
    """ts_watcher tests/test_model.py test_escalation: globs, case ignored, first match wins."""
    names = ["Enabled.ScriptQueue:1", "Enabled.ScriptQueue:2", "Enabled.Test:1"]
    names += ["Enabled.Test:2", "Enabled.Test:52"]
    text = (
        "rules:\n  - id: enabled\n    description: d\nescalation:\n"
        "  - {alarms: ['enabled.scriptqueue:*'], responder: chaos, delay: 110ms}\n"
        "  - {alarms: ['Enabled.Test:?'], responder: stella, delay: 120ms}\n"
        "  - {alarms: ['Enabled.NoMatch'], responder: someone, delay: 130ms}\n"
    )
    rules = RuleSet.from_path(write(tmp_path, text))
    found = []
    for name in names:
        settings = rules.alarm_settings("enabled", name)
        assert settings is not None
        found.append(settings.escalate.responder if settings.escalate else "")
    assert found == ["chaos", "chaos", "stella", "stella", ""]
