"""The service's Prometheus metrics (`GET /metrics`, text exposition format, `prometheus-client`).

Each app gets its own registry, so several apps in one process (tests) never share counts.
Route labels are route templates (`/v1/detect/{image}`), never raw paths, so the number of
series stays bounded whatever clients send.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Seconds: from static files and health checks (ms) to queued predictions on a busy CPU (a minute).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    """Request counts, latencies, queue depth, in-flight requests and model facts for one app."""

    def __init__(self, queue_stats: Callable[[], dict[str, int]], model_name: str, backend: str,
                 version: str, model_load_s: float | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("changeseg_requests", "HTTP requests answered, by route, method and status.",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("changeseg_request_duration_seconds",
                                 "Time from a request's arrival to its answer, by route.",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("changeseg_requests_in_flight", "HTTP requests being handled now.",
                               registry=r)
        self.prediction = Histogram("changeseg_prediction_duration_seconds",
                                    "Time a worker spends on one pair (decode, predict, encode), "
                                    "queue wait excluded.", buckets=LATENCY_BUCKETS, registry=r)
        Gauge("changeseg_queue_depth", "Admitted predictions waiting for a worker.",
              registry=r).set_function(lambda: queue_stats()["waiting"])
        Gauge("changeseg_predictions_running", "Predictions running in worker threads now.",
              registry=r).set_function(lambda: queue_stats()["running"])
        Gauge("changeseg_prediction_workers", "Worker threads (--concurrency).",
              registry=r).set_function(lambda: queue_stats()["workers"])
        Gauge("changeseg_queue_capacity", "Predictions allowed to wait (--queue).",
              registry=r).set_function(lambda: queue_stats()["queue_size"])
        Gauge("changeseg_model_info", "The model served (always 1; the facts are labels).",
              ["model", "backend", "version"], registry=r).labels(model_name, backend, version).set(1)
        if model_load_s is not None:
            Gauge("changeseg_model_load_seconds", "Time taken to load the model at start-up.",
                  registry=r).set(model_load_s)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and record its latency."""
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        """Every metric in the Prometheus text exposition format."""
        return generate_latest(self.registry)
