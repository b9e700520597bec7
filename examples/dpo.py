"""Journey 8: DPO with a custom loss, against the embedded local service (no API key, < 30 s).

    .venv/bin/python examples/dpo.py

Preference pairs come from the shipped corpus: the same prompt, the real continuation as *chosen* and a
continuation taken from elsewhere as *rejected*. The reference model is the starting weights
(``save_weights_and_get_sampling_client`` once, at the start); its logprobs for both completions are gathered
concurrently with ``compute_logprobs_async``. Each step submits ``forward_backward_custom`` with the DPO loss
and the ``optim_step`` right behind it without waiting in between (the order is kept by the client).
The preference accuracy and the reward margin rise as the policy learns to prefer the real continuation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import numpy as np
from _endpoint import corpus_text, service_endpoint

import tinker_actors as tinker
from tinker_actors.training.regularizers import Logprobs, TermValue

PROMPT, COMPLETION = 16, 12


def completion_datum(prompt: list[int], completion: list[int]) -> tinker.Datum:
    """Next-token prediction over prompt + completion; only completion tokens carry weight."""
    sequence = prompt + completion
    weights = [0.0] * (len(prompt) - 1) + [1.0] * len(completion)
    return tinker.Datum(model_input=tinker.ModelInput.from_ints(sequence[:-1]),
                        loss_fn_inputs={"target_tokens": sequence[1:], "weights": weights})


class DPOLoss:
    """-mean log sigmoid(beta * [(pi_c - ref_c) - (pi_r - ref_r)]) over pairs; pi = summed completion logprobs.

    The batch is laid out as [chosen_0, rejected_0, chosen_1, rejected_1, ...]; ``reference`` holds the
    reference model's summed completion logprobs in the same order.
    """

    def __init__(self, reference: Sequence[float], beta: float = 0.5) -> None:
        self.reference = np.asarray(reference)
        self.beta = beta

    def value_and_grad(self, data: Sequence[tinker.Datum], logprobs: Logprobs) -> TermValue:
        masks = [datum.loss_fn_inputs["weights"].to_numpy() for datum in data]
        policy = np.array([float(np.sum(lp * mask)) for lp, mask in zip(logprobs, masks, strict=True)])
        margin = (policy - self.reference)[0::2] - (policy - self.reference)[1::2]
        z = self.beta * margin
        pairs = len(z)
        value = float(np.mean(np.logaddexp(0.0, -z)))  # -log sigmoid(z), computed stably
        slope = -self.beta * (1.0 / (1.0 + np.exp(z))) / pairs  # d value / d margin, per pair
        grads = []
        for index, mask in enumerate(masks):
            sign = 1.0 if index % 2 == 0 else -1.0
            grads.append(sign * slope[index // 2] * mask)
        return TermValue(value, grads, {"dpo/loss": value, "dpo/accuracy": float(np.mean(margin > 0)),
                                        "dpo/margin": float(np.mean(margin))})


async def reference_sums(reference: tinker.SamplingClient, data: Sequence[tinker.Datum]) -> list[float]:
    """Summed completion logprobs under the reference model, all pairs concurrently."""
    async def one(datum: tinker.Datum) -> float:
        sequence = [*datum.model_input.to_ints(), int(datum.loss_fn_inputs["target_tokens"].data[-1])]
        logprobs = await reference.compute_logprobs_async(tinker.ModelInput.from_ints(sequence))
        mask = datum.loss_fn_inputs["weights"].to_numpy()
        return float(np.sum(np.asarray(logprobs[1:], dtype=np.float64) * mask))

    return list(await asyncio.gather(*(one(datum) for datum in data)))


def main(steps: int = 25, pairs: int = 6) -> None:
    started = time.monotonic()
    rng = np.random.default_rng(0)
    with service_endpoint() as endpoint, tinker.ServiceClient(base_url=endpoint.base_url,
                                                              api_key=endpoint.api_key) as svc:
        training = svc.create_lora_training_client("tiny-bpe", rank=8, seed=0).result()
        tokens = training.get_tokenizer().encode(corpus_text(), add_special_tokens=False)
        reference = training.save_weights_and_get_sampling_client().result()  # the starting weights, frozen
        adam = tinker.AdamParams(learning_rate=3e-4)
        # A small fixed preference set, as in a DPO epoch loop; the reference logprobs are computed once.
        data: list[tinker.Datum] = []
        for start in rng.integers(0, len(tokens) - PROMPT - COMPLETION, pairs):
            prompt = tokens[int(start):int(start) + PROMPT]
            chosen = tokens[int(start) + PROMPT:int(start) + PROMPT + COMPLETION]
            other = int(rng.integers(0, len(tokens) - COMPLETION))
            data += [completion_datum(prompt, chosen), completion_datum(prompt, tokens[other:other + COMPLETION])]
        loss = DPOLoss(asyncio.run(reference_sums(reference, data)))
        print(f"{'step':>4} {'dpo loss':>9} {'accuracy':>9} {'margin':>8}")
        first_accuracy = last_accuracy = 0.0
        for step in range(steps):
            result = training.forward_backward_custom(data, loss)
            training.optim_step(adam)  # submitted at once: it can never overtake the backward pass
            metrics = result.result(60).metrics
            if step == 0:
                first_accuracy = metrics["dpo/accuracy"]
            last_accuracy = metrics["dpo/accuracy"]
            if step % 4 == 0 or step == steps - 1:
                print(f"{step:>4} {metrics['dpo/loss']:>9.4f} {metrics['dpo/accuracy']:>9.2f} "
                      f"{metrics['dpo/margin']:>8.3f}")
        print(f"preference accuracy: {first_accuracy:.2f} -> {last_accuracy:.2f}")
    print(f"done in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
