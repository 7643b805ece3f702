"""Prometheus metrics of one service instance (its own registry, so tests can run several)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("leanrec_requests", "HTTP requests", ["method", "route", "status"], registry=r)
        self.latency = Histogram("leanrec_request_seconds", "HTTP request latency", ["method", "route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.encode_seconds = Histogram("leanrec_encode_seconds", "Time to encode one batch of item texts",
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.encoded_items = Counter("leanrec_encoded_items", "Item texts encoded", registry=r)
        self.events = Counter("leanrec_events", "Events stored", registry=r)
        self.index_items = Gauge("leanrec_index_items", "Live items in the vector index", registry=r)
        self.index_tombstones = Gauge("leanrec_index_tombstones", "Deleted items still in the index", registry=r)
        self.cached_users = Gauge("leanrec_cached_users", "User profiles held in memory", registry=r)
        self.model = Gauge("leanrec_model_info", "The model being served (value 1)", ["name", "kind"], registry=r)

    def set_model(self, name: str, kind: str) -> None:
        self.model.clear()
        self.model.labels(name=name, kind=kind).set(1)

    def render(self, stats: dict) -> bytes:
        self.index_items.set(stats.get("items", 0))
        self.index_tombstones.set(stats.get("tombstones", 0))
        self.cached_users.set(stats.get("cached_users", 0))
        return generate_latest(self.registry)
