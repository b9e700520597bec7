"""AdminClient (the official SDK 0.38's): the REST reads that need an organization admin role.

Constructed as a RestClient is (``AdminClient(service)`` over a ServiceClient's connections, or
``AdminClient(base_url=..., api_key=...)`` on its own), and answering through one: the billing reads are
the RestClient's (0.38 keeps them there too, deprecated), and so is the audit log.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

from tinker_actors.clients.rest import AuditEventType, RestClient
from tinker_actors.futures import APIFuture
from tinker_actors.types import AuditLogResponse, BillingUsageResponse, CurrentCheckpointStorageUsageResponse

if TYPE_CHECKING:
    from tinker_actors.clients.service import ServiceClient
    from tinker_actors.telemetry import SessionTelemetry

__all__ = ["AdminClient"]


class AdminClient:
    """Billing usage, checkpoint storage and the audit log of the caller's organization (the server checks the
    role)."""

    def __init__(self, service: ServiceClient | None = None, *, base_url: str | None = None,
                 api_key: str | None = None) -> None:
        self._rest = RestClient(service, base_url=base_url, api_key=api_key)

    def get_telemetry(self) -> SessionTelemetry | None:
        """As ``RestClient.get_telemetry()``."""
        return self._rest.get_telemetry()

    def get_billing_usage(self, starting_on: datetime | str, ending_before: datetime | str
                          ) -> APIFuture[BillingUsageResponse]:
        """Hourly usage buckets (``RestClient.get_billing_usage``)."""
        return self._rest.get_billing_usage(starting_on, ending_before)

    async def get_billing_usage_async(self, starting_on: datetime | str, ending_before: datetime | str
                                      ) -> BillingUsageResponse:
        return await self._rest.get_billing_usage_async(starting_on, ending_before)

    def get_current_checkpoint_storage_usage(self, project_id: str | None = None
                                             ) -> APIFuture[CurrentCheckpointStorageUsageResponse]:
        """Active checkpoints and their projected cost (``RestClient.get_current_checkpoint_storage_usage``)."""
        return self._rest.get_current_checkpoint_storage_usage(project_id)

    async def get_current_checkpoint_storage_usage_async(self, project_id: str | None = None
                                                         ) -> CurrentCheckpointStorageUsageResponse:
        return await self._rest.get_current_checkpoint_storage_usage_async(project_id)

    def get_audit_log(self, event_type: AuditEventType = "all", day: date | None = None
                      ) -> APIFuture[AuditLogResponse]:
        """One UTC day of the organization's audit log (``RestClient.get_audit_log``)."""
        return self._rest.get_audit_log(event_type, day)

    async def get_audit_log_async(self, event_type: AuditEventType = "all", day: date | None = None
                                  ) -> AuditLogResponse:
        return await self._rest.get_audit_log_async(event_type, day)
