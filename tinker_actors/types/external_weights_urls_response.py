"""``ExternalWeightsUrlsResponse`` (protocol 0.38): signed download URLs of exported weights.

The answer of ``RestClient.get_external_weights_urls``.
"""

from __future__ import annotations

from datetime import datetime

from tinker_actors.types._base import ResponseModel

__all__ = ["ExternalWeightsUrlsResponse"]


class ExternalWeightsUrlsResponse(ResponseModel):
    urls: dict[str, str]
    """A signed URL per file, keyed by the file's path under the checkpoint."""
    expires: datetime
    """When the URLs stop working."""
