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


async def test_ready_after_recovery_and_metrics_that_match_the_history(stack: Stack) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    stack.extra_env.update(CATCHER_HTTP_PORT=str(port))
    stack.write_rules(RULES)
    await stack.start_worker()
    seen: list[int] = []

    async def ready() -> bool:
        async with httpx.AsyncClient() as client:
            try:
                answer = await client.get(f"{base}/ready")
            except httpx.ConnectError:
                return False
        if answer.status_code == httpx.codes.SERVICE_UNAVAILABLE:
            assert answer.json()["ready"] is False and answer.json()["reason"]
        seen.append(answer.status_code)
        return answer.status_code == httpx.codes.OK

    await stack.wait_for(ready, what="/ready")
    assert seen[0] == httpx.codes.SERVICE_UNAVAILABLE, seen  # answered while recovering
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
