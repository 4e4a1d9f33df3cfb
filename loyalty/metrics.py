"""The operator counters of ``loyalty.services.stats`` for Prometheus (``GET /metrics``).

A custom collector reads the database at scrape time instead of counting in process memory:
the API process applies no events, and the workers that do are many and restart, so only the
database holds numbers that are right for the whole system.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

from fastapi import FastAPI
from fastapi.params import Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from loyalty.bootstrap import Loyalty
from loyalty.services.stats import Counts, read_stats

PREFIX = "loyalty"
log = logging.getLogger("loyalty.metrics")


def metric_family(counts: Counts) -> Metric:
    name = f"{PREFIX}_{counts.name}"
    family = (CounterMetricFamily if counts.cumulative else GaugeMetricFamily)(
        name, counts.description, labels=[counts.label])
    for label_value, number in sorted(counts.values.items()):
        family.add_metric([label_value], number)
    return family


class StatsCollector(Collector):
    def __init__(self, read: Callable[[], list[Counts]]):
        self._read = read

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(f"{PREFIX}_stats_up",
                               "1 when the counters below could be read from the database")
        try:
            stats = self._read()
        except Exception:
            # A scrape during a database outage still answers, so the alert is about the
            # database being down, not about the metrics endpoint failing.
            log.exception("could not read stats")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for counts in stats:
            yield metric_family(counts)


def metrics_registry(loyalty: Loyalty) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(StatsCollector(lambda: read_stats(loyalty)))
    return registry


def mount_metrics(app: FastAPI, loyalty: Loyalty, dependencies: Sequence[Depends] = ()) -> None:
    """``GET /metrics`` in Prometheus' text format, behind ``dependencies`` (the token)."""
    registry = metrics_registry(loyalty)

    # A plain def: FastAPI runs it in its thread pool, so the blocking queries do not stall
    # the event loop that serves the webhook.
    @app.get("/metrics", include_in_schema=False, dependencies=dependencies)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
