"""The credential of one ServiceClient: where it comes from, and the token holder its HTTP layer reads.

::

    auth = ClientAuth(runtime, config)          # the source (typed errors if none); a command runs here
    http = HttpLayer(config, tokens=auth.tokens)
    ... negotiate the protocol (client/config is sent with the credential itself) ...
    auth.follow(exchange=profile.token_exchange, command_required=profile.credential_cmd_required, http=http)
    ...
    auth.close()

An API key is sent as it is unless the server enables token exchange; a ``TINKER_CREDENTIAL_CMD`` credential
is kept fresh by a command keeper; with token exchange, an exchange keeper takes over. Keepers are shared by
every ServiceClient of the same base URL and credential (:mod:`tinker_actors.auth.keeper`). Everything here
runs in the caller's thread (a user's, never an actor's or the IoLoop's): it may wait for a first token.
"""

from __future__ import annotations

from typing import NoReturn

from tinker_actors.auth.keeper import attach_keeper, release_keeper
from tinker_actors.auth.sources import CredentialSource, credential_source
from tinker_actors.auth.tokens import TokenHolder
from tinker_actors.config import Config
from tinker_actors.http import HttpLayer
from tinker_actors.runtime import Runtime

__all__ = ["ClientAuth"]


class ClientAuth:
    """See the module docstring. Never shows or pickles the credential."""

    def __init__(self, runtime: Runtime, config: Config) -> None:
        self._runtime = runtime
        self._config = config
        self.source: CredentialSource = credential_source(config)
        self._keeper: tuple[CredentialSource, bool] | None = None
        static = self.source.static_value()
        if static is None:
            self.tokens = self._attach(self.source, exchange=False)
        else:
            self.tokens = TokenHolder.static(static, self.source.label)

    def __repr__(self) -> str:
        return f"ClientAuth(source={self.source.label!r}, exchange={self.exchanging})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a ClientAuth holds a credential and is never pickled")

    @property
    def exchanging(self) -> bool:
        """Whether requests send tokens exchanged for the credential."""
        return self._keeper is not None and self._keeper[1]

    def follow(self, *, exchange: bool, command_required: bool, http: HttpLayer) -> None:
        """Apply what the server said (``pjwt_auth_enabled``, ``credential_default_source``): with token
        exchange, ``http`` sends exchanged tokens from now on (the first one is fetched before this returns)."""
        if not exchange:
            return
        source = credential_source(self._config, command_required=command_required)
        holder = self._attach(source, exchange=True)
        previous, self._keeper = self._keeper, (source, True)
        self.source, self.tokens = source, holder
        http.use_tokens(holder)
        if previous is not None and previous != self._keeper:
            release_keeper(self._runtime, self._config, previous[0], exchange=previous[1], user=self)

    def close(self) -> None:
        """This client no longer sends the keeper's tokens (the keeper stops when nobody does)."""
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            release_keeper(self._runtime, self._config, keeper[0], exchange=keeper[1], user=self)

    def _attach(self, source: CredentialSource, *, exchange: bool) -> TokenHolder:
        holder = attach_keeper(self._runtime, self._config, source, exchange=exchange, user=self)
        self._keeper = (source, exchange)
        try:
            holder.first_token(holder.wait_limit)
        except BaseException:
            self.close()
            raise
        return holder
