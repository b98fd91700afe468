"""Prometheus metrics of `memq serve` at /metrics: requests by method, route template
and status, latency histograms by route, requests in flight.

Labels are route templates (`/v1/agents/{agent_id}/messages`), never ids, tenants or
keys. /metrics needs no tenant key (it holds no tenant's data); set
MEMQ_API_METRICS_TOKEN to require `Authorization: Bearer <token>` for it. Each process
keeps its own registry: scrape every process (one per pod in deploy/k8s), not a
`--workers N` server through one port.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

UNMATCHED = "unmatched"  # a path no route serves (404s of unknown paths share one label)
LATENCY_BUCKETS_S = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class ApiMetrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("memq_api_requests_total", "HTTP requests answered, by route template and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("memq_api_request_duration_seconds",
                                 "Time from a request's start to its last byte, by route template",
                                 ["method", "route"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.in_flight = Gauge("memq_api_requests_in_flight", "Requests being answered (blocking sends included)",
                               registry=self.registry)

        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}  # label lookups, once per label set

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        children = self._children.get((method, route, status))
        if children is None:
            children = (self.requests.labels(method, route, str(status)), self.latency.labels(method, route))
            self._children[(method, route, status)] = children
        children[0].inc()
        children[1].observe(seconds)


class MetricsMiddleware:
    """Counts every HTTP request once it is answered, labelled by the route that served it."""

    def __init__(self, app: Any, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.in_flight.dec()
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            self.metrics.observe(scope.get("method", ""), route, status["code"], time.perf_counter() - started)


def metrics_endpoint(metrics: ApiMetrics, token: str | None) -> Any:
    async def endpoint(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if token:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token):
                return Response('{"detail": "/metrics needs its token (MEMQ_API_METRICS_TOKEN)", "error": '
                                '"unauthorized", "status": 401}', status_code=401, media_type="application/json",
                                headers={"WWW-Authenticate": "Bearer"})
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return endpoint
