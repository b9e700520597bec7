"""The official SDK's own retry paths against injected faults: its re-sends are de-duplicated."""

from __future__ import annotations

import logging

import pytest

from tests.compat.conftest import sdk_warnings
from tinker_actors.local import FaultAction, FaultRule, LocalService

tinker = pytest.importorskip("tinker", reason="the official tinker SDK (compat extra) is not installed")
types = tinker.types

pytestmark = pytest.mark.compat


def test_lost_answers_and_backpressure_are_retried_without_double_steps(
        sdk_env: LocalService, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    svc = sdk_env
    sc = tinker.ServiceClient(base_url=svc.base_url, api_key=svc.api_key)
    tc = sc.create_lora_training_client(base_model="tiny-byte", rank=2)
    tokens = list(b"fault tolerant")
    datum = types.Datum(model_input=types.ModelInput.from_ints(tokens[:-1]),
                        loss_fn_inputs={"target_tokens": tokens[1:]})
    tc.forward_backward([datum], "cross_entropy").result(timeout=30)

    # The optim_step runs but its answer is lost: the SDK re-POSTs the same seq_id.
    dropped = svc.faults.add(FaultRule(endpoint="optim_step", action=FaultAction.DROP_AFTER, times=1))
    # A 500 on the next forward_backward submission: the SDK retries it.
    failed = svc.faults.add(FaultRule(endpoint="forward_backward", status=500, times=1))
    try:
        tc.optim_step(types.AdamParams(learning_rate=1e-3)).result(timeout=30)
        tc.forward_backward([datum], "cross_entropy").result(timeout=30)
        assert (svc.faults.fired(dropped), svc.faults.fired(failed)) == (1, 1)
    finally:
        svc.faults.clear()
    optim_steps = [s for s in svc.request_counts()["sequenced"]
                   if s["id"] == tc.model_id and s["endpoint"] == "optim_step"]
    assert optim_steps == [{"id": tc.model_id, "seq_id": 2, "endpoint": "optim_step", "received": 2,
                            "executed": 1}]

    # Sampling backpressure: one 429, then the SDK re-submits after its 1 s back-off.
    sampler = sc.create_sampling_client(base_model="tiny-byte")
    svc.faults.add(FaultRule(endpoint="asample", status=429, times=1))
    try:
        result = sampler.sample(types.ModelInput.from_ints([1, 2]), 1,
                                types.SamplingParams(max_tokens=2)).result(timeout=30)
    finally:
        svc.faults.clear()
    assert len(result.sequences[0].tokens) == 2
    # The only warning is the SDK reporting the injected 500 it retried.
    warnings = sdk_warnings(caplog.records)
    assert len(warnings) == 1 and "Retrying due to status code 500" in warnings[0]
