"""The same constructions of 0.38 types, tried with either SDK: what each accepts, and what it holds.

Usage: ``official_validation.py [tinker|tinker_actors]``: prints one JSON object, ``{"cases": {id: outcome},
"literals": {name: [values]}}``, where an outcome is ``{"ok": true, "dump": fields as JSON}`` or
``{"ok": false, "error": exception type name}``. ``tests/types/test_types_038.py`` runs it under the official
tinker==0.38.0 interpreter and calls :func:`run` in-process for tinker-actors, then compares case by case
(refusals of settings not built yet, and the few checks made here before the server would make them, are
listed there).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import sys
import typing
from typing import Any

# (case id, type name in <sdk>.types, keyword arguments). A name with a dot calls a classmethod.
PROMPT = {"chunks": [{"type": "encoded_text", "tokens": [1, 2, 3, 4]}]}
SAMPLE = {"prompt": PROMPT, "sampling_params": {"max_tokens": 4}}
LOAD = {"model_id": "m", "path": "tinker://r/weights/a", "optimizer": False}
CASES: list[tuple[str, str, dict[str, Any]]] = [
    # SampleRequest: the 0.38 fields
    ("sample_defaults", "SampleRequest", SAMPLE),
    ("sample_topk_sample_0", "SampleRequest", {**SAMPLE, "topk_sample_logprobs": 0}),
    ("sample_topk_sample_3", "SampleRequest", {**SAMPLE, "topk_sample_logprobs": 3}),
    ("sample_topk_sample_text", "SampleRequest", {**SAMPLE, "topk_sample_logprobs": "many"}),
    ("sample_alt_tokens_2", "SampleRequest", {**SAMPLE, "prompt_alt_tokens_k": 2}),
    ("sample_stability_false", "SampleRequest", {**SAMPLE, "record_stability_info": False}),
    ("sample_stability_true", "SampleRequest", {**SAMPLE, "record_stability_info": True}),
    ("sample_target_logprobs", "SampleRequest", {**SAMPLE, "target_prompt_logprobs": {
        "data": [1, 2, 3], "dtype": "int64", "shape": [3, 1]}}),
    ("sample_last_n", "SampleRequest", {**SAMPLE, "prompt_logprobs": True, "prompt_logprobs_last_n": 2}),
    ("sample_last_n_without_logprobs", "SampleRequest", {**SAMPLE, "prompt_logprobs_last_n": 2}),
    ("sample_last_n_too_long", "SampleRequest", {**SAMPLE, "prompt_logprobs": True, "prompt_logprobs_last_n": 4}),
    # saves and loads
    ("save_defaults", "SaveWeightsRequest", {"model_id": "m"}),
    ("save_038_fields", "SaveWeightsRequest", {"model_id": "m", "path": "a", "ttl_seconds": 3600, "overwrite": True,
                                               "user_metadata": {"k": "v"}}),
    ("save_metadata_not_text", "SaveWeightsRequest", {"model_id": "m", "user_metadata": {"k": 1}}),
    ("sampler_save_snapshot", "SaveWeightsForSamplerRequest", {"model_id": "m", "path": "a", "kind": "snapshot",
                                                               "ttl_seconds": 7200, "user_metadata": {"k": "v"}}),
    ("sampler_save_inflight", "SaveWeightsForSamplerRequest", {"model_id": "m", "kind": "inflight"}),
    ("sampler_save_unknown_kind", "SaveWeightsForSamplerRequest", {"model_id": "m", "kind": "frozen"}),
    ("load_into_model", "LoadWeightsRequest", LOAD),
    ("load_creating_model", "LoadWeightsRequest", {**LOAD, "model_id": None, "session_id": "s", "model_seq_id": 0}),
    ("load_with_token", "LoadWeightsRequest", {**LOAD, "weights_access_token": "tml-xyz"}),
    ("load_with_base_model", "LoadWeightsRequest", {**LOAD, "base_model": "b"}),
    # optimizers
    ("create_model_default", "CreateModelRequest", {"session_id": "s", "model_seq_id": 0, "base_model": "b"}),
    ("create_model_adamw", "CreateModelRequest", {"session_id": "s", "model_seq_id": 0, "base_model": "b",
                                                  "optimizer_config": {"type": "adamw"}}),
    ("create_model_dimuon", "CreateModelRequest", {"session_id": "s", "model_seq_id": 0, "base_model": "b",
                                                   "optimizer_config": {"type": "dimuon", "version": 1}}),
    ("adam_config", "AdamOptimizerConfig", {}),
    ("adam_config_other_type", "AdamOptimizerConfig", {"type": "dimuon"}),
    ("adam_config_extra", "AdamOptimizerConfig", {"momentum": 0.5}),
    ("dimuon_config", "DimuonOptimizerConfig", {}),
    ("dimuon_config_version_2", "DimuonOptimizerConfig", {"version": 2}),
    ("dimuon_params", "DimuonParams", {"learning_rate": 0.01}),
    ("dimuon_params_no_rate", "DimuonParams", {}),
    ("dimuon_params_negative_rate", "DimuonParams", {"learning_rate": -0.1}),
    ("dimuon_params_beta1_1", "DimuonParams", {"learning_rate": 0.01, "beta1": 1.0}),
    ("dimuon_params_nan_clip", "DimuonParams", {"learning_rate": 0.01, "grad_clip_norm": math.nan}),
    ("adam_params_038_fields", "AdamParams", {"weight_decay": 0.01, "grad_clip_norm": 1.0}),
    # provenance
    ("prompt_span", "PromptProvenanceSpan", {"sequence_id": "seq-1", "length": 3}),
    ("prompt_span_offset", "PromptProvenanceSpan", {"sequence_id": "seq-1", "offset": 2, "length": 0}),
    ("prompt_span_negative_length", "PromptProvenanceSpan", {"sequence_id": "seq-1", "length": -1}),
    ("prompt_span_negative_offset", "PromptProvenanceSpan", {"sequence_id": "seq-1", "offset": -1, "length": 1}),
    ("prompt_span_no_sequence", "PromptProvenanceSpan", {"sequence_id": "", "length": 1}),
    ("prompt_span_no_length", "PromptProvenanceSpan", {"sequence_id": "seq-1"}),
    ("sampled_span", "SampledProvenanceSpan", {"sequence_id": "seq-2", "offset": 1, "length": 5}),
    ("sampled_span_negative_length", "SampledProvenanceSpan", {"sequence_id": "seq-2", "length": -3}),
    # checkpoints
    ("checkpoint_external", "Checkpoint", {"checkpoint_id": "external_weights/a", "checkpoint_type": "external",
                                           "time": "2026-01-02T03:04:05Z", "tinker_path": "tinker://r/external_weights/a",
                                           "user_metadata": {"k": "v"}, "expires_at": "2026-02-01T00:00:00Z"}),
    ("checkpoint_unknown_type", "Checkpoint", {"checkpoint_id": "x/a", "checkpoint_type": "archive",
                                               "time": "2026-01-02T03:04:05Z", "tinker_path": "tinker://r/x/a"}),
    ("parsed_external_path", "ParsedCheckpointTinkerPath.from_tinker_path", {"tinker_path": "tinker://r/external_weights/a"}),
    ("weights_info_038", "WeightsInfoResponse", {"base_model": "b", "is_lora": True, "lora_rank": 8, "train_mlp": False,
                                                 "optimizer_config": {"type": "dimuon", "version": 1}}),
    ("copy_weights", "CopyWeightsRequest", {"source_path": "tinker://r/weights/a", "destination_project_id": "p",
                                            "ttl_seconds": 3600}),
    ("copy_weights_no_source", "CopyWeightsRequest", {"destination_project_id": "p"}),
    ("save_external", "SaveWeightsExternalRequest", {"model_id": "m", "path": "a",
                                                     "age_encryption_recipients": ["age1x"]}),
    ("save_external_no_path", "SaveWeightsExternalRequest", {"model_id": "m"}),
    ("external_urls", "ExternalWeightsUrlsResponse", {"urls": {"a.bin": "https://x"},
                                                      "expires": "2026-01-01T00:00:00Z"}),
    # sessions
    ("create_session_038", "CreateSessionRequest", {"tags": [], "user_metadata": None, "sdk_version": "0.38.0",
                                                    "project_id": "p", "display_name": "run 1"}),
    ("own_owner", "OwnSearchOwner", {}),
    ("accessible_owner", "AccessibleSearchOwner", {}),
    ("user_owner", "UserSearchOwner", {"owner_urns": ["urn:u:1"]}),
    ("user_owner_none", "UserSearchOwner", {"owner_urns": []}),
    ("user_owner_eleven", "UserSearchOwner", {"owner_urns": [f"urn:u:{i}" for i in range(11)]}),
    ("own_owner_with_urns", "OwnSearchOwner", {"owner_urns": ["urn:u:1"]}),
    ("active_query", "ActiveSessionStatusQuery", {}),
    ("finished_query", "ClientFinishedSessionStatusQuery", {"reasons": ["success", "errored"]}),
    ("finished_query_empty", "ClientFinishedSessionStatusQuery", {"reasons": []}),
    ("finished_query_unknown", "ClientFinishedSessionStatusQuery", {"reasons": ["crashed"]}),
    ("search_request", "SessionSearchRequest", {"display_name": "run", "limit": 10}),
    ("search_limit_0", "SessionSearchRequest", {"limit": 0}),
    ("search_limit_201", "SessionSearchRequest", {"limit": 201}),
    ("session_failed", "SessionFailed", {"category": "user", "message": "bad", "reason": {
        "type": "training_run", "training_run_id": "r"}}),
    ("session_failed_bad_category", "SessionFailed", {"category": "server", "message": "bad", "reason": {
        "type": "request", "request_id": "q", "request_type": "sample"}}),
    ("client_finished", "ClientSessionFinished", {"reason": {"type": "interrupted"}, "detail": "ctrl-c"}),
    ("supported_model_038", "SupportedModel", {"model_name": "m", "max_context_length": 4096, "trainable": True,
                                               "sampleable": False}),
    # flags, batched polling, audit, whoami, custom losses
    ("client_config_defaults", "ClientConfigResponse", {}),
    ("client_config_request", "ClientConfigRequest", {"sdk_version": "0.38.0"}),
    ("dynamic_config_defaults", "ClientDynamicConfigResponse", {}),
    ("futures_retrieve", "FuturesRetrieveRequest", {"target": {"sampling_session_id": "s", "cloned_sampler_id": 2}}),
    ("futures_retrieved", "FuturesRetrieveResponse", {"cursor": 7, "completions": [
        {"state": "finished", "request_id": "a", "response_payload_uncompressed_size": 10},
        {"state": "failed", "request_id": "b"}]}),
    ("futures_unknown_state", "FuturesRetrieveResponse", {"cursor": 1, "completions": [
        {"state": "lost", "request_id": "a"}]}),
    ("audit_log", "AuditLogResponse", {"entries": [{"timestamp": "2026-01-01T00:00:00Z", "event": "checkpoint_read"}]}),
    ("whoami", "WhoamiResponse", {"user_urn": "urn:u:1", "org_urn": "urn:o:1"}),
    ("custom_loss_input", "CustomLossInput", {"name": "advantages", "rank": 1}),
    ("custom_loss_input_rank_3", "CustomLossInput", {"name": "advantages", "rank": 3}),
    ("custom_loss_graph", "CustomLossGraph", {"nodes": [{"op": "placeholder", "name": "x", "target": "x"}]}),
    ("custom_loss_graph_format_2", "CustomLossGraph", {"format": 2, "nodes": []}),
    ("custom_loss_node_bad_op", "CustomLossNode", {"op": "call_anything", "name": "x", "target": "x"}),
    ("create_custom_loss", "CreateCustomLossRequest", {"session_id": "s", "custom_loss_seq_id": 0, "name": "l",
                                                       "inputs": [{"name": "logprobs", "rank": 1}],
                                                       "graph": {"nodes": []}}),
]

# Literal types whose values must be the official ones.
LITERALS = ["LossFnType", "CheckpointType", "SamplingClientKind", "CustomLossInputRank",
            "ClientSessionFinishReasonType", "StopReason"]


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _dump(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return _jsonable(obj.model_dump(mode="json"))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    return _jsonable(obj)


def outcome(types: Any, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """What constructing ``name`` from ``kwargs`` gives: its fields, or the type of the error."""
    owner, _, method = name.partition(".")
    target = getattr(getattr(types, owner), method) if method else getattr(types, owner)
    try:
        built = target(**kwargs)
    except Exception as error:  # any refusal is an outcome to compare
        return {"ok": False, "error": type(error).__name__}
    return {"ok": True, "dump": _dump(built)}


def run(sdk: str) -> dict[str, Any]:
    types = importlib.import_module(f"{sdk}.types")
    return {"cases": {case: outcome(types, name, kwargs) for case, name, kwargs in CASES},
            "literals": {name: list(typing.get_args(getattr(types, name))) for name in LITERALS}}


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "tinker")))
