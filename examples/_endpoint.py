"""What every example shares: where the service is, and the text it trains on.

By default each example starts the embedded local service (no API key, nothing downloaded). With
``TINKER_BASE_URL`` and ``TINKER_API_KEY`` set, it talks to that service instead; pass a base model the
service knows with ``--base-model``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

import tinker_actors as tinker
from tinker_actors.local import LocalService

__all__ = ["Endpoint", "corpus_text", "corpus_windows", "service_endpoint"]


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    api_key: str
    local: LocalService | None
    """The embedded service when we started one (examples use it to inject faults or read counters)."""


@contextlib.contextmanager
def service_endpoint(**local_options: Any) -> Iterator[Endpoint]:
    """A real service from the environment, or an embedded local one for the duration of the block."""
    if os.environ.get("TINKER_BASE_URL") and os.environ.get("TINKER_API_KEY"):
        yield Endpoint(os.environ["TINKER_BASE_URL"], os.environ["TINKER_API_KEY"], None)
        return
    with LocalService(**local_options) as local:
        yield Endpoint(local.base_url, local.api_key, local)


def corpus_text() -> str:
    """The small English corpus shipped with tinker-actors (so the examples need no download)."""
    return resources.files("tinker_actors.local").joinpath("assets/corpus.txt").read_text(encoding="utf-8")


def corpus_windows(tokens: list[int], length: int, count: int, rng: np.random.Generator) -> list[tinker.Datum]:
    """``count`` random windows of ``tokens`` as next-token-prediction examples (every token weighs 1)."""
    data = []
    for start in rng.integers(0, len(tokens) - length - 1, count):
        window = tokens[int(start):int(start) + length + 1]
        data.append(tinker.Datum(model_input=tinker.ModelInput.from_ints(window[:-1]),
                                 loss_fn_inputs={"target_tokens": window[1:], "weights": [1.0] * length}))
    return data
