"""``catcher alarms``: list, show, acknowledge and mute alarms through a worker's API."""

from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import quote

import click
import httpx

from ..output import format_table
from ..redact import brief
from ._common import parse_tags, settings

__all__ = ["alarms"]

_STATES = ["nominal", "active", "semi-active", "stale"]


def _call(
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    conflict_ok: bool = False,
    **params: Any,
) -> Any:
    """One API call; an error answer becomes a clear message."""
    config = settings()
    headers = {}
    if config.api_token is not None:
        headers["Authorization"] = f"Bearer {config.api_token.get_secret_value()}"
    url = config.api_url.rstrip("/") + path
    try:
        response = httpx.request(
            method,
            url,
            json=body,
            params={k: v for k, v in params.items() if v is not None},
            headers=headers,
            timeout=30,
        )
    except httpx.HTTPError as exc:
        raise click.ClickException(
            f"Could not reach the Catcher API at {config.api_url} (CATCHER_API_URL):"
            f" {brief(str(exc)) or type(exc).__name__}"
        ) from None
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.is_error and not (conflict_ok and response.status_code == httpx.codes.CONFLICT):
        raise click.ClickException(f"HTTP {response.status_code}: {_detail(data, response)}")
    return data


def _detail(data: Any, response: httpx.Response) -> str:
    if isinstance(data, dict) and "detail" in data:
        detail = data["detail"]
        if isinstance(detail, list):
            return "; ".join(
                f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail
            )
        return str(detail)
    return brief(response.text) or response.reason_phrase


def _table(alarms: list[dict[str, Any]]) -> None:
    if not alarms:
        click.echo("No alarms.")
        return
    rows = [
        (
            a["name"],
            a["state"],
            a["severity"],
            a["max_severity"],
            a["acknowledged_by"] if a["acknowledged"] else "",
            f"{a['muted_severity']} by {a['muted_by']}" if a["muted_severity"] != "NONE" else "",
            a["reason"],
        )
        for a in alarms
    ]
    header = ("NAME", "STATE", "SEVERITY", "MAX", "ACKED BY", "MUTED", "REASON")
    click.echo(format_table(header, [[str(cell) for cell in row] for row in rows]))


@click.group()
def alarms() -> None:
    """Alarms: list, show, acknowledge and mute (CATCHER_API_URL, CATCHER_API_TOKEN)."""


@alarms.command("list")
@click.option("--state", type=click.Choice(_STATES), help="Only alarms in this state.")
@click.option("--rule", "rule_id", help="Only the alarms of this rule.")
@click.option("--name", "pattern", help="Only names matching this regular expression.")
@click.option("--json", "as_json", is_flag=True, help="JSON, for programs.")
def alarms_list(
    state: str | None, rule_id: str | None, pattern: str | None, as_json: bool
) -> None:
    """List alarms (the nominal ones too unless --state says otherwise)."""
    data = _call("GET", "/alarms", state=state, rule=rule_id, name=pattern)
    if as_json:
        json.dump(data["alarms"], sys.stdout, indent=2)
        click.echo()
    else:
        _table(data["alarms"])


@alarms.command("show")
@click.argument("name")
def alarms_show(name: str) -> None:
    """Every field of one alarm."""
    data = _call("GET", f"/alarms/{name}")
    json.dump(data, sys.stdout, indent=2)
    click.echo()


def _send(command: str, body: dict[str, Any]) -> None:
    data = _call(
        "POST",
        f"/alarms/{command}",
        {k: v for k, v in body.items() if v is not None},
        conflict_ok=True,
    )
    for name in data.get("alarms", []):
        click.echo(f"{command}: sent to {name}")
    refused = data.get("refused", [])
    for refusal in refused:
        click.echo(f"{command}: refused for {refusal['name']}: {refusal['reason']}", err=True)
    if not data.get("alarms"):
        raise click.ClickException(
            f"{command} was sent to no alarm: {len(refused)} of those matched would refuse it,"
            " and a command goes to all of them or to none."
        )


_SEVERITY = click.Choice(["WARNING", "SERIOUS", "CRITICAL"], case_sensitive=False)


@alarms.command("ack")
@click.argument("pattern")
@click.option("--severity", required=True, type=_SEVERITY, help="Severity acknowledged.")
@click.option("--comment", default="", help="Why; recorded with the command.")
def alarms_ack(pattern: str, severity: str, comment: str) -> None:
    """Acknowledge the alarms whose names match PATTERN.

    PATTERN is a regular expression matched from the start of each name, as the Watcher's
    commands match: m1m3 names every alarm beginning with m1m3; end it with $ for one name.
    """
    _send("acknowledge", {"name": pattern, "severity": severity.upper(), "comment": comment})


@alarms.command("unack")
@click.argument("pattern")
@click.option("--comment", default="", help="Why; recorded with the command.")
def alarms_unack(pattern: str, comment: str) -> None:
    """Unacknowledge the alarms whose names match PATTERN."""
    _send("unacknowledge", {"name": pattern, "comment": comment})


@alarms.command("mute")
@click.argument("pattern")
@click.option("--duration", required=True, help="How long, e.g. 30m or 2h.")
@click.option("--severity", required=True, type=_SEVERITY, help="Highest severity muted.")
@click.option("--comment", default="", help="Why; recorded with the command.")
def alarms_mute(pattern: str, duration: str, severity: str, comment: str) -> None:
    """Mute the alarms whose names match PATTERN."""
    body = {"name": pattern, "duration": duration, "severity": severity.upper()}
    _send("mute", {**body, "comment": comment})


@alarms.command("disable")
@click.argument("rule_id")
@click.option("--comment", default="", help="Why; recorded with the change.")
def alarms_disable(rule_id: str, comment: str) -> None:
    """Disable RULE_ID's alarms: its triggers change none of them until enabled again.

    Its actions still run; its alarms can still be acknowledged, muted and silenced.
    """
    _rule_state(rule_id, "disable", comment)


@alarms.command("enable")
@click.argument("rule_id")
@click.option("--comment", default="", help="Why; recorded with the change.")
def alarms_enable(rule_id: str, comment: str) -> None:
    """Enable RULE_ID's alarms again (after `catcher alarms disable`)."""
    _rule_state(rule_id, "enable", comment)


@alarms.command("rules")
@click.option("--json", "as_json", is_flag=True, help="JSON, for programs.")
def alarms_rules(as_json: bool) -> None:
    """The loaded rules, and whether their alarms are enabled (and by whom, why)."""
    rules = _call("GET", "/rules")["rules"]
    if as_json:
        click.echo(json.dumps(rules, indent=2))
        return
    rows = [
        (
            r["rule_id"],
            "enabled" if r["alarms_enabled"] else "DISABLED",
            "" if r["configured"] else "off in its rules file",
            r["by"],
            r["at"] or "",
            r["comment"],
        )
        for r in rules
    ]
    header = ("RULE", "ALARMS", "CONFIGURED", "BY", "AT", "COMMENT")
    click.echo(format_table(header, [[str(cell) for cell in row] for row in rows]))


def _rule_state(rule_id: str, action: str, comment: str) -> None:
    data = _call("POST", f"/rules/{quote(rule_id, safe='')}/{action}", {"comment": comment})
    state = "enabled" if data["alarms_enabled"] else "disabled"
    click.echo(f"Alarms of {rule_id} {state} by {data['by']}.")


@alarms.command("unmute")
@click.argument("pattern")
@click.option("--comment", default="", help="Why; recorded with the command.")
def alarms_unmute(pattern: str, comment: str) -> None:
    """Unmute the alarms whose names match PATTERN."""
    _send("unmute", {"name": pattern, "comment": comment})


@alarms.group("silence")
def silence() -> None:
    """Silences: maintenance windows that mute matching alarms, present or future."""


@silence.command("add")
@click.option("--name", "pattern", help="Regular expression over whole alarm names.")
@click.option("--tag", "tags", multiple=True, metavar="K=REGEX", help="Tag match; repeatable.")
@click.option("--duration", help="How long, e.g. 2h (or give --until).")
@click.option("--until", "ends_at", help="When it ends (ISO time).")
@click.option("--starts", "starts_at", help="When it starts (ISO time; default now).")
@click.option("--comment", required=True, help="Why (required).")
def silence_add(
    *,
    pattern: str | None,
    tags: tuple[str, ...],
    duration: str | None,
    ends_at: str | None,
    starts_at: str | None,
    comment: str,
) -> None:
    """Create a silence and print its id."""
    matchers = parse_tags(tags, "K=REGEX")
    body = {
        "name": pattern,
        "tags": matchers,
        "duration": duration,
        "ends_at": ends_at,
        "starts_at": starts_at,
        "comment": comment,
    }
    data = _call("POST", "/silences", {k: v for k, v in body.items() if v not in (None, {})})
    click.echo(f"{data['id']} {data['state']} until {data['ends_at']}")


@silence.command("list")
@click.option("--state", type=click.Choice(["pending", "active", "expired"]))
@click.option("--json", "as_json", is_flag=True, help="JSON, for programs.")
def silence_list(state: str | None, as_json: bool) -> None:
    """List silences."""
    silences = _call("GET", "/silences", state=state)["silences"]
    if as_json:
        json.dump(silences, sys.stdout, indent=2)
        click.echo()
        return
    if not silences:
        click.echo("No silences.")
        return
    for s in silences:
        match = " ".join(
            ([f"name~{s['name']}"] if s["name"] else [])
            + [f"{k}~{v}" for k, v in s["tags"].items()]
        )
        click.echo(
            f"{s['id']}  {s['state']:<8} {s['starts_at']} → {s['ends_at']}  {match}"
            f"  by {s['created_by']}: {s['comment']}"
        )


@silence.command("expire")
@click.argument("silence_id")
def silence_expire(silence_id: str) -> None:
    """End a silence now."""
    data = _call("DELETE", f"/silences/{silence_id}")
    click.echo(f"{data['id']} expired")
