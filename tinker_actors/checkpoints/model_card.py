"""The ``README.md`` model card of a LoRA adapter pushed to the Hugging Face Hub.

The YAML header is what the Hub reads: ``base_model`` (the model page links the adapter), ``library_name:
peft`` and tags; ``tinker_path`` names the checkpoint the adapter came from, so a later push can tell whether
a repository already holds another checkpoint (:func:`tinker_path_in_card`). Header values are written as
JSON strings, which YAML reads as they are, whatever characters a name holds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

__all__ = ["AdapterFacts", "model_card", "tinker_path_in_card"]

_TINKER_PATH = re.compile(r"tinker://[^\s`\"'<>]+")


@dataclass(frozen=True)
class AdapterFacts:
    """What the card says about the adapter (None: not known)."""

    tinker_path: str
    repo_id: str
    base_model: str | None
    lora_rank: int | None = None
    train_attn: bool | None = None
    train_mlp: bool | None = None
    train_unembed: bool | None = None


def model_card(facts: AdapterFacts) -> str:
    """The card's text (YAML header, then Markdown)."""
    base = facts.base_model
    tags = ["tinker", "tinker-actors", "peft", "lora"] + ([f"base_model:adapter:{base}"] if base else [])
    header = ["---"]
    if base:
        header.append(f"base_model: {json.dumps(base)}")
    header += ["library_name: peft", "tags:", *(f"- {json.dumps(tag)}" for tag in tags),
               f"tinker_path: {json.dumps(facts.tinker_path)}", "---"]
    details = [f"- Base model: {base or 'not recorded'}"]
    if facts.lora_rank is not None:
        details.append(f"- LoRA rank: {facts.lora_rank}")
    trained = {"attention": facts.train_attn, "MLP": facts.train_mlp, "unembedding": facts.train_unembed}
    if any(value is not None for value in trained.values()):
        details.append("- Adapted layers: " + ", ".join(
            f"{part} {'yes' if value else 'no'}" for part, value in trained.items() if value is not None))
    usage = [
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM",
        "",
        f"base = AutoModelForCausalLM.from_pretrained({json.dumps(base or '<base model>')})",
        f"model = PeftModel.from_pretrained(base, {json.dumps(facts.repo_id)})",
        "```",
    ]
    body = [
        "",
        f"# LoRA adapter of {base}" if base else "# LoRA adapter",
        "",
        "A LoRA adapter trained with the Tinker API and pushed with tinker-actors "
        "(`tinker-actors checkpoint push-hf`).",
        "",
        "## Load it",
        "",
        *usage,
        "",
        "## Where it comes from",
        "",
        f"Checkpoint `{facts.tinker_path}`.",
        "",
        *details,
        "",
    ]
    return "\n".join(header + body)


def tinker_path_in_card(text: str) -> str | None:
    """The first tinker path a model card names, or None."""
    match = _TINKER_PATH.search(text)
    return match.group(0) if match else None
