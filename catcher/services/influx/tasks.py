"""Keep the compiled tasks in step with InfluxDB's (or Kapacitor's) /api/v2/tasks.

Catcher's tasks are the ones named ``catcher-<rule id>``; every other task is left alone.
``plan`` compares the compiled Flux with what the server holds; ``apply`` makes only the
changes the plan lists, so applying an unchanged rule set changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import urllib3
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.domain.task_create_request import TaskCreateRequest
from influxdb_client.domain.task_update_request import TaskUpdateRequest
from influxdb_client.rest import ApiException

from ...config import Config
from ...exceptions import DeployError
from ...models.rules import RuleSet
from ...redact import brief
from .flux import TASK_PREFIX, CompileOptions, compile_rule, task_name

__all__ = ["Change", "TaskSync", "desired_tasks", "plan_changes"]

Kind = Literal["create", "update", "delete", "keep", "unchanged"]


@dataclass(frozen=True)
class Change:
    """One line of a plan."""

    kind: Kind
    name: str
    reason: str
    rule_id: str | None = None
    task_id: str | None = None
    flux: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (without the Flux)."""
        return {
            "kind": self.kind,
            "task": self.name,
            "rule": self.rule_id,
            "task_id": self.task_id,
            "reason": self.reason,
        }


def desired_tasks(
    rules: RuleSet, options: CompileOptions, default_engine: str = "flux"
) -> dict[str, tuple[str, str]]:
    """Task name → (rule id, Flux) for every rule a Flux task evaluates."""
    return {
        task_name(rule): (rule.id, compile_rule(rule, options))
        for rule in rules.by_engine("flux", default_engine)
    }


def plan_changes(
    desired: dict[str, tuple[str, str]], existing: Iterable[Any], *, prune: bool
) -> list[Change]:
    """What to create, update or delete, and why; only Catcher's own tasks are considered."""
    ours = {t.name: t for t in existing if (t.name or "").startswith(TASK_PREFIX)}
    changes: list[Change] = []
    for name, (rule_id, flux) in sorted(desired.items()):
        task = ours.get(name)
        if task is None:
            changes.append(Change("create", name, "no task has this name yet", rule_id, flux=flux))
        elif task.flux != flux:
            changed = sum(
                1
                for a, b in zip(task.flux.splitlines(), flux.splitlines(), strict=False)
                if a != b
            ) + abs(len(task.flux.splitlines()) - len(flux.splitlines()))
            changes.append(
                Change(
                    "update",
                    name,
                    f"the compiled Flux differs ({changed} line(s))",
                    rule_id,
                    task.id,
                    flux,
                )
            )
        else:
            changes.append(Change("unchanged", name, "up to date", rule_id, task.id))
    for name, task in sorted(ours.items()):
        if name in desired:
            continue
        if prune:
            changes.append(
                Change("delete", name, "no rule compiles to it any more", None, task.id)
            )
        else:
            changes.append(
                Change(
                    "keep",
                    name,
                    "no rule compiles to it any more; --prune deletes it",
                    None,
                    task.id,
                )
            )
    return changes


def _server_message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "")
        return str(body.get("message") or body)
    except (ValueError, AttributeError):
        return (exc.body or exc.reason or str(exc)).strip()


class TaskSync:
    """Plans and applies changes through influxdb-client's tasks API."""

    def __init__(self, config: Config) -> None:
        token = config.influxdb_token.get_secret_value() if config.influxdb_token else ""
        self._client = InfluxDBClient(
            url=config.influxdb_url, token=token, org=config.influxdb_org, timeout=30_000
        )
        self._org = config.influxdb_org
        self._url = config.influxdb_url
        self._api = self._client.tasks_api()

    def close(self) -> None:
        """Close the client."""
        self._client.close()

    def existing(self) -> list[Any]:
        """Every task on the server (all pages)."""
        try:
            return list(self._api.find_tasks_iter(limit=100))
        except ApiException as exc:
            raise DeployError(
                f"Could not list tasks: HTTP {exc.status}: {_server_message(exc)}"
            ) from exc
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: Exception) -> DeployError:
        detail = brief(str(exc)) or type(exc).__name__
        return DeployError(
            f"Could not reach the tasks API at {brief(self._url)} (CATCHER_INFLUXDB_URL):"
            f" {type(exc).__name__}: {detail}"
        )

    def plan(self, desired: dict[str, tuple[str, str]], *, prune: bool) -> list[Change]:
        """The changes that would bring the server in step with the rules."""
        return plan_changes(desired, self.existing(), prune=prune)

    def apply(self, changes: Iterable[Change]) -> list[Change]:
        """Make the changes; returns those made. Stops at the first failure."""
        done = []
        for change in changes:
            try:
                if change.kind == "create":
                    self._api.create_task(
                        task_create_request=TaskCreateRequest(
                            flux=change.flux,
                            org=self._org or None,
                            status="active",
                            description=f"Catcher rule {change.rule_id}",
                        )
                    )
                elif change.kind == "update":
                    self._api.update_task_request(
                        change.task_id, TaskUpdateRequest(flux=change.flux)
                    )
                elif change.kind == "delete" and change.task_id is not None:
                    self._api.delete_task(change.task_id)
                else:
                    continue
            except ApiException as exc:
                what = f"rule {change.rule_id!r}" if change.rule_id else f"task {change.name!r}"
                raise DeployError(
                    f"Could not {change.kind} the task of {what}: HTTP {exc.status}:"
                    f" {_server_message(exc)}"
                ) from exc
            except (OSError, urllib3.exceptions.HTTPError) as exc:
                raise self._unreachable(exc) from None
            done.append(change)
        return done
