"""The admin's ``/metrics`` registry: one per app, store readings only inside a scrape."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from admin_api.prometheus_metrics import AdminMetrics, StoreReadings


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text.decode())
            for s in family.samples}


def test_each_app_counts_its_own_requests() -> None:
    first, second = AdminMetrics(), AdminMetrics()
    first.http.requests.labels("GET", "/api/v1/hits", "200").inc()
    first.http.requests.labels("GET", "/api/v1/hits", "200").inc()
    key = ("esafety_admin_requests_total",
           (("method", "GET"), ("route", "/api/v1/hits"), ("status", "200")))
    assert _samples(first.exposition(StoreReadings()))[key] == 2
    assert key not in _samples(second.exposition(StoreReadings()))


def test_the_store_readings_are_exposed_for_that_scrape_only() -> None:
    metrics = AdminMetrics()
    readings = StoreReadings(blocks_today={"gambling": 3, "adult": 1}, policy_version=7,
                             hits_stream_length=40, alert_queue_pending=2,
                             log_store_lag_seconds=1.5, unblock_requests_open=4,
                             alerts_open=1)
    samples = _samples(metrics.exposition(readings))
    assert samples[("esafety_blocks_today", (("category", "gambling"),))] == 3
    assert samples[("esafety_blocks_today", (("category", "adult"),))] == 1
    assert samples[("esafety_policy_version", ())] == 7
    assert samples[("esafety_hits_stream_length", ())] == 40
    assert samples[("esafety_alert_queue_pending", ())] == 2
    assert samples[("esafety_log_store_lag_seconds", ())] == 1.5
    assert samples[("esafety_unblock_requests_open", ())] == 4
    assert samples[("esafety_alerts_open", ())] == 1
    # a registry read outside a scrape has no stale store values
    from_registry = {m.name for m in metrics.registry.collect()}
    assert "esafety_policy_version" not in from_registry
