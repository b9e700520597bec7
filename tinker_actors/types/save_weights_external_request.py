"""``SaveWeightsExternalRequest`` (protocol 0.38): export weights for use outside Tinker
(``tinker://<run>/external_weights/<name>``). ``TrainingClient.save_weights_external`` is not built yet here."""

from __future__ import annotations

from typing import Literal

from tinker_actors.types._base import RequestModel

__all__ = ["SaveWeightsExternalRequest"]


class SaveWeightsExternalRequest(RequestModel):
    model_id: str
    path: str
    """The export's name."""
    seq_id: int | None = None
    ttl_seconds: int | None = None
    """Seconds the export lives, 1 hour (3600) to 10 years; None: it never expires."""
    age_encryption_recipients: list[str] | None = None
    """age recipients (``age1...`` keys or SSH public keys) every file is encrypted to (``.age`` suffix);
    None: not encrypted."""
    type: Literal["save_weights_external"] = "save_weights_external"
