"""The proxy's stages on their own: the declared addon order, the frozen verdict, and that
``respond`` and ``record`` act on the verdict without asking the policy again.

The end-to-end behaviour (real mitmproxy, Redis and origins) is in the other proxy tests."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import inspect
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.test import tflow, tutils

from categories import Policy, load_definitions
from categories.domain_index import ListInfo, build_index
from categories.list_formats import EntryKind
from deployment.config import Config
from deployment.instance import Instance
from proxy_addons import runner
from proxy_addons.decide import Decide
from proxy_addons.forward_headers import ForwardHeaders
from proxy_addons.hitlog import HitQueue, Spool
from proxy_addons.identify import Identify
from proxy_addons.pipeline import ADDON_ORDER, STAGES, Pipeline, build_pipeline, worker_addons
from proxy_addons.policy_sync import PolicySync
from proxy_addons.record import Record
from proxy_addons.respond import Respond
from proxy_addons.safe_search import SafeSearch
from proxy_addons.tunnel_contents import TunnelContents
from proxy_addons.upstream_guard import UpstreamGuard
from proxy_addons.verdict import Answer, Verdict, verdict_of
from store.keys import Keys
from store.records import HitRecord

FLOW_HOOKS = ("http_connect", "requestheaders", "request", "tls_clienthello", "next_layer",
              "tls_start_client", "server_connect")


class CapturedHits(HitQueue):
    def __init__(self, path: Path) -> None:
        super().__init__(Spool(path), None, worker_id="test")
        self.seen: list[HitRecord] = []

    def record(self, day: str, hit: HitRecord) -> None:
        self.seen.append(hit)


class NoPolicy:
    """Stands in for the policy once ``decide`` has run: any question to it fails."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the policy was asked {name!r} after decide")


def _policy() -> Policy:
    lists = [ListInfo("gambling", "t/gambling")]
    entries = [(0, EntryKind.DOMAIN, "casino-royale.test", 1)]
    return Policy(load_definitions(), build_index(lists, entries))


@pytest.fixture
def built(tmp_path: Path) -> tuple[Pipeline, PolicySync, CapturedHits]:
    config = Config()
    keys = Keys("esafety-test-pipeline:")
    policy_sync = PolicySync(Instance(config, tmp_path, None), None, keys)
    policy_sync.policy = _policy()
    hits = CapturedHits(tmp_path / "spool.log")
    pipeline = build_pipeline(config, Identify(config, None, keys), policy_sync, hits)

    async def resolver(host: str, port: int) -> list[tuple[str, int]]:
        return [("93.184.216.34", port)]  # a public address: every test name is allowed out

    pipeline.upstream_guard.resolver = resolver
    return pipeline, policy_sync, hits


def test_the_worker_adds_every_stage_once_in_flow_order(
        built: tuple[Pipeline, PolicySync, CapturedHits]) -> None:
    pipeline, policy_sync, _hits = built
    listener = object()
    addons = worker_addons([policy_sync], pipeline, listener)
    kinds = [type(a) for a in addons]
    order = [Identify, Decide, Respond, Record]
    assert [kinds.index(k) for k in order] == sorted(kinds.index(k) for k in order)
    for kind in (*order, UpstreamGuard, SafeSearch, TunnelContents, ForwardHeaders):
        assert kinds.count(kind) == 1, kind
    assert STAGES == ("identify", "decide", "respond", "record")
    assert ADDON_ORDER[:4] == STAGES
    # Nothing with a flow hook comes after forward_headers; the listener comes last, once
    # every other addon is running.
    assert addons[-1] is listener
    after_headers = addons[kinds.index(ForwardHeaders) + 1:]
    assert not [a for a in after_headers if any(hasattr(a, h) for h in FLOW_HOOKS)]
    # Every addon with a flow hook is one the pipeline declares.
    hooked = [a for a in addons if any(hasattr(a, h) for h in FLOW_HOOKS)]
    assert hooked == pipeline.addons()


def test_the_runner_adds_the_declared_list() -> None:
    source = inspect.getsource(runner.run_worker)
    assert "worker_addons(" in source and "build_pipeline(" in source
    assert source.count("proxy.addons.add(") == 2  # mitmproxy's own addons, then ours


def _flow(url_host: str, path: str = "/", scheme: str = "http", port: int = 80
          ) -> http.HTTPFlow:
    request = tutils.treq(host=url_host, port=port, scheme=scheme.encode(),
                          authority=b"", path=path.encode(), method=b"GET",
                          headers=http.Headers(host=url_host))
    return tflow.tflow(req=request)


async def _hook(addons: list[object], name: str, flow: http.HTTPFlow) -> None:
    for addon in addons:
        method = getattr(addon, name, None)
        if method is not None:
            result = method(flow)
            if inspect.isawaitable(result):
                await result


def _through(pipeline: Pipeline, policy_sync: PolicySync, flow: http.HTTPFlow) -> None:
    """requestheaders then request, as mitmproxy calls them; the policy is taken away as
    soon as ``decide`` has written the verdict."""
    before = [pipeline.identify, pipeline.decide]
    after = [a for a in pipeline.addons() if a not in before]

    async def run() -> None:
        for hook in ("requestheaders", "request"):
            if hook == "request" and flow.response is not None:
                return
            await _hook(before, hook, flow)
            policy = policy_sync.policy
            policy_sync.policy = NoPolicy()  # type: ignore[assignment]
            try:
                await _hook(after, hook, flow)
            finally:
                policy_sync.policy = policy

    asyncio.run(run())


def test_a_blocked_request_is_answered_and_recorded_from_the_verdict_alone(
        built: tuple[Pipeline, PolicySync, CapturedHits]) -> None:
    pipeline, policy_sync, hits = built
    flow = _flow("casino-royale.test", "/spin?bet=1")
    _through(pipeline, policy_sync, flow)
    verdict = verdict_of(flow)
    assert verdict is not None and verdict.answer is Answer.BLOCK_PAGE
    assert verdict.decision is not None and verdict.decision.blocked
    assert flow.response is not None and flow.response.status_code == 403
    assert flow.response.headers["X-Esafety-Hit-Id"] == verdict.hit_id
    assert [h.id for h in hits.seen] == [verdict.hit_id]
    assert hits.seen[0].path == "/spin" and hits.seen[0].category == "gambling"
    assert pipeline.counters.requests == 1
    assert pipeline.counters.blocks_by_category == {"gambling": 1}


def test_an_allowed_request_goes_on_with_nothing_recorded(
        built: tuple[Pipeline, PolicySync, CapturedHits]) -> None:
    pipeline, policy_sync, hits = built
    flow = _flow("allowed.test", "/page")
    _through(pipeline, policy_sync, flow)
    verdict = verdict_of(flow)
    assert verdict is not None and verdict.answer is Answer.FORWARD and not verdict.hits
    assert flow.response is None and hits.seen == []
    assert pipeline.counters.requests == 1


def test_the_verdict_is_frozen(built: tuple[Pipeline, PolicySync, CapturedHits]) -> None:
    pipeline, policy_sync, _hits = built
    flow = _flow("casino-royale.test")
    _through(pipeline, policy_sync, flow)
    verdict = verdict_of(flow)
    assert isinstance(verdict, Verdict)
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.answer = Answer.FORWARD  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.hits[0].decision = None  # type: ignore[misc]
    assert isinstance(verdict.hits, tuple)


def test_respond_and_record_hold_no_policy() -> None:
    for stage in (Respond, Record):
        parameters = inspect.signature(stage.__init__).parameters
        assert not {"policy", "policy_sync", "planner", "decide"} & set(parameters), stage


def test_credentials_the_fast_path_refused_are_checked_once(tmp_path: Path) -> None:
    """The fast path hands a connection that must sign in to mitmproxy, whose identify stage
    answers the 407 from the fast path's outcome: one attempt is counted once."""
    config = dataclasses.replace(Config(), proxy_auth_mode="required")
    identify = Identify(config, None, Keys("esafety-test-pipeline:"))
    header = "Basic " + base64.b64encode(b"learner1:wrong").decode()

    async def run() -> http.HTTPFlow:
        assert await identify.resolve_before_handover(header, "127.0.0.1") is None
        flow = tflow.tflow(req=tutils.treq(method=b"CONNECT", host="allowed.test", port=443,
                                           scheme=b"", authority=b"allowed.test:443",
                                           path=b"", headers=http.Headers(
                                               proxy_authorization=header)))
        await identify.http_connect(flow)
        return flow

    flow = asyncio.run(run())
    assert flow.response is not None and flow.response.status_code == 407
    assert identify.auth_failures == 1
