"""``GET /metrics``: the control plane's Prometheus metrics (``services.metrics.ControlPlaneMetrics``).

It follows the API's authentication: with tokens configured it needs the ``read`` scope, like
every other ``GET``; ``create_app(metrics_open=True)`` (``jetloom control-plane --metrics-open``)
leaves it open to a scraper that has no token, as ``/health`` is. ``MetricsPlugin`` adds the
route, the request-measuring middleware and the app's own registry to a Litestar app.
"""

from __future__ import annotations

from litestar import Response, get
from litestar.config.app import AppConfig
from litestar.handlers import HTTPRouteHandler
from litestar.plugins import InitPluginProtocol
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.metrics import ControlPlaneMetrics

from ..auth import PUBLIC, needs
from ..openapi import operation

__all__ = ["METRICS_PATH", "MetricsPlugin", "metrics_route"]

METRICS_PATH = "/metrics"


def metrics_route(metrics: ControlPlaneMetrics, *, open_: bool = False) -> HTTPRouteHandler:
    """The ``GET /metrics`` handler exposing ``metrics`` (open to all with ``open_``, else it
    needs the ``read`` scope when the API has tokens)."""

    @get(
        METRICS_PATH,
        opt=PUBLIC if open_ else needs("read"),
        security=[{}] if open_ else None,
        tags=["metrics"],
        media_type=CONTENT_TYPE_LATEST,
        operation_class=operation(),
        sync_to_thread=False,
    )
    def prometheus_metrics() -> Response[bytes]:
        """The control plane's metrics in the Prometheus text format (version 0.0.4): HTTP
        requests by route and status, runs started and cancelled here, SSE streams open."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return prometheus_metrics


class MetricsPlugin(InitPluginProtocol):
    """Adds ``GET /metrics`` and the request-measuring middleware to a Litestar app.

    Args:
        open_: serve ``/metrics`` without authentication (default: it needs the ``read`` scope
            when the API has tokens).
        metrics: the metrics to expose (default: a new ``ControlPlaneMetrics`` with its own registry).
    """

    def __init__(self, *, open_: bool = False, metrics: ControlPlaneMetrics | None = None) -> None:
        self.open = open_
        self.metrics = metrics if metrics is not None else ControlPlaneMetrics()

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.route_handlers.append(metrics_route(self.metrics, open_=self.open))
        app_config.middleware.insert(0, self.metrics.middleware)  # (outermost: it sees every answer)
        app_config.state["metrics"] = self.metrics
        return app_config
