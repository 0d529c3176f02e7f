"""Operating the worker: probes, Prometheus metrics and JSON logs, on a real worker."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from catcher.broker import free_port
from catcher.models.enums import Severity
from catcher.models.records import make_action_id
from tests.support import DATA
from tests.support.stack import Stack, finished

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

RULES = (DATA / "rules" / "dome-and-mount.yaml").read_text()


async def test_status_after_recovery_and_metrics_that_match_the_history(stack: Stack) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    stack.extra_env.update(CATCHER_HTTP_PORT=str(port))
    stack.write_rules(RULES)
    await stack.start_worker()
    seen: list[tuple[int, bool, str]] = []

    async def working() -> bool:
        async with httpx.AsyncClient() as client:
            seen.append(await _probe(client, base))
        return seen[-1][:2] == (200, True)

    await stack.wait_for(working, what="/status working")
    answered = [s for s in seen if s[0] != -1]
    assert not answered[0][1] and answered[0][2], seen  # answered while it joined, saying why
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{base}/health")).status_code == httpx.codes.OK

    triggers = [
        await stack.publish("dome", Severity.WARNING, tags={"n": str(n)}) for n in range(3)
    ]
    ids = [make_action_id(t.trigger_id, "hook") for t in triggers]
    events = await stack.wait_history(lambda ev: all(finished(ev, a) for a in ids))
    history = Counter(e.state.value for e in events)

    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{base}/metrics")).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    for state, count in history.items():
        assert value("catcher_action_events_total", type="webhook", state=state) == count
    assert value("catcher_action_attempts_total", type="webhook") == history["submitting"]
    assert value("catcher_action_start_latency_seconds_count", type="webhook") == len(ids)
    assert value("catcher_trigger_age_seconds_count") == len(ids)
    config = stack.config
    assert value("catcher_records_consumed_total", topic=config.triggers_topic) == len(ids)
    assert value("catcher_ledger_entries") == len(ids)
    assert value("catcher_unfinished_actions") == 0
    assert value("catcher_alarms", state="active") == len(ids)
    assert value("catcher_consumer_lag", topic=config.triggers_topic, partition="0") == 0


async def _probe(client: httpx.AsyncClient, base: str) -> tuple[int, bool, str]:
    """/ready's status code with /status's working flag and reason (-1: no answer)."""
    try:
        ready = (await client.get(f"{base}/ready")).status_code
        status = (await client.get(f"{base}/status")).json()
    except httpx.HTTPError:
        return -1, False, "no answer"
    return ready, status["working"], status["reason"]


async def test_the_api_under_its_prefix_stays_ready_without_partitions_and_through_a_rebalance(
    stack: Stack,
) -> None:
    """Readiness is the API's: a worker without partitions, or in a rebalance, still serves."""
    first, second, metrics = free_port(), free_port(), free_port()
    one, two = f"http://127.0.0.1:{first}", f"http://127.0.0.1:{second}"
    stack.extra_env.update(
        CATCHER_HTTP_PORT=str(first),
        CATCHER_METRICS_PORT=str(metrics),
        CATCHER_PATH_PREFIX="/catcher/",  # as written in values: the slash is dropped
        CATCHER_API_URL=f"{one}/catcher",
    )
    stack.write_rules(RULES)
    await stack.start_worker()
    async with httpx.AsyncClient(timeout=5) as client:

        async def working(base: str) -> bool:
            return (await _probe(client, base))[:2] == (200, True)

        await stack.wait_for(lambda: working(one), what="the first worker at work")
        user = {"X-Auth-Request-User": "someone"}
        assert (await client.get(f"{one}/catcher/alarms", headers=user)).status_code == 200
        assert (await client.get(f"{one}/alarms", headers=user)).status_code == 404
        described = await client.get(f"{one}/catcher/openapi.json")  # no user needed
        assert described.json()["servers"] == [{"url": "/catcher"}]
        code, out, err = await stack.cli("alarms", "list")
        assert code == 0, err
        assert "No alarms." in out, out
        # /metrics on its own port (where a NetworkPolicy admits Prometheus), not the API's:
        assert (await client.get(f"{one}/metrics")).status_code == 404
        scraped = await client.get(f"http://127.0.0.1:{metrics}/metrics")
        assert "catcher_records_consumed_total" in scraped.text
        assert (await client.get(f"http://127.0.0.1:{metrics}/catcher/alarms")).status_code == 404

        stack.extra_env.update(CATCHER_HTTP_PORT=str(second), CATCHER_METRICS_PORT="0")
        await stack.start_worker()
        seen: list[tuple[int, bool, str]] = []
        joining: list[tuple[int, bool, str]] = []

        async def both_at_work() -> bool:
            seen.append(await _probe(client, one))
            joining.append(await _probe(client, two))
            return seen[-1][:2] == joining[-1][:2] == (200, True)

        await stack.wait_for(both_at_work, what="both workers at work after the rebalance")
        assert all(ready == 200 for ready, _, _ in seen), seen  # never unready on the way
        assert any(reason.startswith("Rebalancing") for _, _, reason in seen), seen
        # Ready (serving the API) before it held any partition:
        assert any(ready == 200 and not at_work for ready, at_work, _ in joining), joining
        for base in (one, two):
            assert (await client.get(f"{base}/health")).json() == {"status": "ok"}
