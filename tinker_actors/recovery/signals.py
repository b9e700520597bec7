"""Which answers mean that the service lost a training client's model (docs/guides/recovery.md).

Two kinds of answer, both about a request that names the model:

* **the submission is refused with 404 or 410**: the service does not know the model, or no longer serves it
  (it restarted, dropped the model, or the model's session ended). The request did not run. No other
  request of a training client answers 404 or 410 on submission.
* **the request was accepted, then failed**, with a ``server`` or ``unknown`` error result, or its future
  was forgotten (410 while polling): that alone does not say the model is gone, so the model's training
  run is read (``GET /api/v1/training_runs/{model_id}``, the protocol's ``corrupted`` flag, which the
  official CLI shows as status "Failed"): the model is lost if the run says ``corrupted: true``, or if the
  service no longer knows the run (404).

Anything else (a ``user`` error result, 400, 401, 429, 5xx on submission, a connection error) is not a lost
model: it reaches the caller as without recovery.
"""

from __future__ import annotations

from enum import Enum
from urllib.parse import quote

from tinker_actors.clients.context import ClientContext
from tinker_actors.config import RetryPolicy
from tinker_actors.errors import (
    APIStatusError,
    ErrorCategory,
    FutureExpiredError,
    NotFoundError,
    RequestFailedError,
    TinkerError,
)
from tinker_actors.http import Purpose
from tinker_actors.types import TrainingRun

__all__ = ["Signal", "classify", "model_is_lost"]

_PROBE_RETRY = RetryPolicy(max_retries=3, base_delay=0.2, max_delay=2.0, deadline=30.0)


class Signal(Enum):
    LOST = "lost"        # the answer itself says the model is gone
    PROBE = "probe"      # maybe: ask the model's training run


def classify(error: BaseException, *, accepted: bool) -> Signal | None:
    """What ``error`` (of a request naming the model) says about the model; None: nothing."""
    if not isinstance(error, TinkerError):
        return None
    if not accepted:
        if isinstance(error, APIStatusError) and error.status_code in (404, 410):
            return Signal.LOST
        return None
    if isinstance(error, FutureExpiredError):
        return Signal.PROBE
    if isinstance(error, RequestFailedError) and error.category is not ErrorCategory.USER:
        return Signal.PROBE
    return None


async def model_is_lost(context: ClientContext, model_id: str) -> bool:
    """Ask the model's training run (module docstring). An answer that says nothing (an error) is a no."""
    try:
        response = await context.http.request(Purpose.TRAINING, "GET",
                                              f"/api/v1/training_runs/{quote(model_id, safe=':')}",
                                              response_model=TrainingRun, retry=_PROBE_RETRY,
                                              endpoint="get_training_run")
    except NotFoundError:
        return True
    except TinkerError:
        return False
    return response.data.corrupted
