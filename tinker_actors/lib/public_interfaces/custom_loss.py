"""``tinker.lib.public_interfaces.custom_loss`` of the official SDK 0.38: ``LossHandle`` and ``PerDatumLossFn``,
re-exported (they run on the client here; see ``tinker_actors.training.loss_handles``)."""

from tinker_actors.training.loss_handles import LossHandle, PerDatumLossFn

__all__ = ["LossHandle", "PerDatumLossFn"]
