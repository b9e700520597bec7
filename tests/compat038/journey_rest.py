"""The REST features of 0.38 (FEATURES R2) as a user writes them, run by either SDK.

Usage: ``journey_rest.py [tinker|tinker_actors] [EXTERNAL_WEIGHTS_PATH]``. With ``tinker`` (the default) it runs
under the official tinker==0.38.0 SDK's interpreter (``.venv-tinker038``); with ``tinker_actors`` under ours. The
only difference is the import below: the rest is the same code, pointed at a local service by
``TINKER_BASE_URL`` / ``TINKER_API_KEY``.

What it does: a model in project ``journey``, trained a little and saved (a training checkpoint with a TTL and
metadata where ``save_state`` takes them, and sampler weights); then, on a session-less ``RestClient()``: the models,
whoami, runs filtered by project and access scope, a run by id, a TTL set, a copy into another project (sampled
from: the same tokens as the source), ``ServiceClient.copy_weights`` into the client's project, the audit log
(``AdminClient``), the session's trace (downloaded and read), an external weights checkpoint's file URLs when one
is named, and the copy deleted. The last stdout line is ``{"steps": {name: "ok" | error}, "values": {...}}``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
import urllib.request
from typing import Any

if sys.argv[1:2] == ["tinker_actors"]:
    import tinker_actors as tinker
    from tinker_actors import types
else:
    import tinker
    from tinker import types

try:
    from journey_kit import Journey, done  # run as a script: its folder is first on sys.path
except ImportError:  # imported by a test, for its constants
    from tests.compat038.journey_kit import Journey, done

TIMEOUT_S = 60.0
TOKENS = list(b"the cat sat on the mat")
PROMPT = types.ModelInput.from_ints(list(b"the cat "))
PARAMS = types.SamplingParams(max_tokens=8, temperature=1.0, seed=5)


def _done(value: Any) -> Any:
    return done(value, TIMEOUT_S)


def _train(training: Any) -> None:
    datum = types.Datum(model_input=types.ModelInput.from_ints(TOKENS[:-1]),
                        loss_fn_inputs={"target_tokens": TOKENS[1:], "weights": [1.0] * (len(TOKENS) - 1)})
    for _ in range(2):
        training.forward_backward([datum], "cross_entropy").result(timeout=TIMEOUT_S)
        training.optim_step(types.AdamParams(learning_rate=0.05)).result(timeout=TIMEOUT_S)


def _save(training: Any) -> dict[str, Any]:
    """0.38's ``save_state(name, ttl_seconds=, user_metadata=)`` where the SDK has it, else ``save_state(name)``."""
    if "user_metadata" in inspect.signature(training.save_state).parameters:
        path = training.save_state("meta", ttl_seconds=7200, user_metadata={"stage": "journey"}).result(
            timeout=TIMEOUT_S).path
        return {"path": path, "kwargs": "taken"}
    return {"path": training.save_state("meta").result(timeout=TIMEOUT_S).path, "kwargs": "not taken"}


def _tokens(service: Any, model_path: str) -> list[int]:
    sampler = _done(service.create_sampling_client(model_path=model_path))
    return list(sampler.sample(PROMPT, 1, PARAMS).result(timeout=TIMEOUT_S).sequences[0].tokens)


def main() -> None:
    journey = Journey(keep_results=True)
    external = sys.argv[2] if len(sys.argv) > 2 else None
    service = tinker.ServiceClient(project_id="journey")
    training = journey.step("create", lambda: _done(service.create_lora_training_client(
        base_model="tiny-byte", rank=2, seed=3)))
    if training is None:
        journey.report()
        return
    run_id = training.model_id
    session_id = run_id.rsplit(":train:", 1)[0]
    journey.step("train", lambda: _train(training))
    saved = journey.step("save_state", lambda: _save(training)) or {}
    state_path = saved.get("path", "")
    sampler_path = journey.step("save_sampler", lambda: training.save_weights_for_sampler("policy").result(
        timeout=TIMEOUT_S).path) or ""

    rest = tinker.RestClient()  # no session: from TINKER_BASE_URL / TINKER_API_KEY
    journey.step("models", lambda: sorted(
        (m.model_name, m.max_context_length, m.trainable, m.sampleable)
        for m in rest.get_server_capabilities().result(timeout=TIMEOUT_S).supported_models))
    journey.step("whoami", lambda: rest.whoami().result(timeout=TIMEOUT_S).model_dump())
    journey.step("runs_in_project", lambda: [r.training_run_id == run_id for r in rest.list_training_runs(
        project_id="journey", access_scope="owned").result(timeout=TIMEOUT_S).training_runs])
    journey.step("runs_elsewhere", lambda: len(rest.list_training_runs(project_id="nowhere").result(
        timeout=TIMEOUT_S).training_runs))
    journey.step("run", lambda: rest.get_training_run(run_id, access_scope="owned").result(
        timeout=TIMEOUT_S).lora_rank)

    def checkpoint(path: str) -> Any:
        found = [c for c in rest.list_checkpoints(path.removeprefix("tinker://").split("/")[0]).result(
            timeout=TIMEOUT_S).checkpoints if c.tinker_path == path]
        return found[0] if found else None

    journey.step("saved_metadata", lambda: {"user_metadata": checkpoint(state_path).user_metadata,
                                            "expires": checkpoint(state_path).expires_at is not None})

    def ttl() -> float:
        rest.set_checkpoint_ttl_from_tinker_path(state_path, 3600).result(timeout=TIMEOUT_S)
        seen = checkpoint(state_path)
        return round((seen.expires_at - seen.time).total_seconds() / 60)  # minutes after the save

    journey.step("ttl_minutes", ttl)

    def copy() -> dict[str, Any]:
        copied = rest.copy_weights(sampler_path, "journey-archive", ttl_seconds=3600).result(timeout=TIMEOUT_S)
        seen = checkpoint(copied)
        return {"path": copied, "kind": copied.split("/")[-2], "expires": seen.expires_at is not None,
                "same_tokens": _tokens(service, copied) == _tokens(service, sampler_path),
                "in_archive": len(rest.list_training_runs(project_id="journey-archive").result(
                    timeout=TIMEOUT_S).training_runs)}

    copied = journey.step("copy_weights", copy) or {}
    journey.step("service_copy", lambda: service.copy_weights(state_path).result(timeout=TIMEOUT_S).split("/")[-2:])
    journey.step("runs_in_project_after_copy", lambda: len(rest.list_training_runs(project_id="journey").result(
        timeout=TIMEOUT_S).training_runs))
    journey.step("audit_events", lambda: sorted({e.event for e in tinker.AdminClient().get_audit_log().result(
        timeout=TIMEOUT_S).entries}))

    def trace() -> dict[str, Any]:
        url = rest.export_session_trace(session_id).result(timeout=TIMEOUT_S)
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as answer:  # no key: the URL is the secret
            data = json.load(answer)
        slices = [e for e in data["traceEvents"] if e["ph"] == "X"]
        return {"endpoints": sorted({e["name"] for e in slices if e["pid"] == 1}),
                "timed": all(isinstance(e["ts"], int) and e["dur"] >= 0 for e in slices)}

    journey.step("trace", trace)

    if external is not None:
        def files() -> dict[str, str]:
            urls = rest.get_external_weights_urls(external).result(timeout=TIMEOUT_S).urls
            out = {}
            for name, url in sorted(urls.items()):
                with urllib.request.urlopen(url, timeout=TIMEOUT_S) as answer:
                    out[name] = hashlib.sha256(answer.read()).hexdigest()
            return out

        journey.step("external_files", files)

    def delete_copy() -> bool:
        rest.delete_checkpoint_from_tinker_path(copied["path"]).result(timeout=TIMEOUT_S)
        return checkpoint(copied["path"]) is None

    journey.step("delete_copy", delete_copy)
    journey.report()


if __name__ == "__main__":
    main()
