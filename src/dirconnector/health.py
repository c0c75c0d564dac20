"""Health and Prometheus metrics for the daemon (``--health-addr``, off by default).

``GET /healthz``: 200 with each profile's last run, next run and state while the
scheduler lives, 503 once it is stopping; with replicas, this replica's id, the profiles
it holds now, and each profile's holder. ``GET /metrics``: Prometheus text format.
Port 0 lets the kernel pick a free port; the address logged at start is the bound one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .daemon import Daemon
    from .sync import RunResult

log = logging.getLogger(__name__)


class Metrics:
    """The daemon's counters and gauges, in their own registry."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.runs = Counter("dirconnector_runs", "Runs by result", ["profile", "result"],
                            registry=r)
        self.changes = Counter("dirconnector_changes", "Changes applied, by kind and outcome",
                               ["profile", "kind", "status"], registry=r)
        self.failures = Counter("dirconnector_change_failures",
                                "Changes that failed to apply", ["profile"], registry=r)
        self.refusals = Counter("dirconnector_guard_refusals",
                                "Runs refused by the safety guard", ["profile"], registry=r)
        self.last_success = Gauge("dirconnector_last_success_timestamp_seconds",
                                  "Unix time of the last successful run", ["profile"], registry=r)
        self.duration = Histogram("dirconnector_run_duration_seconds", "Run duration",
                                  ["profile"], registry=r,
                                  buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 1800))
        self.source_read = Gauge("dirconnector_source_read_seconds",
                                 "Duration of the last directory read", ["profile"], registry=r)
        self.objects = Gauge("dirconnector_objects_read", "Objects the last read returned",
                             ["profile", "kind"], registry=r)
        self.refused_now = Gauge("dirconnector_refused",
                                 "1 while the profile's last run was refused by the guard",
                                 ["profile"], registry=r)
        self.change_lag = Histogram("dirconnector_change_lag_seconds",
                                    "Watch: from the directory change to the server holding it",
                                    ["profile"], registry=r,
                                    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300))
        self.stream_mode = Gauge("dirconnector_stream_mode",
                                 "Watch: 1 for the mode each profile follows changes by",
                                 ["profile", "mode"], registry=r)
        self.repairs = Counter("dirconnector_incremental_repairs",
                               "Watch: differences a full reconcile found in the incremental "
                               "state (each is a bug)", ["profile"], registry=r)
        self.notifications = Counter("dirconnector_notifications",
                                     "Notifications by channel kind, event and result "
                                     "(sent, failed, dropped)", ["channel", "event", "result"],
                                     registry=r)

    def notified(self, channel: str, event: str, result: str) -> None:
        """Count one notification's fate (notify_send.Notifier's on_result)."""
        self.notifications.labels(channel, event, result).inc()

    def observe(self, profile: str, status: str, duration: float,
                result: RunResult | None) -> None:
        self.runs.labels(profile, status).inc()
        self.duration.labels(profile).observe(duration)
        self.refused_now.labels(profile).set(1 if status == "refused" else 0)
        if status == "refused":
            self.refusals.labels(profile).inc()
        if status in ("ok", "no-changes", "unchanged"):
            self.last_success.labels(profile).set(time.time())
        if result is None:
            return
        if "source_read" in result.timings:
            self.source_read.labels(profile).set(result.timings["source_read"])
        if result.desired is not None:
            self.objects.labels(profile, "users").set(len(result.desired.users))
            self.objects.labels(profile, "groups").set(len(result.desired.groups))
        if result.report is not None:
            for o in result.report.outcomes:
                self.changes.labels(profile, o.change.kind, o.status).inc()
                if o.status == "failed":
                    self.failures.labels(profile).inc()

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        data: bytes = generate_latest(self.registry)
        return data


class HealthServer:
    """A small HTTP server in a thread."""

    def __init__(self, addr: str, daemon: Daemon) -> None:
        host, _, port = addr.rpartition(":")
        self.address = (host.strip("[]") or "127.0.0.1", int(port))
        self.daemon = daemon
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        daemon = self.daemon

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's naming
                if self.path.split("?")[0] == "/healthz":
                    alive = daemon.scheduler.running and not daemon.stop_event.is_set()
                    body = json.dumps({"status": "ok" if alive else "stopping",
                                       **daemon.replica_status(),
                                       "profiles": daemon.status()}, default=str).encode()
                    self._send(200 if alive else 503, "application/json", body)
                elif self.path.split("?")[0] == "/metrics":
                    self._send(200, "text/plain; version=0.0.4", daemon.metrics.render())
                elif (page := status_page.route(daemon, self.path,
                                                self.headers.get("Authorization"))) is not None:
                    self._send(page[0], page[1], page[2], page[3])
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, status: int, ctype: str, body: bytes,
                      headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("health: " + fmt, *args)

        from . import status_page

        self._server = ThreadingHTTPServer(self.address, Handler)
        self._server.daemon_threads = True
        # poll_interval: shutdown() waits up to this long for the serving loop to notice.
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                         name="health", daemon=True).start()
        log.info("health and metrics on http://%s:%d/", *self._server.server_address[:2])
        daemon.status_warning = status_page.exposure_warning(self.address[0],
                                                             bool(daemon.status_token))
        if daemon.status_warning:
            log.warning("%s", daemon.status_warning)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
