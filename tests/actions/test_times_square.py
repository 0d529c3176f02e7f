"""The Times Square client against the fake Times Square (real HTTP on loopback)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from pydantic import SecretStr

from catcher.actions.times_square import TimesSquareExecutor, query_value
from catcher.exceptions import PermanentActionError
from catcher.fakes.times_square import FakePage, FakeTimesSquare
from catcher.models.actions import TimesSquareAction
from catcher.models.enums import ActionState, Severity, TriggerSource
from catcher.models.records import LedgerEntry, Trigger


def action(**fields: object) -> TimesSquareAction:
    return TimesSquareAction.model_validate(
        {"type": "times_square", "name": "rep", "page": "p", **fields}
    )


def entry(**update: object) -> LedgerEntry:
    trigger = Trigger.create(
        "r", Severity.WARNING, reason="x", source=TriggerSource.manual, tags={"n": "3"}
    )
    return LedgerEntry(
        action_id="t.rep",
        action_name="rep",
        action_type="times_square",
        trigger=trigger,
        partition=0,
        state=ActionState.submitting,
    ).model_copy(update=update)


def test_query_values() -> None:
    assert [query_value(v) for v in (True, False, None, 2, 1.5, "x")] == [
        "true",
        "false",
        "",
        "2",
        "1.5",
        "x",
    ]


@pytest.mark.asyncio
async def test_compute_then_cached(
    times_square: FakeTimesSquare, client: httpx.AsyncClient
) -> None:
    times_square.pages["p"] = FakePage(parameters={"n": {"type": "integer"}}, run_time=0.2)
    executor = TimesSquareExecutor(client, times_square.url, SecretStr(times_square.token))
    rep = action(parameters={"n": "{tags.n}"})
    first = await executor.submit(rep, entry())
    assert not first.done
    assert first.link is not None and first.link.endswith("/pages/p/htmlstatus?n=3")
    status = await executor.poll(rep, entry(link=first.link))
    while not status.finished:
        await asyncio.sleep(0.1)
        status = await executor.poll(rep, entry(link=first.link))
    assert status.succeeded and status.link and status.link.endswith("/pages/p/html?n=3")
    cached = await executor.submit(rep, entry())  # same parameters: the same page instance
    assert cached.done
    assert times_square.executions == {"p?n=3": 1}


@pytest.mark.asyncio
async def test_unknown_page_and_missing_token(
    times_square: FakeTimesSquare, client: httpx.AsyncClient
) -> None:
    executor = TimesSquareExecutor(client, times_square.url, SecretStr(times_square.token))
    with pytest.raises(
        PermanentActionError, match="Times Square has no such page: Page p not found"
    ):
        await executor.submit(action(), entry())
    with pytest.raises(PermanentActionError, match="Set CATCHER_TIMES_SQUARE_TOKEN"):
        await TimesSquareExecutor(client, times_square.url, None).submit(action(), entry())


@pytest.mark.asyncio
async def test_a_status_that_is_not_an_object_is_a_permanent_error(
    times_square: FakeTimesSquare, client: httpx.AsyncClient
) -> None:
    times_square.pages["p"] = FakePage(parameters={})
    executor = TimesSquareExecutor(client, times_square.url, SecretStr(times_square.token))
    times_square.inject(status=200, body='["not", "an", "object"]', method="GET")
    with pytest.raises(PermanentActionError, match="Times Square's status is not an object"):
        await executor.poll(action(), entry(link=f"{times_square.url}/x/htmlstatus"))
