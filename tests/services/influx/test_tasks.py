"""`catcher tasks plan/apply` against a fake /api/v2/tasks (real HTTP on loopback)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from catcher.fakes.influx_tasks import FakeTasksApi

RULES = """
rules:
  - id: hot
    description: Too hot.
    condition:
      source: {measurement: m1, field: t}
      thresholds: {critical: LEVEL}
  - id: quiet
    description: No data.
    condition:
      source: {measurement: m2, field: x, group_by: [salIndex]}
      deadman: {timeout: 5m}
  - id: by-hand
    description: No condition, so no task.
"""


@pytest_asyncio.fixture
async def api() -> AsyncIterator[FakeTasksApi]:
    async with FakeTasksApi() as fake:
        yield fake


async def catcher(
    api: FakeTasksApi, rules: Path, *args: str, token: str | None = None
) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CATCHER_", "KAFKA_"))}
    env.update(
        CATCHER_INFLUXDB_URL=api.url,
        CATCHER_INFLUXDB_TOKEN=token or api.token,
        CATCHER_INFLUXDB_ORG=api.org,
        CATCHER_RULES_PATH=str(rules),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "catcher",
        "tasks",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def write(tmp_path: Path, level: str = "30", text: str = RULES) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text.replace("LEVEL", level))
    return path


def plan(out: str) -> list[tuple[str, str]]:
    return [(row["kind"], row["task"]) for row in map(json.loads, out.splitlines())]


@pytest.mark.asyncio
async def test_create_then_nothing_to_do(api: FakeTasksApi, tmp_path: Path) -> None:
    rules = write(tmp_path)
    code, out, err = await catcher(api, rules, "plan", "--json")
    assert code == 0, err
    assert plan(out) == [("create", "catcher-hot"), ("create", "catcher-quiet")]
    assert api.writes() == 0  # plan changes nothing
    code, out, err = await catcher(api, rules, "apply")
    assert code == 0, err
    assert "Created 2, updated 0, deleted 0 task(s); 0 unchanged." in out
    assert sorted(t["name"] for t in api.tasks.values()) == ["catcher-hot", "catcher-quiet"]
    assert all(t["status"] == "active" and t["org"] == "rubin" for t in api.tasks.values())
    hot = next(t for t in api.tasks.values() if t["name"] == "catcher-hot")
    assert (hot["every"], hot["offset"]) == ("1m", "0s")
    writes = api.writes()
    code, out, _ = await catcher(api, rules, "apply")
    assert code == 0
    assert "Created 0, updated 0, deleted 0 task(s); 2 unchanged." in out
    assert api.writes() == writes  # an unchanged rule set changes nothing


@pytest.mark.asyncio
async def test_update_keep_and_prune_leave_foreign_tasks_alone(
    api: FakeTasksApi, tmp_path: Path
) -> None:
    foreign = [
        api.add(f'option task = {{name: "ops-{n}", every: 1h}}\nfrom(bucket: "x")')
        for n in range(150)
    ]  # two pages of someone else's tasks first
    rules = write(tmp_path)
    assert (await catcher(api, rules, "apply"))[0] == 0
    assert len(api.tasks) == 152
    rules = write(tmp_path, level="35")
    code, out, _ = await catcher(api, rules, "plan", "--json")
    assert plan(out) == [("update", "catcher-hot"), ("unchanged", "catcher-quiet")]
    assert (await catcher(api, rules, "apply"))[0] == 0
    hot = next(t for t in api.tasks.values() if t["name"] == "catcher-hot")
    assert "35.0" in hot["flux"]
    only_hot = write(tmp_path, level="35", text=RULES.split("  - id: quiet", maxsplit=1)[0])
    code, out, _ = await catcher(api, only_hot, "plan", "--json")
    assert plan(out) == [("unchanged", "catcher-hot"), ("keep", "catcher-quiet")]
    before = api.count("DELETE")
    assert (await catcher(api, only_hot, "apply"))[0] == 0
    assert api.count("DELETE") == before  # without --prune nothing is deleted
    code, out, _ = await catcher(api, only_hot, "apply", "--prune")
    assert code == 0
    assert "Created 0, updated 0, deleted 1 task(s); 1 unchanged." in out
    assert api.count("DELETE") == before + 1
    names = {t["name"] for t in api.tasks.values()}
    assert names == {"catcher-hot"} | {t["name"] for t in foreign}


@pytest.mark.asyncio
async def test_server_errors_name_the_rule(api: FakeTasksApi, tmp_path: Path) -> None:
    rules = write(tmp_path)
    api.inject(
        status=400,
        method="POST",
        path_prefix="/api/v2/tasks",
        body='{"code": "invalid", "message": "compilation failed: error at @3:1-3:5"}',
    )
    code, _, err = await catcher(api, rules, "apply")
    assert code == 1
    assert err.strip() == (
        "Error: Could not create the task of rule 'hot': HTTP 400: compilation failed:"
        " error at @3:1-3:5"
    )
    code, _, err = await catcher(api, rules, "plan", token="wrong-token")
    assert code == 1
    assert "Could not list tasks: HTTP 401: unauthorized access" in err
