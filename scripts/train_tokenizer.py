"""Regenerate the tokenizers shipped with the local service's tiny models.

Writes two `tokenizers` JSON files into ``tinker_actors/local/assets/``:

- ``tiny-byte.json``: byte-level, one token per byte (id == byte value) plus ``<|endoftext|>`` (id 256).
  It has no trainable part; it is built here so both models load the same way
  (``tokenizers.Tokenizer.from_file``).
- ``tiny-bpe.json``: a byte-level BPE trained on ``assets/corpus.txt``.

Both outputs are deterministic: running the script twice gives byte-identical files (``--check`` verifies
that the shipped files are what this script produces, without writing anything).

Usage: ``python scripts/train_tokenizer.py [--check] [--vocab-size 768]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

ASSETS = Path(__file__).resolve().parent.parent / "tinker_actors" / "local" / "assets"
END_OF_TEXT = "<|endoftext|>"
DEFAULT_BPE_VOCAB_SIZE = 768


def bytes_to_unicode() -> dict[int, str]:
    """The GPT-2 byte -> printable character table that the ByteLevel pre-tokenizer uses."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codepoints = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codepoints.append(256 + extra)
            extra += 1
    return {byte: chr(cp) for byte, cp in zip(printable, codepoints, strict=True)}


def build_byte_tokenizer() -> Tokenizer:
    table = bytes_to_unicode()
    vocab = {table[byte]: byte for byte in range(256)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    # No merges, so word splitting would change nothing: skip the regex, one token per byte.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([END_OF_TEXT])
    return tokenizer


def build_bpe_tokenizer(corpus: Path, vocab_size: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train([str(corpus)], trainer)
    return tokenizer


def render(tokenizer: Tokenizer) -> str:
    return str(tokenizer.to_str(pretty=True)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="verify the shipped files; write nothing")
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_BPE_VOCAB_SIZE)
    args = parser.parse_args(argv)

    outputs = {
        ASSETS / "tiny-byte.json": render(build_byte_tokenizer()),
        ASSETS / "tiny-bpe.json": render(build_bpe_tokenizer(ASSETS / "corpus.txt", args.vocab_size)),
    }
    stale = []
    for path, text in outputs.items():
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path} ({Tokenizer.from_str(text).get_vocab_size()} tokens)")
    if stale:
        print(f"out of date: {', '.join(stale)} (run scripts/train_tokenizer.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
