"""Quickstart: supervised fine-tuning end to end, against the embedded local service (no API key).

    make demo                      # or: .venv/bin/python examples/quickstart.py

With TINKER_BASE_URL and TINKER_API_KEY set it talks to that service instead (pass --base-model too).
It trains a LoRA adapter on the corpus shipped with tinker-actors, prints a loss table that falls,
samples before and after, saves a checkpoint, resumes training from it with the optimizer state, and
lists the checkpoints.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _endpoint import corpus_text, corpus_windows, service_endpoint

import tinker_actors as tinker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", default="tiny-bpe")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    args = parser.parse_args()
    started = time.monotonic()
    rng = np.random.default_rng(0)
    text = corpus_text()

    with service_endpoint() as endpoint, tinker.ServiceClient(base_url=endpoint.base_url,
                                                              api_key=endpoint.api_key) as svc:
        if endpoint.local is not None:
            print(f"local service on {endpoint.base_url} (data in {endpoint.local.config.data_dir})")
        training = svc.create_lora_training_client(args.base_model, rank=8, seed=0).result()
        tokenizer = training.get_tokenizer()
        tokens = tokenizer.encode(text, add_special_tokens=False)
        prompt = tinker.ModelInput.from_ints(tokenizer.encode("The keeper climbed", add_special_tokens=False))
        params = tinker.SamplingParams(max_tokens=24, temperature=0.7, seed=7)

        before = training.save_weights_and_get_sampling_client().result().sample(prompt, 1, params).result(60)
        print(f"\nbefore: The keeper climbed{tokenizer.decode(before.sequences[0].tokens)!r}\n")

        adam = tinker.AdamParams(learning_rate=args.learning_rate)
        held_out = corpus_windows(tokens, args.length, 4, np.random.default_rng(123))
        print(f"{'step':>4} {'train loss/token':>17} {'held-out loss/token':>20}")
        for step in range(args.steps):
            batch = corpus_windows(tokens, args.length, args.batch, rng)
            # Submitted back to back: the order is a contract, both reach the server in this order.
            fwd_bwd = training.forward_backward(batch, "cross_entropy")
            training.optim_step(adam)
            loss = fwd_bwd.result(60).metrics["loss:sum"] / (args.batch * args.length)
            if step % 5 == 0 or step == args.steps - 1:
                held = training.forward(held_out, "cross_entropy").result(60).metrics["loss:sum"] / (4 * args.length)
                print(f"{step:>4} {loss:>17.3f} {held:>20.3f}")

        checkpoint = training.save_state("quickstart-final").result(60)
        after = training.save_weights_and_get_sampling_client().result().sample(prompt, 1, params).result(60)
        print(f"\nafter:  The keeper climbed{tokenizer.decode(after.sequences[0].tokens)!r}")
        print(f"saved:  {checkpoint.path}")

        resumed = svc.create_training_client_from_state_with_optimizer(checkpoint.path).result()
        batch = corpus_windows(tokens, args.length, args.batch, rng)
        resumed.forward_backward(batch, "cross_entropy")
        resumed.optim_step(adam).result(60)
        print(f"resumed training from it as {resumed.model_id}")

        rest = svc.create_rest_client()
        print("checkpoints:")
        for ckpt in rest.list_user_checkpoints().result(30).checkpoints:
            print(f"  {ckpt.checkpoint_type:<8} {ckpt.tinker_path}")
        print(f"\nactor tree:\n{svc.runtime.tree()}")
    print(f"done in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
