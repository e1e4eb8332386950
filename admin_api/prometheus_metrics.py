"""The Prometheus text exposition for ``/metrics``.

No personal data: request counts by route, today's blocks by category, the policy version,
and the depths of the work queues (alert consumer pending entries, log store lag, open
unblock requests and alerts).
"""

from __future__ import annotations

from datetime import datetime

from admin_api.context import AdminState
from store import alerts, unblock_requests
from store.policy_state import read_version


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


async def render(state: AdminState) -> str:
    redis, keys = state.redis, state.keys
    lines = ["# HELP esafety_admin_requests_total Admin API requests.",
             "# TYPE esafety_admin_requests_total counter"]
    for (method, route, status), count in sorted(state.metrics.requests.items()):
        lines.append(f'esafety_admin_requests_total{{method="{_label(method)}",'
                     f'route="{_label(route)}",status="{status}"}} {count}')
    today = datetime.now(state.tz).strftime("%Y%m%d")
    counters = await redis.hgetall(keys.day_counts(today))
    blocks: dict[str, int] = {}
    for name, value in counters.items():
        parts = str(name).split("|")
        if len(parts) == 4 and parts[0] == "block":
            blocks[parts[1]] = blocks.get(parts[1], 0) + int(value)
    lines += ["# HELP esafety_blocks_today Blocked requests today (local day), by category.",
              "# TYPE esafety_blocks_today gauge"]
    lines += [f'esafety_blocks_today{{category="{_label(c)}"}} {n}'
              for c, n in sorted(blocks.items())]
    all_alerts = await alerts.all_alerts(redis, keys)
    gauges: dict[str, tuple[str, float]] = {
        "esafety_policy_version": ("Current policy version.", await read_version(redis, keys)),
        "esafety_hits_stream_length": ("Entries in the hits stream.",
                                       int(await redis.xlen(keys.hits))),
        "esafety_alert_queue_pending": ("Hits handed to an alert consumer, not yet done.",
                                        await state.alerts.pending()),
        "esafety_log_store_lag_seconds": ("How far the log store trails the hits stream.",
                                          await state.feeder.lag_seconds()
                                          if await redis.exists(keys.hits) else 0.0),
        "esafety_unblock_requests_open": ("Unblock requests waiting for a decision.",
                                          await unblock_requests.count_open(redis, keys)),
        "esafety_alerts_open": ("Safeguarding alerts not yet acknowledged.",
                                sum(1 for a in all_alerts if a.status == alerts.OPEN)),
    }
    for gauge, (help_text, reading) in gauges.items():
        lines += [f"# HELP {gauge} {help_text}", f"# TYPE {gauge} gauge", f"{gauge} {reading}"]
    return "\n".join(lines) + "\n"
