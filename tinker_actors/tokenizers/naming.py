"""Which Hub repository holds the tokenizer of a base model: the official SDK's choices, as facts.

The official SDK (0.6.3 and 0.38) loads the tokenizer named by the server's ``get_info``
(``model_data.tokenizer_id``) and, when the server names none, derives one from the model name:

* a ``:suffix`` (a deployment tag) is dropped, from the model name and from the server's tokenizer id;
* ``meta-llama/Llama-3...`` models use an ungated copy of the Llama 3 tokenizer published by Thinking
  Machines (0.38: ``thinkingmachineslabinc/meta-llama-3-instruct-tokenizer``; 0.6.3 used
  ``thinkingmachineslabinc/meta-llama-3-tokenizer``), so no Llama license gate is in the way;
* ``org/model/variant`` (a variant deployed under a model) uses ``org/model``;
* Thinking Machines' own models (``TML/...``, ``thinkingmachines/...``) have no public tokenizer: the
  official SDK refuses them unless its private ``tml_tokenizers`` package is installed.

Everything else is used as the repository id as it stands.
"""

from __future__ import annotations

import re

from tinker_actors.errors import InvalidInputError

__all__ = ["LLAMA_3_TOKENIZER_REPO", "tokenizer_repo_for"]

LLAMA_3_TOKENIZER_REPO = "thinkingmachineslabinc/meta-llama-3-instruct-tokenizer"
_UNPUBLISHED_PREFIXES = ("TML/", "thinkingmachines/")
# The Hub's rule for a repo id: [namespace/]name, letters, digits, '-', '_', '.'; at most 96 characters.
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]*$")


def tokenizer_repo_for(model_name: str | None, tokenizer_id: str | None = None) -> str:
    """The Hub repository id of the tokenizer of ``model_name`` (or of the server's ``tokenizer_id``).

    Raises :class:`~tinker_actors.errors.InvalidInputError` for a name that cannot be a repository id
    and for Thinking Machines' own models.
    """
    if tokenizer_id:
        repo = tokenizer_id.split(":", 1)[0]
    elif model_name:
        repo = _repo_from_model_name(model_name.split(":", 1)[0])
    else:
        raise InvalidInputError("get_tokenizer needs a model name or a tokenizer id")
    if repo.startswith(_UNPUBLISHED_PREFIXES):
        raise InvalidInputError(
            f"{repo!r} is a Thinking Machines model with no public tokenizer: get_tokenizer cannot load it "
            "(the official SDK needs its private tml_tokenizers package for these; build prompts with a "
            "renderer such as tml-renderers instead)")
    if len(repo) > 96 or ".." in repo or "--" in repo or not _REPO_ID.match(repo):
        raise InvalidInputError(
            f"{repo!r} is not a tokenizer shipped with tinker-actors, an existing file or directory, nor a "
            "Hugging Face Hub repository id ('org/name')")
    return repo


def _repo_from_model_name(model_name: str) -> str:
    if model_name.startswith("meta-llama/Llama-3"):
        return LLAMA_3_TOKENIZER_REPO
    if model_name.count("/") == 2:
        org, model, _variant = model_name.split("/", 2)
        return f"{org}/{model}"
    return model_name
