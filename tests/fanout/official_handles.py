"""The official tinker==0.38.0 SDK's sampler handles against the local service (run with ITS interpreter).

Creates a sampler, writes its handle, builds two clones from it (``from_sampler_handle``) and samples with
the original and each clone; reads a handle written by tinker-actors (``argv[1]``, optional) and samples
with it. Never imports tinker_actors. The last stdout line is a JSON summary.
"""

from __future__ import annotations

import json
import sys

import tinker
from tinker import types

PROMPT = types.ModelInput.from_ints(list(b"the "))
PARAMS = types.SamplingParams(max_tokens=2)
TIMEOUT_S = 30.0


def main() -> None:
    summary: dict[str, object] = {}
    service = tinker.ServiceClient()
    sampler = service.create_sampling_client(base_model="tiny-byte").result(timeout=TIMEOUT_S)
    summary["handle"] = handle = sampler.get_sampler_handle()
    clients = [sampler, *(tinker.SamplingClient.from_sampler_handle(handle) for _ in range(2))]
    summary["sampled"] = [len(c.sample(PROMPT, 1, PARAMS).result(timeout=TIMEOUT_S).sequences) for c in clients]
    if len(sys.argv) > 1:
        try:
            ours = tinker.SamplingClient.from_sampler_handle(sys.argv[1])
            summary["ours"] = len(ours.sample(PROMPT, 1, PARAMS).result(timeout=TIMEOUT_S).sequences)
        except Exception as error:  # reported, not raised: the test says what it expected
            summary["ours"] = f"{type(error).__name__}: {error}"
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
