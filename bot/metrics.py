"""Prometheus metrics, one registry per app so that tests and several apps in a process stay apart.

Labels never carry personal data: only risk levels, channels, purposes and error kinds.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.instructions_received = Counter(
            "quanzu_instructions_received_total", "Instructions accepted from the center (new ones only)",
            ["risk_level"], registry=self.registry,
        )
        self.instructions_duplicate = Counter(
            "quanzu_instructions_duplicate_total", "Instructions sent again with a known instruction_no",
            registry=self.registry,
        )
        self.instructions_rejected = Counter(
            "quanzu_instructions_rejected_total", "Instructions refused as invalid", registry=self.registry,
        )
        self.messages_sent = Counter(
            "quanzu_messages_sent_total", "WeCom messages delivered", ["channel", "purpose"], registry=self.registry,
        )
        self.messages_failed = Counter(
            "quanzu_messages_failed_total", "WeCom messages given up on after their retries",
            ["channel", "purpose"], registry=self.registry,
        )
        self.send_errors = Counter(
            "quanzu_wecom_send_errors_total", "WeCom send attempts that failed", ["kind"], registry=self.registry,
        )
        self.delivery_latency = Histogram(
            "quanzu_delivery_latency_seconds", "From accepting an instruction to WeCom accepting its message",
            ["purpose"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
        )
        self.outbox_pending = Gauge(
            "quanzu_outbox_pending", "Messages waiting to be sent (including rate-limit deferrals)",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
