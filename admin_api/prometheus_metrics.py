"""The Prometheus text exposition for ``/metrics``.

No personal data: request counts by route, today's blocks by category, the policy version,
and the depths of the work queues (alert consumer pending entries, log store lag, open
unblock requests and alerts).
"""

from __future__ import annotations

from datetime import datetime

from admin_api.context import AdminState


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


async def render(state: AdminState) -> str:
    store = state.store
    lines = ["# HELP esafety_admin_requests_total Admin API requests.",
             "# TYPE esafety_admin_requests_total counter"]
    for (method, route, status), count in sorted(state.metrics.requests.items()):
        lines.append(f'esafety_admin_requests_total{{method="{_label(method)}",'
                     f'route="{_label(route)}",status="{status}"}} {count}')
    today = datetime.now(state.tz).strftime("%Y%m%d")
    (counters,) = await store.hits.day_counts([today])
    blocks: dict[str, int] = {}
    for name, value in counters.items():
        parts = name.split("|")
        if len(parts) == 4 and parts[0] == "block":
            blocks[parts[1]] = blocks.get(parts[1], 0) + int(value)
    lines += ["# HELP esafety_blocks_today Blocked requests today (local day), by category.",
              "# TYPE esafety_blocks_today gauge"]
    lines += [f'esafety_blocks_today{{category="{_label(c)}"}} {n}'
              for c, n in sorted(blocks.items())]
    gauges: dict[str, tuple[str, float]] = {
        "esafety_policy_version": ("Current policy version.", await store.policy.version()),
        "esafety_hits_stream_length": ("Entries in the hits stream.",
                                       await store.hits.stream_length()),
        "esafety_alert_queue_pending": ("Hits handed to an alert consumer, not yet done.",
                                        await state.alerts.pending()),
        "esafety_log_store_lag_seconds": ("How far the log store trails the hits stream.",
                                          await state.feeder.lag_seconds()
                                          if await store.hits.stream_exists() else 0.0),
        "esafety_unblock_requests_open": ("Unblock requests waiting for a decision.",
                                          await store.unblock_requests.count_open()),
        "esafety_alerts_open": ("Safeguarding alerts not yet acknowledged.",
                                await store.alerts.count_open()),
    }
    for gauge, (help_text, reading) in gauges.items():
        lines += [f"# HELP {gauge} {help_text}", f"# TYPE {gauge} gauge", f"{gauge} {reading}"]
    return "\n".join(lines) + "\n"
