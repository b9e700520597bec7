"""Protocol 0.38's sample settings on the client: checked before anything is sent, and the answer checked
for what they asked.

As the official 0.38 SDK: ``target_prompt_logprobs`` must be an int64 2-D tensor, ``prompt_alt_tokens_k`` at
least 0, ``prompt_logprobs_last_n`` at least 1 and only with prompt logprobs (the server checks the rest
against the prompt). A server that predates a setting ignores it and answers without it; rather than hand
back a result missing what was asked, the sample fails with :class:`APIResponseValidationError`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinker_actors.errors import APIResponseValidationError, InvalidInputError, UnsupportedFeatureError
from tinker_actors.types import SampleResponse, TensorData

__all__ = ["AskedOutputs", "sample_outputs_asked", "stability_setting"]


@dataclass(frozen=True, slots=True)
class AskedOutputs:
    """What a sample asked for that an older server could silently leave out."""

    prompt_alt_tokens_k: int
    prompt_logprobs_last_n: int | None

    def check(self, response: SampleResponse) -> SampleResponse:
        if self.prompt_alt_tokens_k > 0 and response.prompt_alt_tokens is None:
            raise APIResponseValidationError(
                f"prompt_alt_tokens_k={self.prompt_alt_tokens_k} was asked for but the server returned no "
                "prompt_alt_tokens; it may predate this setting", status_code=200)
        last_n = self.prompt_logprobs_last_n
        prompt = response.prompt_logprobs_np
        if last_n is not None and prompt is not None and not np.isnan(prompt[: max(prompt.size - last_n, 0)]).all():
            raise APIResponseValidationError(
                f"prompt_logprobs_last_n={last_n} was asked for but the server scored prompt tokens before that "
                "suffix; it may predate this setting", status_code=200)
        return response


def sample_outputs_asked(target_prompt_logprobs: TensorData | None, prompt_alt_tokens_k: int,
                         prompt_logprobs_last_n: int | None, include_prompt_logprobs: bool) -> AskedOutputs | None:
    """Checks the settings (:class:`InvalidInputError`); what to check in the answer, or None when nothing."""
    if target_prompt_logprobs is not None:
        if not isinstance(target_prompt_logprobs, TensorData):
            raise InvalidInputError("target_prompt_logprobs must be a TensorData (TensorData.from_numpy(ids) or "
                                    f"TensorData.from_numpy_sparse(ids, pad_value=-1)), got "
                                    f"{type(target_prompt_logprobs).__name__}")
        if target_prompt_logprobs.dtype != "int64":
            raise InvalidInputError("target_prompt_logprobs must be an int64 tensor of token ids, got "
                                    f"{target_prompt_logprobs.dtype}")
        shape = target_prompt_logprobs.shape
        if shape is None or len(shape) != 2:
            raise InvalidInputError(f"target_prompt_logprobs must be 2-D, [len(prompt) - 1, K], got shape {shape}")
    if isinstance(prompt_alt_tokens_k, bool) or not isinstance(prompt_alt_tokens_k, int) or prompt_alt_tokens_k < 0:
        raise InvalidInputError(f"prompt_alt_tokens_k must be 0 or greater, got {prompt_alt_tokens_k!r}")
    if prompt_logprobs_last_n is not None:
        if isinstance(prompt_logprobs_last_n, bool) or not isinstance(prompt_logprobs_last_n, int) \
                or prompt_logprobs_last_n < 1:
            raise InvalidInputError(f"prompt_logprobs_last_n must be 1 or greater, got {prompt_logprobs_last_n!r}")
        if not include_prompt_logprobs:
            raise InvalidInputError("prompt_logprobs_last_n applies to prompt logprobs; set include_prompt_logprobs")
    if prompt_alt_tokens_k > 0 or prompt_logprobs_last_n is not None:
        return AskedOutputs(prompt_alt_tokens_k, prompt_logprobs_last_n)
    return None


def stability_setting(value: object, protocol: str | None = None) -> bool:
    """``record_stability_info`` as given to a sampling client's factory: a bool (a truthy string must not turn
    recording on by accident), and True only on protocol 0.38 when the protocol is known (``None``: not yet).
    Else :class:`InvalidInputError` / :class:`UnsupportedFeatureError`, before anything is sent."""
    if not isinstance(value, bool):
        raise InvalidInputError(f"record_stability_info is True or False, got {type(value).__name__}")
    if value and protocol is not None and protocol != "0.38":
        raise UnsupportedFeatureError(
            f"SampleRequest.record_stability_info needs protocol 0.38; this client speaks {protocol} with its server "
            "(leave record_stability_info at False, or use a server that speaks 0.38: docs/protocols.md)",
            feature="SampleRequest.record_stability_info")
    return value
