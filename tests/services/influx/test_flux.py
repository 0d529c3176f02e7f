"""The Flux compiler: golden files, InfluxData's language server, escaping and injection."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catcher.models.conditions import AGGREGATES, RESERVED_TAGS
from catcher.models.rules import Rule, RuleSet
from catcher.services.influx import flux
from catcher.services.influx.flux import (
    CompileOptions,
    compile_rule,
    flux_duration,
    flux_float,
    flux_string,
)
from tests.support import DATA
from tests.support.flux import check_flux, decode_literal, errors, literals, skeleton

RULES = RuleSet.from_path(DATA / "rules" / "flux-rules.yaml")


KAPACITOR = CompileOptions(influxdb_url="http://sasquatch-influxdb-enterprise-data.sasquatch:8086")
"""As on Kapacitor's Flux task service, which needs from() and to() to name their InfluxDB."""


@pytest.mark.parametrize("host", ["own", "kapacitor"])
@pytest.mark.parametrize("rule_id", sorted(RULES.rules))
def test_compiled_flux_matches_golden_file(
    rule_id: str, host: str, update_test_data: bool
) -> None:
    rule = RULES.rules[rule_id]
    kapacitor = host == "kapacitor"
    golden = DATA / "flux" / ("kapacitor" if kapacitor else "") / f"{rule_id}.flux"
    text = compile_rule(rule, KAPACITOR if kapacitor else None)
    if update_test_data:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()
    if kapacitor:  # every read and write names the InfluxDB and the secret's token
        calls = re.findall(r"(?:from|experimental\.to)\(bucket: \w+[^)]*\)", text)
        assert calls and all(", host: influxHost, token: influxToken)" in c for c in calls)
        assert 'influxToken = secrets.get(key: "catcher_influxdb_token")' in text
    else:
        assert "host:" not in text and "influxToken" not in text


def test_golden_files_pass_the_flux_language_server() -> None:
    files = sorted((DATA / "flux").glob("**/*.flux"))
    assert len(files) == 2 * len(RULES)
    results = check_flux(files)
    assert {k: errors(v) for k, v in results.items()} == {str(f): [] for f in files}


def test_a_broken_template_fails_the_check(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = flux._template

    def broken(name: str) -> str:
        return (
            real(name)
            .replace("|> last()", "|> lastt()")
            .replace("|> {{aggregate}}()", "|> {{aggregate}}(colum: 1)")
        )

    monkeypatch.setattr(flux, "_template", broken)
    paths = []
    for rule_id in ("m1m3-temperature", "camera-heartbeat"):
        path = tmp_path / f"{rule_id}.flux"
        path.write_text(compile_rule(RULES.rules[rule_id]))
        paths.append(path)
    results = check_flux(paths)
    assert "undefined identifier lastt" in errors(results[str(paths[0])])
    assert any("colum" in e for e in errors(results[str(paths[0])]))
    assert "undefined identifier lastt" in errors(results[str(paths[1])])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain",
        'quote " inside',
        "back\\slash",
        "new\nline",
        "tab\t",
        "${interp}",
        "$ {",
        "${",
        "é ☃ 🚀",
        "\x00\x1f\x7f",
        'end\\"',
        '") |> drop(columns: ["_value"]) //',
    ],
)
def test_flux_string_round_trip(text: str) -> None:
    literal = flux_string(text)
    assert decode_literal(literal) == text
    assert "\n" not in literal
    assert skeleton(literal) == '"S"'  # one literal, nothing outside it


def test_durations_and_floats() -> None:
    assert [flux_duration(timedelta(seconds=s)) for s in (0, 10, 90, 300, 86400 + 61, 0.25)] == [
        "0s",
        "10s",
        "1m30s",
        "5m",
        "1d1m1s",
        "250ms",
    ]
    assert [flux_float(x) for x in (60, -20.25, 1e-7, 3e20, -1.234e-20)] == [
        "60.0",
        "(-20.25)",
        "0.0000001",
        "300000000000000000000.0",
        "(-0.00000000000000000001234)",
    ]
    with pytest.raises(ValueError, match="cannot be written"):
        flux_float(float("nan"))


HOSTILE = [
    '") |> drop(columns: ["_value"]) //',
    'a"b\\c\nd${e}',
    'x\\" + string(v: 1) + \\"',
    "// comment\r\n}",
]


def rule_with(measurement: str, field: str, tag: str, value: str, deadman: bool = False) -> Rule:
    condition: dict[str, object] = {
        "source": {
            "measurement": measurement,
            "field": field,
            "tags": {tag: value},
            "group_by": [tag],
        },
    }
    if deadman:
        condition["deadman"] = {"timeout": "5m"}
    else:
        condition["thresholds"] = {"warning": 1, "critical": 2, "held_for": "1m"}
    return Rule.model_validate({"id": "inj", "description": "d", "condition": condition})


@pytest.mark.parametrize("deadman", [False, True])
def test_hostile_strings_stay_literals(tmp_path: Path, deadman: bool) -> None:
    benign = compile_rule(rule_with("meas", "fld", "tagk", "tagv", deadman))
    paths = []
    for index, hostile in enumerate(HOSTILE):
        text = compile_rule(rule_with(hostile + "M", "fld", hostile + "K", hostile + "V", deadman))
        # The structure is unchanged: only the contents of literals differ.
        assert skeleton(text) == skeleton(benign)
        # Each hostile value comes out as one literal exactly where the benign one stood.
        pairs = list(zip(literals(benign), literals(text), strict=True))
        for good, bad in (("meas", "M"), ("tagk", "K"), ("tagv", "V")):
            positions = [b for a, b in pairs if a == good]
            assert positions
            assert all(b == hostile + bad for b in positions)
        path = tmp_path / f"hostile{index}.flux"
        path.write_text(text)
        paths.append(path)
    results = check_flux(paths)
    assert {k: errors(v) for k, v in results.items()} == {str(p): [] for p in paths}


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)
tag_names = names.filter(lambda n: not n.startswith("_") and n not in RESERVED_TAGS)
levels = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_subnormal=False),
    min_size=1,
    max_size=3,
    unique=True,
)


@st.composite
def random_rules(draw: st.DrawFn) -> Rule:
    tags = draw(st.dictionaries(tag_names, names, max_size=2))
    group_by = draw(st.lists(tag_names, max_size=2, unique=True))
    field = draw(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,19}(\[[0-9]{1,3}\])?", fullmatch=True))
    source = {"measurement": draw(names), "field": field, "tags": tags, "group_by": group_by}
    condition: dict[str, object] = {
        "source": source,
        "window": draw(st.integers(1, 7200)),
        "aggregate": draw(st.sampled_from(AGGREGATES)),
    }
    if draw(st.booleans()):
        timeout = draw(st.integers(1, 3600))
        condition["deadman"] = {
            "timeout": timeout,
            "lookback": timeout * 2,
            "severity": draw(st.sampled_from(["WARNING", "SERIOUS", "CRITICAL"])),
        }
    else:
        values = sorted(draw(levels))
        big_is_bad = draw(st.booleans())
        ordered = values if big_is_bad else values[::-1]
        names_ = ["warning", "serious", "critical"][-len(ordered) :]
        thresholds: dict[str, object] = dict(zip(names_, ordered, strict=True))
        thresholds["big_is_bad"] = big_is_bad
        thresholds["hysteresis"] = draw(st.floats(0, 100, allow_nan=False))
        if draw(st.booleans()):
            thresholds["held_for"] = draw(st.integers(1, 600))
        condition["thresholds"] = thresholds
    schedule = {"every": draw(st.integers(1, 3600)), "offset": draw(st.integers(0, 600))}
    return Rule.model_validate(
        {
            "id": "random-rule",
            "description": "random",
            "condition": condition,
            "schedule": schedule,
        }
    )


def test_random_rules_pass_the_flux_language_server(tmp_path: Path) -> None:
    texts: list[str] = []

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(random_rules())
    def collect(rule: Rule) -> None:
        texts.append(compile_rule(rule, KAPACITOR if len(texts) % 2 else None))

    collect()
    paths = []
    for index, text in enumerate(texts):
        path = tmp_path / f"random{index}.flux"
        path.write_text(text)
        paths.append(path)
    results = check_flux(paths)
    failures = {k: errors(v) for k, v in results.items() if errors(v)}
    assert failures == {}
    assert len(results) == len(texts) >= 20


def test_an_array_element_is_read_by_its_flattened_efd_name() -> None:
    text = compile_rule(rule_with("lsst.sal.ESS.temperature", "temperatureItem[3]", "k", "v"))
    assert '"temperatureItem3"' in text and "temperatureItem[3]" not in text.split("reason")[0]
