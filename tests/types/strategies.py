"""Hypothesis strategies that describe requests as plain data, so the same description can be built
with our types and with the official SDK's types."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

token = st.integers(min_value=0, max_value=200_000)
tokens = st.lists(token, min_size=1, max_size=40)
finite_float = st.floats(allow_nan=False, allow_infinity=False, width=32, min_value=-1e6, max_value=1e6)
name = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)


@st.composite
def datum_spec(draw: st.DrawFn) -> dict[str, Any]:
    toks = draw(tokens)
    n = len(toks)
    inputs: dict[str, Any] = {"target_tokens": ("list", draw(st.lists(token, min_size=n, max_size=n)))}
    for key in draw(st.sets(st.sampled_from(["weights", "advantages", "logprobs"]))):
        form = draw(st.sampled_from(["list", "numpy"]))
        inputs[key] = (form, draw(st.lists(finite_float, min_size=n, max_size=n)))
    return {"tokens": toks, "inputs": inputs}


sampling_params_spec = st.fixed_dictionaries(
    {},
    optional={
        "max_tokens": st.integers(min_value=1, max_value=4096),
        "seed": st.integers(min_value=0, max_value=2**31),
        "stop": st.one_of(st.text(min_size=1, max_size=5), st.lists(st.text(min_size=1, max_size=5), max_size=3),
                          st.lists(token, min_size=1, max_size=3)),
        "temperature": st.floats(min_value=0.0, max_value=2.0),
        "top_k": st.one_of(st.just(-1), st.integers(min_value=1, max_value=100)),
        "top_p": st.floats(min_value=0.01, max_value=1.0),
    },
)

adam_spec = st.fixed_dictionaries(
    {},
    optional={
        "learning_rate": st.floats(min_value=1e-8, max_value=1.0),
        "beta1": st.floats(min_value=0.0, max_value=0.999),
        "beta2": st.floats(min_value=0.0, max_value=0.999),
        "eps": st.floats(min_value=1e-15, max_value=1e-3),
    },
)
