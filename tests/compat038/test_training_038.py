"""The training features of 0.38 (T11) as the official tinker==0.38.0 SDK uses them, against the local
service; and the same journey on tinker-actors by changing the import, on protocol 0.38 and 0.6.3.

``journey_training.py`` creates a model with ``optimizer=AdamOptimizerConfig()``, runs GSPO steps with
AdamW weight decay and gradient clipping on a fixed batch, top-K distillation with 2-D targets (dense,
then as sparse CSR tensors), a text value in ``loss_fn_config``, and asks for what is refused
(``stable_reinforce``, a Dimuon model). The service records what arrived (``svc.wire_log``): the official
SDK's requests show what 0.38 puts on the wire for each feature, and ours in 0.38 mode must be the same.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from tests.compat038.conftest import (
    ScriptRun,
    official_python,
    run_official,
    run_ours,
    service_with_flags,
)
from tests.compat038.test_wire_capture import wire_requests
from tinker_actors.local.server.wire_log import WireRecord

JOURNEY = "journey_training.py"
COMPARED_PATHS = ("/api/v1/create_model", "/api/v1/forward_backward", "/api/v1/forward", "/api/v1/optim_step")


class _Outcome:
    def __init__(self, run: ScriptRun, records: list[WireRecord], protocol: str = "0.38") -> None:
        self.run = run
        self.records = records
        self.protocol = protocol

    def sent(self) -> list[dict[str, Any]]:
        """The accepted training requests, decoded, ids replaced by placeholders (test_wire_capture.py)."""
        return [r for r in wire_requests(self.records) if r["path"] in COMPARED_PATHS and r["status"] == 200]


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Outcome]:
    official_python()
    with service_with_flags({}) as service, service.wire_log.capture() as capture:
        run = run_official(JOURNEY, service, tmp_path_factory.mktemp("journey-official"))
    yield _Outcome(run, capture.snapshot())


@pytest.fixture(scope="module", params=["0.38", "0.6.3"])
def ours(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Outcome]:
    with service_with_flags({}) as service, service.wire_log.capture() as capture:
        run = run_ours(JOURNEY, service, tmp_path_factory.mktemp(f"journey-ours-{request.param}"),
                       protocol=request.param)
    yield _Outcome(run, capture.snapshot(), request.param)


def _assert_every_step_passes(outcome: _Outcome) -> None:
    failed = {name: error for name, error in outcome.run.steps.items() if error != "ok"}
    assert not failed, "\n".join(f"--- {name}\n{error}" for name, error in failed.items())


def test_the_official_sdk_runs_every_step(official: _Outcome) -> None:
    _assert_every_step_passes(official)


def test_gspo_with_adamw_lowers_the_loss_under_the_official_sdk(official: _Outcome) -> None:
    values = official.run.values
    losses = values["gspo"]["losses"]
    assert losses[0] == pytest.approx(-1.0, abs=1e-4)  # on-policy: every sequence ratio is 1
    assert all(later < earlier for earlier, later in itertools.pairwise(losses)), losses
    assert values["preference_after"] > values["preference_before"] + 5.0
    assert all(norm > 0.5 for norm in values["gspo"]["grad_norms"])  # so each step was clipped to 0.5


def test_top_k_targets_dense_and_sparse_under_the_official_sdk(official: _Outcome) -> None:
    dense, sparse = official.run.values["top_k_dense"], official.run.values["top_k_sparse"]
    assert dense["logprobs_shape"] == sparse["logprobs_shape"] == [44, 3]
    assert sparse["loss"] == pytest.approx(dense["loss"], rel=1e-6)


def test_what_the_local_service_refuses_and_why(official: _Outcome) -> None:
    values = official.run.values
    assert values["text_loss_setting"]["refused"] == "RequestFailedError"
    assert "must be a number, got the text 'tight'" in values["text_loss_setting"]["message"]
    assert values["create_with_dimuon"]["refused"] == "BadRequestError"
    assert "trains with AdamW only" in values["create_with_dimuon"]["message"]
    assert values["stable_reinforce"]["refused"] == "BadRequestError"
    assert "stable_reinforce" in values["stable_reinforce"]["message"]


def test_what_the_official_sdk_sends_for_each_feature(official: _Outcome) -> None:
    sent = official.sent()
    creates = [r["body"] for r in sent if r["path"] == "/api/v1/create_model"]
    assert [c["optimizer_config"] for c in creates] == [{"type": "adamw"}]
    steps = [r["body"]["adam_params"] for r in sent if r["path"] == "/api/v1/optim_step"]
    assert steps and all(s["weight_decay"] == 0.01 and s["grad_clip_norm"] == 0.5 for s in steps)
    passes = [r["body"] for r in sent if r["path"] == "/api/v1/forward_backward"]
    gspo = [p for p in passes if p["loss_fn"] == "gspo"]
    assert gspo and all(set(d["loss_fn_inputs"]) == {"target_tokens", "logprobs", "advantages", "sequence_ratio_mask"}
                        for p in gspo for d in p["data"])
    assert gspo[0]["loss_fn_config_v2"]["clip_high_threshold"] == {"number": 2.0}
    sparse = [p for p in passes if "sparse_csr" in p["data"][0]["loss_fn_inputs"].get("weights", {})]
    assert len(sparse) == 1 and sparse[0]["data"][0]["loss_fn_inputs"]["target_tokens"]["shape"] == ["44", "3"]
    text = [p for p in passes if p["loss_fn"] == "ppo"]
    assert text[0]["loss_fn_config_v2"] == {"clip_low_threshold": {"text": "tight"}}
    assert "loss_fn_config" not in text[0]  # text exists only in the v2 map


def test_the_same_journey_runs_on_tinker_actors(ours: _Outcome, official: _Outcome) -> None:
    """Changing the import is enough, on either protocol: the same numbers as under the official SDK."""
    _assert_every_step_passes(ours)
    mine, theirs = ours.run.values, official.run.values
    assert mine["gspo"]["losses"] == pytest.approx(theirs["gspo"]["losses"], rel=1e-6)
    assert mine["preference_after"] == pytest.approx(theirs["preference_after"], rel=1e-6)
    for name in ("top_k_dense", "top_k_sparse"):
        assert mine[name]["loss"] == pytest.approx(theirs[name]["loss"], rel=1e-6)
        assert mine[name]["logprobs_shape"] == [44, 3]
    # What is not built is refused typed, before anything is sent; stable_reinforce is sent on 0.38, as the official
    # SDK sends it, and the local service refuses it in its own words (a 400); 0.6.3 cannot carry it.
    assert mine["create_with_dimuon"]["refused"] == "UnsupportedFeatureError"
    if ours.protocol == "0.38":
        assert mine["stable_reinforce"]["refused"] == theirs["stable_reinforce"]["refused"] == "BadRequestError"
        for outcome in (mine, theirs):
            assert "does not implement stable_reinforce" in outcome["stable_reinforce"]["message"]
    else:
        assert mine["stable_reinforce"]["refused"] == "UnsupportedFeatureError"
        assert "needs protocol 0.38" in mine["stable_reinforce"]["message"]
    text = mine["text_loss_setting"]
    if ours.protocol == "0.6.3":  # numeric settings only: refused before sending
        assert text["refused"] == "InvalidInputError"
        assert "protocol 0.6.3 carries numeric loss settings only" in text["message"]
    else:
        assert text["refused"] == "RequestFailedError" and "got the text 'tight'" in text["message"]


def test_our_requests_are_the_official_ones_on_0_38_and_what_0_6_3_can_carry(ours: _Outcome,
                                                                              official: _Outcome) -> None:
    sent = ours.sent()
    if ours.protocol == "0.38":
        # The same create_model, protobuf forward_backward (gspo, sparse_csr, text settings) and optim_step
        # requests as the official SDK's (bodies and headers), in the same order. What is refused here before
        # sending was refused by the service for the official SDK (a 400), so neither side has it in the list.
        assert sent == official.sent()
        return
    # 0.6.3: JSON, no optimizer_config, forward on its own endpoint, the sparse tensors sent dense.
    assert all(r["headers"]["content-type"] == "application/json" for r in sent)
    assert all("optimizer_config" not in r["body"] for r in sent if r["path"] == "/api/v1/create_model")
    top_k = [r["body"]["forward_input"]["data"][0]["loss_fn_inputs"] for r in sent if r["path"] == "/api/v1/forward"
             and r["body"]["forward_input"]["data"][0]["loss_fn_inputs"]["target_tokens"].get("shape") == [44, 3]]
    assert len(top_k) == 2 and top_k[0] == top_k[1]  # dense, then the sparse tensors densified: the same body
    assert all(set(inputs["weights"]) == {"data", "dtype", "shape"} for inputs in top_k)
