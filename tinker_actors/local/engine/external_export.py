"""The files of an external weights export (0.38's ``save_weights_external``) from a model's LoRA state.

The official service writes a Hugging Face style adapter; the local one does the same for its tiny model:
``adapter_model.safetensors`` (every LoRA matrix under its name, little-endian, in the safetensors layout:
an 8-byte header length, a JSON header of dtypes, shapes and byte ranges, then the raw bytes) and
``adapter_config.json`` (base model, rank, which parts are adapted). Written here by hand, so the service
needs no safetensors package; any safetensors reader opens the file.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "export_files", "safetensors_bytes"]

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
_META_PREFIX = "meta."
_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.float16): "F16",
           np.dtype(np.int64): "I64", np.dtype(np.int32): "I32"}


def safetensors_bytes(tensors: Mapping[str, npt.NDArray[Any]], metadata: Mapping[str, str] | None = None) -> bytes:
    """``tensors`` in the safetensors format (names sorted; the header padded with spaces to 8 bytes)."""
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        dtype = _DTYPES.get(array.dtype)
        if dtype is None:
            raise ValueError(f"tensor {name!r} has dtype {array.dtype}, which the export does not write")
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def export_files(state: Mapping[str, npt.NDArray[Any]], *, base_model: str, rank: int,
                 train_mlp: bool, train_attn: bool, train_unembed: bool) -> dict[str, bytes]:
    """The export of a model's state (``Trainer.state(with_optimizer=False)``): ``{relative path: bytes}``."""
    tensors = {name: array for name, array in state.items()
               if not name.startswith(_META_PREFIX) and array.dtype.kind in "fi"}
    if not tensors:
        raise ValueError("the model has no adapter weights to export")
    config = {"peft_type": "LORA", "base_model_name_or_path": base_model, "r": rank, "lora_alpha": rank,
              "train_mlp": train_mlp, "train_attn": train_attn, "train_unembed": train_unembed,
              "exported_by": "tinker-actors local service"}
    return {ADAPTER_WEIGHTS: safetensors_bytes(tensors, {"format": "pt", "base_model": base_model}),
            ADAPTER_CONFIG: (json.dumps(config, indent=1, sort_keys=True) + "\n").encode()}
