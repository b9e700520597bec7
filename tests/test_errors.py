"""The error tree: official names kept, categories and retryability right, user-error classification."""

from __future__ import annotations

import pytest

from tinker_actors import errors as E


@pytest.mark.parametrize(("status", "cls", "category", "retryable"), [
    (400, E.BadRequestError, "user", False), (401, E.AuthenticationError, "user", False),
    (403, E.PermissionDeniedError, "user", False), (404, E.NotFoundError, "user", False),
    (409, E.ConflictError, "user", True), (410, E.FutureExpiredError, "server", False),
    (422, E.UnprocessableEntityError, "user", False), (429, E.RateLimitError, "unknown", True),
    (500, E.InternalServerError, "server", True), (503, E.InternalServerError, "server", True),
    (408, E.APIStatusError, "unknown", True), (418, E.APIStatusError, "user", False)])
def test_status_mapping(status: int, cls: type[E.APIStatusError], category: str, retryable: bool) -> None:
    error = E.error_for_status(status, f"Error code: {status}")
    assert type(error) is cls
    assert error.status_code == status
    assert error.category == category and error.retryable is retryable
    assert isinstance(error, E.APIError) and isinstance(error, E.TinkerError)


def test_request_failed_error_parses_categories() -> None:
    assert E.RequestFailedError("x", request_id="r", category="User").category is E.ErrorCategory.USER
    assert E.RequestFailedError("x", request_id="r", category="bogus").category is E.ErrorCategory.UNKNOWN
    assert E.ErrorCategory.User is E.ErrorCategory.USER  # the official SDK's member names work


def test_connection_errors_are_retryable_server_errors() -> None:
    error = E.APITimeoutError()
    assert isinstance(error, E.APIConnectionError) and error.retryable and error.category == "server"
    assert str(error) == "Request timed out."


def test_caller_side_errors() -> None:
    assert isinstance(E.TinkerTimeoutError("late"), TimeoutError)
    assert isinstance(E.InvalidInputError("bad"), ValueError)
    assert isinstance(E.UnknownLossInputKeyError("k"), KeyError)
    assert E.NotSentError("x").retryable and isinstance(E.NotSentError("x"), E.ClientStoppedError)
    cause = RuntimeError("boom")
    crashed = E.ActorCrashedError("actor died", cause=cause, sent=True)
    assert crashed.__cause__ is cause and crashed.sent is True


def test_is_user_error_looks_through_causes() -> None:
    assert E.is_user_error(E.error_for_status(400, "bad"))
    assert not E.is_user_error(E.error_for_status(429, "slow down"))
    assert not E.is_user_error(E.error_for_status(500, "oops"))
    assert E.is_user_error(E.RequestFailedError("x", request_id="r", category="user"))
    try:
        try:
            raise E.error_for_status(404, "missing")
        except E.APIError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert E.is_user_error(outer)
