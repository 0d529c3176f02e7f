from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from catcher.broker import free_port
from catcher.cli import main
from catcher.output import format_table

GOOD = "rules:\n  - id: r\n    description: d\n    actions: [{type: webhook, url_env: HOOK}]\n"


def test_rules_validate(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    result = CliRunner().invoke(main, ["rules", "validate", str(good)])
    assert (result.exit_code, result.output) == (0, "1 rule(s) valid.\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - id: r\n    description: d\n    actions: [{type: webhook}]\n")
    result = CliRunner().invoke(main, ["rules", "validate", str(good), str(bad)])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: Invalid rules:\n{bad}: rule 'r': actions[0]: give")


def test_worker_refuses_to_start_without_what_the_rules_need(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(GOOD)
    monkeypatch.delenv("HOOK", raising=False)
    result = CliRunner().invoke(main, ["worker", "--rules", str(rules)])
    assert result.exit_code == 1
    assert result.output == (
        "Error: The rules need settings that are missing:\n"
        "  rule 'r' action 'webhook': set HOOK to the webhook URL.\n"
    )


def test_bad_configuration_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "TLS")
    result = CliRunner().invoke(main, ["history"])
    assert result.exit_code == 1
    assert result.output.startswith(
        "Error: Invalid configuration (KAFKA_*):\n  KAFKA_SECURITY_PROTOCOL:"
    )


def test_trigger_checks_the_rule_exists(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(GOOD)
    result = CliRunner().invoke(
        main, ["trigger", "nope", "--severity", "warning", "--rules", str(rules)]
    )
    assert result.exit_code == 1
    assert "No rule 'nope' in" in result.output
    result = CliRunner().invoke(
        main, ["trigger", "r", "--severity", "LOUD", "--rules", str(rules)]
    )
    assert result.exit_code == 2
    result = CliRunner().invoke(
        main, ["trigger", "r", "--severity", "WARNING", "--tag", "novalue", "--rules", str(rules)]
    )
    assert result.exit_code == 2
    assert "'novalue' is not KEY=VALUE" in result.output


def test_format_table() -> None:
    assert format_table(("a", "bb"), [["xyz", "1"], ["q", ""]]) == ("a    bb\n---  --\nxyz  1\nq")


def test_unreachable_broker_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(GOOD)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    result = CliRunner().invoke(
        main, ["trigger", "r", "--severity", "WARNING", "--rules", str(rules)]
    )
    assert result.exit_code == 1
    assert result.output.startswith(
        "Error: Could not talk to Kafka at the configured KAFKA_BOOTSTRAP_SERVERS:"
    )


def test_rules_compile_writes_one_task_per_rule_with_a_condition(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        GOOD + "  - id: hot\n    description: d\n    condition:\n"
        "      source: {measurement: m, field: f}\n      thresholds: {critical: 3}\n"
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["rules", "compile", str(rules), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["hot.flux"]
    assert (
        'option task = {name: "catcher-hot", every: 1m, offset: 0s}'
        in (out / "hot.flux").read_text()
    )


def test_worker_refuses_to_start_without_a_webhook_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(GOOD.replace("url_env: HOOK", "url_env: HOOK, token_env: HOOK_TOKEN"))
    monkeypatch.setenv("HOOK", "http://127.0.0.1:9/hook")
    monkeypatch.delenv("HOOK_TOKEN", raising=False)
    result = CliRunner().invoke(main, ["worker", "--rules", str(rules)])
    assert result.exit_code == 1
    assert "rule 'r' action 'webhook': set HOOK_TOKEN to the webhook's token." in result.output


def test_rules_compile_says_what_it_skips_and_fails_when_nothing_compiles(
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(GOOD)
    result = CliRunner().invoke(main, ["rules", "compile", str(rules)])
    assert result.exit_code == 1
    assert "Skipped 1 rule(s) without a condition" in result.output
    assert "No rule has a condition, so there is nothing to compile." in result.output


def test_the_examples_compile(tmp_path: Path) -> None:
    examples = Path(__file__).resolve().parent.parent / "examples" / "rules"
    result = CliRunner().invoke(main, ["rules", "compile", str(examples), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("*.flux")) == [
        "example-camera-heartbeat.flux",
        "example-m1m3-glycol-temperature.flux",
    ]


def test_rules_compile_skips_stream_rules_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    condition = (
        "    condition:\n{engine}"
        "      source: {{measurement: m, field: f}}\n"
        "      thresholds: {{warning: 1}}\n"
    )
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - id: on-stream\n    description: d\n"
        + condition.format(engine="      engine: stream\n")
        + "  - id: on-flux\n    description: d\n"
        + condition.format(engine="")
    )
    result = CliRunner().invoke(main, ["rules", "compile", str(rules)])
    assert result.exit_code == 0, result.output
    assert "Skipped 1 stream rule(s)" in result.output and "on-stream" in result.output
    assert "// ---- on-flux.flux" in result.output
    assert "// ---- on-stream.flux" not in result.output
    monkeypatch.setenv("CATCHER_DEFAULT_ENGINE", "stream")
    result = CliRunner().invoke(main, ["rules", "compile", str(rules)])
    assert result.exit_code == 1
    assert "Skipped 2 stream rule(s)" in result.output


def test_a_value_json_cannot_carry_is_refused(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(GOOD)
    for value in ("nan", "inf", "-inf", "1e999"):
        result = CliRunner().invoke(
            main,
            ["trigger", "r", "--severity", "WARNING", "--value", value, "--rules", str(rules)],
        )
        assert result.exit_code == 2, value
        assert f"'{value}' is not a finite number (JSON cannot carry it)." in result.output


def test_tasks_without_a_reachable_influxdb_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - id: r\n    description: d\n    condition:\n"
        "      source: {measurement: m, field: f}\n      thresholds: {warning: 1}\n"
        "    actions: [{type: webhook, url: 'http://x'}]\n"
    )
    monkeypatch.setenv("CATCHER_INFLUXDB_URL", f"http://127.0.0.1:{free_port()}")
    for command in ("plan", "apply"):
        result = CliRunner().invoke(main, ["tasks", command, "--rules", str(rules)])
        assert result.exit_code == 1, result.output
        assert result.output.startswith("Error: Could not reach the tasks API at http://127.0.0.1")
        assert "(CATCHER_INFLUXDB_URL)" in result.output
        assert len(result.output.splitlines()) == 1


@pytest.mark.timeout(30)  # aiokafka's own default would wait 40 s for each request
def test_a_broker_that_never_answers_fails_a_command_in_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as silent:  # the kernel accepts connections; nobody answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{silent.getsockname()[1]}")
        result = CliRunner().invoke(main, ["history"])
    assert result.exit_code == 1
    assert result.output.startswith(
        "Error: Could not talk to Kafka at the configured KAFKA_BOOTSTRAP_SERVERS:"
    )
    assert len(result.output.splitlines()) == 1
