"""Prometheus metrics for one server (own registry, so tests and apps never collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ldmscan_http_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "ldmscan_http_request_seconds",
            "request latency",
            ["endpoint"],
            registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.queue_depth = Gauge(
            "ldmscan_engine_queue_depth", "crop jobs waiting for the model", registry=self.registry
        )
        self.pending = Gauge(
            "ldmscan_engine_pending_images",
            "images accepted, not yet scored",
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "ldmscan_engine_batch_size",
            "crops per model call",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        )
        self.verdicts = Counter(
            "ldmscan_verdicts", "verdicts given", ["label", "source"], registry=self.registry
        )
