"""The official tinker==0.38.0 SDK as a witness for the 0.38 wire tests (run with ITS interpreter).

It cannot share a virtualenv with tinker==0.6.3 (same package name), so the tests start this script
with ``.venv-tinker038/bin/python`` and talk to it over pipes: one JSON request per line on stdin,
one JSON answer per line on stdout. It never imports tinker_actors (not installed there); our
generated protobuf module is loaded by path when asked.

Requests: ``{"op": <name>, ...}``; answers: ``{"ok": true, "result": ...}`` or ``{"ok": false,
"error": "..."}``. Bytes travel as hex strings.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import traceback
from typing import Any

import numpy as np
import tinker
import zstandard
from google.protobuf import descriptor_pb2
from google.protobuf.json_format import MessageToDict
from tinker import types
from tinker.proto import response_conv
from tinker.proto import tinker_public_pb2 as pb
from tinker.resources.training import AsyncTrainingResource

_DTYPES = {"float32": np.float32, "int64": np.int64, "int32": np.int32}
_PROTO_DTYPES = {"float32": pb.DTYPE_FLOAT32, "int64": pb.DTYPE_INT64, "int32": pb.DTYPE_INT32,
                 "bfloat16": pb.DTYPE_BFLOAT16}


# -- forward_backward requests: encoded by the SDK's own resource method, the way it goes on the wire --

class _CapturingClient:
    """Just enough of AsyncTinker for AsyncTrainingResource: records the POST instead of sending it."""

    def __init__(self, compress: bool) -> None:
        self._client_config = types.ClientConfigResponse(proto_compress_fwdbwd=compress)
        self.captured: dict[str, Any] = {}
        self.get = self.patch = self.put = self.delete = self.get_api_list = self._unexpected

    def _unexpected(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("only POST is expected")

    async def post(self, path: str, *, body: bytes, options: dict[str, Any], cast_to: Any) -> Any:
        self.captured = {"path": path, "body": body, "headers": dict(options.get("headers") or {})}
        return types.UntypedAPIFuture(request_id="captured")


def _official_datum(spec: dict[str, Any]) -> Any:
    chunks: list[Any] = []
    for chunk in spec["chunks"]:
        if chunk["type"] == "encoded_text":
            chunks.append(types.EncodedTextChunk(tokens=chunk["tokens"]))
        else:
            chunks.append(types.ImageChunk(data=bytes.fromhex(chunk["data_hex"]), format=chunk["format"],
                                           expected_tokens=chunk.get("expected_tokens")))
    inputs = {name: types.TensorData(data=np.asarray(t["data"], dtype=_DTYPES[t["dtype"]]), dtype=t["dtype"],
                                     shape=t.get("shape"))
              for name, t in spec["inputs"].items()}
    spans: dict[str, Any] = {}
    if spec.get("provenance"):
        spans = {"model_input_spans": [types.PromptProvenanceSpan(sequence_id="seq-a", offset=0, length=2)],
                 "loss_fn_input_spans": [types.SampledProvenanceSpan(sequence_id="seq-b", offset=1, length=2)]}
    return types.Datum(model_input=types.ModelInput(chunks=chunks), loss_fn_inputs=inputs, **spans)


def encode_forward_backward(case: dict[str, Any], compress: bool) -> dict[str, Any]:
    request = types.ForwardBackwardRequest(
        forward_backward_input=types.ForwardBackwardInput(
            data=[_official_datum(d) for d in case["datums"]], loss_fn=case["loss_fn"],
            loss_fn_config=case.get("loss_fn_config")),
        model_id=case["model_id"], seq_id=case["seq_id"])
    client = _CapturingClient(compress)
    asyncio.run(AsyncTrainingResource(client).forward_backward(  # type: ignore[arg-type]
        request=request, forward_only=case.get("forward_only", False)))
    captured = client.captured
    return {"path": captured["path"], "body_hex": captured["body"].hex(), "headers": captured["headers"]}


def to_dict(message_name: str, body_hex: str, zstd: bool = False) -> dict[str, Any]:
    """The official message class's reading of the bytes, as a dict (maps compare without order)."""
    body = bytes.fromhex(body_hex)
    if zstd:
        body = zstandard.ZstdDecompressor().decompress(body)
    message = getattr(pb, message_name)()
    message.ParseFromString(body)
    return MessageToDict(message, preserving_proto_field_name=True)


# -- results: built with the official message classes, read with the official readers --

def _tensor_json(tensor: Any) -> dict[str, Any]:
    array = np.asarray(tensor.to_numpy())
    return {"data": array.ravel().tolist(), "dtype": tensor.dtype, "shape": tensor.shape}


def _output_json(output: Any) -> dict[str, Any]:
    return {"loss_fn_output_type": output.loss_fn_output_type, "metrics": dict(output.metrics),
            "loss_fn_outputs": [{name: _tensor_json(t) for name, t in datum.items()}
                                for datum in output.loss_fn_outputs]}


def build_forward_backward_output(spec: dict[str, Any]) -> dict[str, Any]:
    """spec: loss_fn_output_type, metrics, records: [{num_datums, fields: {name: {dtype, trailing_shape,
    datums: [flat values]}}}]."""
    message = pb.ForwardBackwardOutput(loss_fn_output_type=spec["loss_fn_output_type"])
    for name, value in spec["metrics"].items():
        message.metrics[name] = value
    for record_spec in spec["records"]:
        record = message.loss_fn_outputs.add(num_datums=record_spec["num_datums"])
        for name, field in record_spec["fields"].items():
            if field["dtype"] == "bfloat16":  # the upper half of each float32
                arrays = [(np.asarray(v, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)
                          for v in field["datums"]]
            else:
                arrays = [np.asarray(v, dtype=_DTYPES[field["dtype"]]) for v in field["datums"]]
            offsets = np.concatenate([[0], np.cumsum([a.nbytes for a in arrays])]).astype(np.int64)
            batched = record.fields[name]
            batched.dtype = _PROTO_DTYPES[field["dtype"]]
            batched.data = b"".join(a.tobytes() for a in arrays)
            batched.offsets = offsets.tobytes()
            batched.trailing_shape.extend(field["trailing_shape"])
    body = message.SerializeToString()
    return {"body_hex": body.hex(), "official": _output_json(response_conv.deserialize_forward_backward_output(body))}


def read_forward_backward_output(body_hex: str) -> dict[str, Any]:
    return _output_json(response_conv.deserialize_forward_backward_output(bytes.fromhex(body_hex)))


def _sample_json(response: Any) -> dict[str, Any]:
    def topk(rows: Any) -> Any:
        return None if rows is None else [None if row is None else [[t, lp] for t, lp in row] for row in rows]

    return {"sequences": [{"stop_reason": s.stop_reason, "tokens": s.tokens, "logprobs": s.logprobs}
                          for s in response.sequences],
            "prompt_logprobs": response.prompt_logprobs,
            "topk_prompt_logprobs": topk(response.topk_prompt_logprobs)}


def build_sample_response(spec: dict[str, Any]) -> dict[str, Any]:
    """spec: sequences [{stop_reason, tokens, logprobs|null}], prompt_logprobs (null for NaN) | absent,
    topk: {k, rows: [[[id, lp], ...] | null]} | absent."""
    message = pb.SampleResponse()
    for seq in spec["sequences"]:
        item = message.sequences.add(stop_reason=pb.STOP_REASON_STOP if seq["stop_reason"] == "stop"
                                     else pb.STOP_REASON_LENGTH)
        item.tokens = np.asarray(seq["tokens"], dtype=np.int32).tobytes()
        if seq.get("logprobs") is not None:
            item.logprobs = np.asarray(seq["logprobs"], dtype=np.float32).tobytes()
    if "prompt_logprobs" in spec:
        values = [np.nan if v is None else v for v in spec["prompt_logprobs"]]
        message.prompt_logprobs = np.asarray(values, dtype=np.float32).tobytes()
    if "topk" in spec:
        k, rows = spec["topk"]["k"], spec["topk"]["rows"]
        ids = np.zeros((len(rows), k), dtype=np.int32)
        lps = np.full((len(rows), k), -99999.0, dtype=np.float32)
        for i, row in enumerate(rows):
            for j, (token, logprob) in enumerate(row or []):
                ids[i, j], lps[i, j] = token, logprob
        message.topk_prompt_logprobs.token_ids = ids.tobytes()
        message.topk_prompt_logprobs.logprobs = lps.tobytes()
        message.topk_prompt_logprobs.k = k
        message.topk_prompt_logprobs.length = len(rows)
    body = message.SerializeToString()
    return {"body_hex": body.hex(), "official": _sample_json(response_conv.deserialize_sample_response(body))}


def read_sample_response(body_hex: str) -> dict[str, Any]:
    return _sample_json(response_conv.deserialize_sample_response(bytes.fromhex(body_hex)))


# -- the schema --

def _descriptor_facts(file_descriptor: Any) -> dict[str, Any]:
    proto = descriptor_pb2.FileDescriptorProto()
    file_descriptor.CopyToProto(proto)

    def message_facts(message: Any, prefix: str = "") -> dict[str, Any]:
        facts: dict[str, Any] = {}
        name = prefix + message.name
        facts[name] = sorted(
            (f.name, f.number, f.label, f.type, f.type_name.rsplit(".", 1)[-1],
             message.oneof_decl[f.oneof_index].name if f.HasField("oneof_index") else "", f.proto3_optional,
             f.options.packed if f.options.HasField("packed") else None)
            for f in message.field)
        for nested in message.nested_type:
            facts.update(message_facts(nested, name + "."))
        return facts

    messages: dict[str, Any] = {}
    for message in proto.message_type:
        messages.update(message_facts(message))
    enums = {e.name: sorted((v.name, v.number) for v in e.value) for e in proto.enum_type}
    return {"syntax": proto.syntax, "messages": messages, "enums": enums}


def descriptors(ours_path: str) -> dict[str, Any]:
    """The official schema's facts, and ours loaded under THIS (newer) protobuf runtime."""
    spec = importlib.util.spec_from_file_location("tinker_actors_wire_v0_38_pb2", ours_path)
    assert spec is not None and spec.loader is not None
    ours = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ours)
    import google.protobuf

    return {"official": _descriptor_facts(pb.DESCRIPTOR), "ours": _descriptor_facts(ours.DESCRIPTOR),
            "protobuf_runtime": google.protobuf.__version__}


OPS = {
    "hello": lambda: {"tinker": tinker.__version__},
    "encode_forward_backward": encode_forward_backward,
    "to_dict": to_dict,
    "build_forward_backward_output": build_forward_backward_output,
    "read_forward_backward_output": read_forward_backward_output,
    "build_sample_response": build_sample_response,
    "read_sample_response": read_sample_response,
    "descriptors": descriptors,
}


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            result = OPS[request.pop("op")](**request)
            answer = {"ok": True, "result": result}
        except Exception:
            answer = {"ok": False, "error": traceback.format_exc()}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
