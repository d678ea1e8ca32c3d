"""Tests for iii_sync.engine._cron: CronProvider and its scheduler."""

import datetime
import logging
import re
import threading
from typing import Any, Dict, List, Optional

import pytest

from iii_sync.engine._cron import CronProvider, rfc3339
from iii_sync.engine._cron_expression import CronSyntaxError, parse_expression
from iii_sync.engine._providers import Binding, CallFailed, TriggerRejected

UTC = datetime.timezone.utc
RFC3339 = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?\+00:00\Z"
)


class FakeCaller:
    """Records calls; answers each function id from a script.

    A scripted value is returned, an exception instance raised, and a callable
    called with the data. Every call also notifies waiters.
    """

    def __init__(self, script: Optional[Dict[str, Any]] = None) -> None:
        self.script = dict(script or {})
        self.calls: List[Dict[str, Any]] = []
        self._changed = threading.Condition()

    def call(
        self,
        function_id: str,
        data: Any,
        *,
        namespace: str = "default",
        metadata: Any = None,
        timeout: Optional[float] = None,
    ) -> Any:
        record = {
            "function_id": function_id,
            "data": data,
            "namespace": namespace,
            "metadata": metadata,
            "timeout": timeout,
        }
        with self._changed:
            self.calls.append(record)
            self._changed.notify_all()
        answer = self.script.get(function_id)
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            return answer(data)
        return answer

    def calls_to(self, function_id: str) -> List[Dict[str, Any]]:
        with self._changed:
            return [c for c in self.calls if c["function_id"] == function_id]

    def wait_for(self, function_id: str, count: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(
                lambda: (
                    len([c for c in self.calls if c["function_id"] == function_id])
                    >= count
                ),
                timeout,
            )


def cron(binding_id: str, function_id: str, config: Any, **kwargs: Any) -> Binding:
    return Binding(binding_id, "cron", function_id, config, **kwargs)


@pytest.fixture
def provider_factory() -> Any:
    started: List[CronProvider] = []

    def make(caller: FakeCaller) -> CronProvider:
        provider = CronProvider(caller)
        provider.start()
        started.append(provider)
        return provider

    yield make
    for provider in started:
        provider.stop()


# --- registration ---------------------------------------------------------


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "config", [{}, {"expression": ""}, {"expression": 5}, None, "x"]
)
def test_missing_expression_is_rejected(config: Any) -> None:
    provider = CronProvider(FakeCaller())
    with pytest.raises(TriggerRejected) as info:
        provider.register(cron("j", "f", config))
    assert str(info.value) == "Cron expression is required"


@pytest.mark.timeout(10)
def test_five_field_crontab_is_rejected_with_the_engine_prefix() -> None:
    provider = CronProvider(FakeCaller())
    with pytest.raises(TriggerRejected) as info:
        provider.register(cron("j", "f", {"expression": "*/5 * * * *"}))
    assert str(info.value).startswith("Invalid cron expression '*/5 * * * *': ")
    assert "6 or 7 fields" in str(info.value)


@pytest.mark.timeout(10)
def test_duplicate_id_is_rejected_before_the_expression_is_read() -> None:
    provider = CronProvider(FakeCaller())
    provider.register(cron("job-1", "f", {"expression": "0 0 * * * *"}))
    for config in ({"expression": "0 0 * * * *"}, {"expression": "bad"}):
        with pytest.raises(TriggerRejected) as info:
            provider.register(cron("job-1", "g", config))
        assert str(info.value) == "Cron job 'job-1' is already registered"

    # After unregister the id is free again; unknown ids are ignored.
    provider.unregister(cron("job-1", "f", {}))
    provider.unregister(cron("never-registered", "f", {}))
    provider.register(cron("job-1", "g", {"expression": "0 0 * * * *"}))


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "expression",
    [
        "0 0 0 * * 0",
        "0 0 0 32 * *",
        "0 0 0 * * * 2101",
        "*/0 * * * * *",
        "0 0 0 * * Funday",
        "* * * * * * * *",
        "@every 5s",
    ],
)
def test_refusals_carry_the_engine_prefix_and_the_detail(expression: str) -> None:
    with pytest.raises(CronSyntaxError) as syntax:
        parse_expression(expression)
    with pytest.raises(TriggerRejected) as info:
        CronProvider(FakeCaller()).register(cron("j", "f", {"expression": expression}))
    assert str(info.value) == "Invalid cron expression '%s': %s" % (
        expression,
        syntax.value,
    )


# --- payload times ----------------------------------------------------------


@pytest.mark.timeout(10)
def test_rfc3339_matches_the_engine() -> None:
    moment = datetime.datetime(2024, 3, 5, 6, 7, 8, tzinfo=UTC)
    assert rfc3339(moment) == "2024-03-05T06:07:08+00:00"
    assert rfc3339(moment, 120000000) == "2024-03-05T06:07:08.120+00:00"
    assert rfc3339(moment, 123456000) == "2024-03-05T06:07:08.123456+00:00"
    assert rfc3339(moment, 123456789) == "2024-03-05T06:07:08.123456789+00:00"
    assert (
        rfc3339(moment.replace(microsecond=250000)) == "2024-03-05T06:07:08.250+00:00"
    )


# --- firing -----------------------------------------------------------------


@pytest.mark.timeout(15)
def test_fires_every_second_with_the_engine_payload(provider_factory: Any) -> None:
    caller = FakeCaller({"tick": {"ignored": True}})
    provider = provider_factory(caller)
    provider.register(
        cron("job-a", "tick", {"expression": "* * * * * *"}, metadata={"m": 1},
             namespace="team")
    )  # fmt: skip
    provider.register(cron("witness", "witness", {"expression": "* * * * * *"}))
    assert caller.wait_for("tick", 2, timeout=5)

    first, second = caller.calls_to("tick")[:2]
    for record in (first, second):
        data = record["data"]
        assert set(data) == {"trigger", "job_id", "scheduled_time", "actual_time"}
        assert data["trigger"] == "cron"
        assert data["job_id"] == "job-a"
        assert record["namespace"] == "team"
        assert record["metadata"] == {"m": 1}
        assert "_caller_worker_id" not in data
        assert RFC3339.match(data["scheduled_time"])
        assert RFC3339.match(data["actual_time"])
        assert "." not in data["scheduled_time"]  # ticks fall on whole seconds
        assert data["actual_time"][:19] >= data["scheduled_time"][:19]
    assert first["data"]["scheduled_time"] < second["data"]["scheduled_time"]

    # Once unregistered the job stays quiet while the witness keeps ticking.
    provider.unregister(cron("job-a", "tick", {}))
    seen = len(caller.calls_to("tick"))
    witnessed = len(caller.calls_to("witness"))
    assert caller.wait_for("witness", witnessed + 2, timeout=5)
    assert len(caller.calls_to("tick")) <= seen + 1  # one fire may have been in flight


@pytest.mark.timeout(15)
def test_conditions_and_errors(provider_factory: Any, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="iii_sync.engine._cron")
    caller = FakeCaller(
        {
            "cond.false": False,
            "cond.true": True,
            "cond.null": None,
            "cond.boom": CallFailed("invocation_failed", "condition broke"),
            "target.boom": CallFailed("invocation_failed", "handler broke"),
            "target.crash": RuntimeError("bug in the call path"),
        }
    )
    provider = provider_factory(caller)
    every = "* * * * * *"
    for name in ("false", "true", "null", "boom"):
        config = {"expression": every, "condition_function_id": "cond." + name}
        provider.register(
            cron("job-" + name, "target." + name, config, metadata={"k": name},
                 namespace="ns")
        )  # fmt: skip
    provider.register(cron("job-err", "target.boom", {"expression": every}))
    provider.register(cron("job-crash", "target.crash", {"expression": every}))

    # The failing target is called again on the next tick: errors never stop it.
    assert caller.wait_for("target.boom", 2, timeout=5)
    assert caller.wait_for("target.crash", 2, timeout=5)
    assert caller.wait_for("target.true", 1, timeout=5)
    assert caller.wait_for("target.null", 1, timeout=5)
    assert caller.wait_for("cond.false", 2, timeout=5)
    assert caller.wait_for("cond.boom", 2, timeout=5)
    provider.stop()

    assert caller.calls_to("target.false") == []
    assert all(c["data"]["job_id"] == "job-err" for c in caller.calls_to("target.boom"))
    for record in caller.calls_to("cond.true"):
        assert record["namespace"] == "ns"
        assert record["metadata"] is None
        assert record["data"]["job_id"] == "job-true"
    assert caller.calls_to("target.true")[0]["metadata"] == {"k": "true"}
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any("handler broke" in r.getMessage() for r in errors)
    assert any("condition broke" in r.getMessage() for r in errors)
    assert any("job-crash" in r.getMessage() and r.exc_info for r in errors)


class _MessageEvent(logging.Handler):
    def __init__(self, fragment: str) -> None:
        super().__init__(logging.DEBUG)
        self.fragment = fragment
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.fragment in record.getMessage():
            self.seen.set()


@pytest.mark.timeout(15)
def test_a_running_job_skips_ticks(provider_factory: Any) -> None:
    release = threading.Event()
    caller = FakeCaller({"slow": lambda data: release.wait(10)})
    watcher = _MessageEvent("tick skipped")
    logger = logging.getLogger("iii_sync.engine._cron")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(watcher)
    try:
        provider = provider_factory(caller)
        provider.register(cron("slow-job", "slow", {"expression": "* * * * * *"}))
        assert caller.wait_for("slow", 1, timeout=5)
        assert watcher.seen.wait(5)
        assert len(caller.calls_to("slow")) == 1
    finally:
        release.set()
        logger.removeHandler(watcher)
        logger.setLevel(old_level)


@pytest.mark.timeout(15)
def test_stop_joins_the_named_scheduler_thread() -> None:
    provider = CronProvider(FakeCaller())
    provider.register(cron("hourly", "f", {"expression": "@hourly"}))
    provider.start()
    names = [t.name for t in threading.enumerate()]
    assert "iii-cron-scheduler" in names
    provider.stop()
    assert "iii-cron-scheduler" not in [t.name for t in threading.enumerate()]
