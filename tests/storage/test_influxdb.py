"""The one InfluxQL client: quoting, answers and every failure as the caller's error."""

from __future__ import annotations

import httpx
import pytest

from catcher.exceptions import BacktestError, MirrorError
from catcher.storage.influxdb import InfluxQL, quote_identifier, quote_literal


def test_quoting() -> None:
    assert quote_identifier('a"b\\c') == '"a\\"b\\\\c"'
    assert quote_literal("it's") == "'it\\'s'"


def _client(answer: httpx.Response | Exception, error: type = BacktestError) -> InfluxQL:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["db"] == "efd"
        assert request.url.params["epoch"] == "ns"
        if isinstance(answer, Exception):
            raise answer
        return answer

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return InfluxQL(http, "http://user:pw@efd.invalid/", "efd", what="the EFD", error=error)


@pytest.mark.asyncio
async def test_series_with_tags_columns_and_rows() -> None:
    body = {
        "results": [
            {
                "statement_id": 0,
                "series": [
                    {
                        "name": "m",
                        "tags": {"salIndex": "1"},
                        "columns": ["time", "v"],
                        "values": [[1, 2.5], [2, None]],
                    }
                ],
            },
            {"statement_id": 1},
        ]
    }
    (series,) = await _client(httpx.Response(200, json=body)).query("SELECT v FROM m")
    assert series.tags == {"salIndex": "1"}
    assert series.rows() == [{"time": 1, "v": 2.5}, {"time": 2, "v": None}]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (httpx.Response(500, text="boom " * 200), "The EFD answered HTTP 500: boom boom"),
        (httpx.Response(200, text="<html>proxy</html>"), "not InfluxQL's JSON: <html>proxy"),
        (httpx.Response(200, json=["a"]), "not InfluxQL's JSON"),
        (
            httpx.Response(200, json={"results": [{"error": "database not found: efd"}]}),
            "The EFD could not run the query: database not found: efd",
        ),
        (httpx.ConnectError("refused"), "Cannot reach the EFD at http://efd.invalid/query:"),
    ],
)
@pytest.mark.asyncio
async def test_failures_are_one_short_message(
    answer: httpx.Response | Exception, message: str
) -> None:
    with pytest.raises(BacktestError) as raised:
        await _client(answer).query("SELECT 1")
    assert message in str(raised.value)
    assert len(str(raised.value)) < 400
    assert "pw" not in str(raised.value)


@pytest.mark.asyncio
async def test_the_callers_error_class() -> None:
    with pytest.raises(MirrorError):
        await _client(httpx.Response(503), MirrorError).query("SELECT 1")
