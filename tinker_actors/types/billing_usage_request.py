"""``tinker.types.billing_usage_request`` of the official SDK 0.38: the same objects, re-exported."""

from tinker_actors.types.billing import GetBillingUsageRequest

__all__ = ["GetBillingUsageRequest"]
