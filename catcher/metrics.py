"""The worker's Prometheus metrics (``GET /metrics``).

Counters and histograms are updated where the work happens; gauges of state (unfinished
actions, ledger size, alarms by state, consumer lag) are read from the worker when the
endpoint is scraped, so they are never stale. One registry per process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["METRICS", "Metrics"]

_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)


class _Gauges(Collector):
    """Gauges computed at scrape time from callables."""

    def __init__(self) -> None:
        self._sources: list[Callable[[], Iterable[Metric]]] = []

    def add(self, source: Callable[[], Iterable[Metric]]) -> None:
        self._sources.append(source)

    def collect(self) -> Iterator[Metric]:
        for source in self._sources:
            yield from source()


class Metrics:
    """Every metric the worker exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            "catcher_records_consumed", "Records consumed, by topic.", ["topic"], registry=r
        )
        self.dead_letters = Counter(
            "catcher_dead_letters",
            "Records sent to the dead letter topic, by stage (decode, plan, execute).",
            ["stage"],
            registry=r,
        )
        self.action_events = Counter(
            "catcher_action_events",
            "Action history events written, by action type and state.",
            ["type", "state"],
            registry=r,
        )
        self.attempts = Counter(
            "catcher_action_attempts",
            "Calls to submit an action (first attempts and retries), by action type.",
            ["type"],
            registry=r,
        )
        self.retries = Counter(
            "catcher_action_retries",
            "Attempts that failed and will be retried, by action type.",
            ["type"],
            registry=r,
        )
        self.trigger_age = Histogram(
            "catcher_trigger_age_seconds",
            "Age of a trigger (now minus its time) when it is planned.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.start_latency = Histogram(
            "catcher_action_start_latency_seconds",
            "From a trigger's time to its action's first submit attempt.",
            ["type"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._gauges = _Gauges()
        r.register(self._gauges)

    def gauge(
        self,
        name: str,
        doc: str,
        read: Callable[[], dict[tuple[str, ...], float]],
        labels: tuple[str, ...] = (),
    ) -> None:
        """A gauge read at scrape time: ``read()`` maps label values to the value."""

        def collect() -> Iterable[Metric]:
            family = GaugeMetricFamily(name, doc, labels=list(labels))
            for values, value in sorted(read().items()):
                family.add_metric(list(values), value)
            return [family]

        self._gauges.add(collect)

    def render(self) -> bytes:
        """The Prometheus text format."""
        return generate_latest(self.registry)


METRICS = Metrics()
"""This process's metrics."""
