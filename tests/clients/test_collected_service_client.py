"""A ServiceClient nobody holds is torn down by its finalizer, on whatever thread garbage collection ran: even one
that holds the IoLoop's lock at that moment (seen in CI: an actor thread scheduling a coroutine ran a collection, the
finalizer submitted the HTTP layer's close, the lock was taken again on the same thread, and every caller hung)."""

from __future__ import annotations

import gc
import threading
import time

from tinker_actors import ServiceClient
from tinker_actors.config import Config
from tinker_actors.local import LocalService
from tinker_actors.runtime import Runtime


def _supervisor_names(runtime: Runtime) -> set[str]:
    return {child.child_id for child in runtime.root.which_children()}


def test_a_collection_on_a_thread_holding_the_ioloop_lock_tears_the_client_down_without_hanging(
        service: LocalService) -> None:
    runtime = Runtime.get()
    client = ServiceClient(config=Config(api_key="tml-test-key", base_url=service.base_url, telemetry_enabled=False))
    name = client._supervisor_name
    assert name in _supervisor_names(runtime)
    gc.disable()  # the collection must run where the test says, not at a random allocation
    try:
        del client
        ended = threading.Event()

        def collect_inside_the_lock() -> None:
            with runtime.ioloop._lock:  # as IoLoop.submit holds it while it schedules
                gc.collect()
            ended.set()

        threading.Thread(target=collect_inside_the_lock, daemon=True).start()
        assert ended.wait(20.0), "the finalizer deadlocked on the IoLoop's lock"
    finally:
        gc.enable()
    deadline = time.monotonic() + 20.0
    while name in _supervisor_names(runtime) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert name not in _supervisor_names(runtime), "the collected client's actors were not stopped"
    # The loop still serves other clients.
    with ServiceClient(config=Config(api_key="tml-test-key", base_url=service.base_url,
                                     telemetry_enabled=False)) as other:
        assert other.get_server_capabilities().supported_models
