"""Checkpoint saves and loads of 0.38 (FEATURES T11) as a user writes them, run by either SDK.

Usage: ``journey_checkpoints.py [tinker|tinker_actors]`` (see ``journey_training.py``: only the import
differs). Each call is awaited before the next: a model trained one step; ``save_state`` with
``user_metadata`` and ``ttl_seconds``, the same name again without ``overwrite`` (refused), then with it;
``save_weights_for_sampler`` with both; the listing; ``create_training_client_from_state_with_optimizer``
with a base-model override that fits (same logprobs as the source) and one that does not (refused);
``save_weights_external`` and its file URLs. The last stdout line is ``{"steps": ..., "values": ...}``.
"""

from __future__ import annotations

import sys
from typing import Any

if sys.argv[1:2] == ["tinker_actors"]:
    import tinker_actors as tinker
    from tinker_actors import types
else:
    import tinker  # type: ignore[no-redef]
    from tinker import types  # type: ignore[no-redef]

try:
    from journey_kit import Journey, done  # run as a script: its folder is first on sys.path
except ImportError:  # imported by a test, for its constants
    from tests.compat038.journey_kit import Journey, done

TIMEOUT_S = 30.0
SEQUENCE = list(b"the cat sat on the mat")


def _done(value: Any) -> Any:
    return done(value, TIMEOUT_S)


def _datum() -> Any:
    return types.Datum(model_input=types.ModelInput.from_ints(SEQUENCE[:-1]),
                       loss_fn_inputs={"target_tokens": SEQUENCE[1:], "weights": [1.0] * (len(SEQUENCE) - 1)})


def _logprobs(training: Any) -> list[float]:
    out = training.forward([_datum()], "cross_entropy").result(timeout=TIMEOUT_S)
    return [float(x) for x in out.loss_fn_outputs[0]["logprobs"].tolist()]


def main() -> None:
    journey = Journey()
    client = tinker.ServiceClient()
    training = _done(client.create_lora_training_client(base_model="tiny-byte", rank=4, seed=3))
    journey.step("train", lambda: (training.forward_backward([_datum()], "cross_entropy").result(timeout=TIMEOUT_S),
                                   training.optim_step(types.AdamParams(learning_rate=1e-2)).result(timeout=TIMEOUT_S)))
    path = journey.step("save_with_metadata", lambda: training.save_state(
        "journey", ttl_seconds=7200, user_metadata={"stage": "one"}).result(timeout=TIMEOUT_S).path)
    journey.refusal("save_same_name", lambda: training.save_state("journey").result(timeout=TIMEOUT_S))
    journey.step("save_overwrite", lambda: training.save_state(
        "journey", overwrite=True, user_metadata={"stage": "two"}).result(timeout=TIMEOUT_S))
    sampler = journey.step("save_sampler", lambda: training.save_weights_for_sampler(
        "journey-sampler", ttl_seconds=7200, user_metadata={"use": "eval"}).result(timeout=TIMEOUT_S).path)
    rest = client.create_rest_client()
    listed = journey.step("list", lambda: {c.tinker_path: c for c in _done(
        rest.list_checkpoints(training.model_id)).checkpoints})
    if listed and path and sampler:
        journey.values["listed"] = {name: {"user_metadata": listed[p].user_metadata,
                                           "expires": listed[p].expires_at is not None}
                                    for name, p in (("state", path), ("sampler", sampler))}
    if path:
        restored = journey.step("from_state", lambda: _done(client.create_training_client_from_state_with_optimizer(
            path, base_model="tiny-byte")))
        if restored is not None:
            journey.values["same_logprobs"] = journey.step(
                "compare", lambda: max(abs(a - b) for a, b in zip(_logprobs(restored), _logprobs(training),
                                                                  strict=True)) < 1e-5)
        journey.refusal("from_state_other_base", lambda: _done(client.create_training_client_from_state(
            path, base_model="tiny-bpe")))
    external = journey.step("save_external", lambda: training.save_weights_external("journey-export").result(
        timeout=TIMEOUT_S).path)
    if external:
        journey.values["external_path_kind"] = external.split("/")[-2]
        urls = journey.step("external_urls", lambda: _done(rest.get_external_weights_urls(external)).urls)
        journey.values["external_files"] = sorted(urls or {})
    journey.report()


if __name__ == "__main__":
    main()
