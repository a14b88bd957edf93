"""Prometheus metrics through ``prometheus-client``, one registry per app (never the global one,
so several apps in one process, as the tests run them, do not collide).

The counters are the services' own attributes, read at scrape time by :class:`ServiceCollector`
(so nothing is counted twice); the latency histograms are ``Histogram`` objects that their
owning service observes into, created unregistered and collected here. Names carry no ids,
names or numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

#: Latency buckets in seconds, from a fast ack to a slow first offer.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def latency_histogram(name: str, documentation: str) -> Histogram:
    """A histogram owned by the service that observes it; the app's registry collects it."""
    return Histogram(name, documentation, buckets=LATENCY_BUCKETS, registry=None)


@dataclass(frozen=True, slots=True)
class Sample:
    """One value read at scrape time: ``kind`` is ``counter`` or ``gauge``."""

    name: str
    value: float
    help: str
    kind: str = "counter"
    labels: tuple[tuple[str, str], ...] = ()


class ServiceCollector(Collector):
    """Turns what ``read()`` returns at scrape time into metric families, plus owned histograms."""

    def __init__(self, read: Callable[[], Iterable[Sample]], histograms: Callable[[], Iterable[Histogram]]) -> None:
        self._read = read
        self._histograms = histograms

    def collect(self) -> Iterator[Metric]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for s in self._read():
            family = families.get(s.name)
            if family is None:
                labels = [k for k, _ in s.labels]
                family = (
                    CounterMetricFamily(s.name, s.help, labels=labels)
                    if s.kind == "counter"
                    else GaugeMetricFamily(s.name, s.help, labels=labels)
                )
                families[s.name] = family
            family.add_metric([v for _, v in s.labels], s.value)
        yield from families.values()
        for histogram in self._histograms():
            yield from histogram.collect()


def registry_for(collector: ServiceCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
