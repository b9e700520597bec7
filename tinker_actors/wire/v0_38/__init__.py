"""Protocol 0.38 (the official SDK 0.25 and later): protobuf forward_backward and fwd/bwd and sample results.

``tinker.proto`` is the schema (our text, the official field names and numbers); ``tinker_pb2`` is
generated from it by ``make proto``; :mod:`.codec` converts between it and the domain model.
"""

from tinker_actors.wire.v0_38.codec import CODEC, ProtobufCodec

__all__ = ["CODEC", "ProtobufCodec"]
