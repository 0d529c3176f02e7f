"""Paging: the escalator's answers classified as the actions' are (one set of statuses)."""

from __future__ import annotations

import httpx
import pytest

from catcher.exceptions import ActionError, http_status_error
from catcher.services.alarms.escalation import Escalator

pytestmark = pytest.mark.asyncio

STATUSES = [400, 401, 403, 404, 408, 409, 422, 425, 429, 500, 501, 502, 503, 504, 505]


@pytest.mark.parametrize("status", STATUSES)
async def test_a_page_is_retried_exactly_when_an_action_would_be(status: int) -> None:
    def answer(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, text="no")

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        escalator = Escalator("http://squadcast.invalid", "key", http)
        with pytest.raises(ActionError) as raised:
            await escalator.resolve("event")
    action = http_status_error("webhook", httpx.Response(status, text="no"))
    assert raised.value.retryable is action.retryable
    assert str(raised.value) == f"SquadCast answered HTTP {status}: no"


async def test_an_accepted_page_and_an_unreachable_responder() -> None:
    def accepted(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(202)

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(accepted)) as http:
        await Escalator("http://squadcast.invalid", "key", http).resolve("event")
    async with httpx.AsyncClient(transport=httpx.MockTransport(down)) as http:
        with pytest.raises(ActionError) as raised:
            await Escalator("http://squadcast.invalid", "key", http).resolve("event")
    assert raised.value.retryable
    assert "key" not in str(raised.value)  # the key is part of the URL: never shown
