"""What a successful (or passed-through) HTTP call returns."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

from tinker_actors.errors import APIResponseValidationError

__all__ = ["HttpResponse"]

T = TypeVar("T")

_NOT_DECODED: Any = object()


@dataclass(frozen=True, slots=True)
class HttpResponse(Generic[T]):
    """The answer to one call, after retries.

    ``data`` is the 2xx body validated into the caller's model (or decoded JSON when no model was
    given, ``None`` for an empty body). A status the caller listed in ``accept_status`` is returned
    as is: its body is not validated, read it with :meth:`json` or :attr:`content`.
    ``attempts`` counts the requests sent (1 + retries); ``elapsed`` is the whole call in seconds,
    retries and waits included.
    """

    status_code: int
    headers: httpx.Headers
    content: bytes
    attempts: int
    elapsed: float
    _data: T

    @property
    def data(self) -> T:
        if self._data is _NOT_DECODED:
            raise APIResponseValidationError(
                f"Status {self.status_code} was passed through unvalidated; read .json() or .content",
                status_code=self.status_code)
        return self._data

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def json(self) -> Any:
        """The body decoded as JSON (``None`` if empty); :class:`APIResponseValidationError` if not JSON."""
        if not self.content:
            return None
        try:
            return json.loads(self.content)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
            raise APIResponseValidationError(
                f"Response body (status {self.status_code}) is not valid JSON",
                status_code=self.status_code) from None
