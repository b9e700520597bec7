"""The real backend: the tiny numpy causal LM of :mod:`tinker_actors.local.model`."""

from __future__ import annotations

from tinker_actors.local.engine.backend import (
    AdamSettings,
    Arrays,
    BaseModelDescription,
    DatumInput,
    GeneratedSequence,
    LoraSpec,
    SampleArgs,
    SampleOutput,
    SamplerEngine,
    StepOutput,
    Trainer,
)
from tinker_actors.local.model import BASE_MODELS, DatumArrays, LoraTrainer, Sampler, get_base_model

__all__ = ["NumpyBackend"]


class _NumpySampler:
    def __init__(self, sampler: Sampler) -> None:
        self._sampler = sampler

    def sample(self, args: SampleArgs) -> SampleOutput:
        out = self._sampler.sample(
            args.prompt, num_samples=args.num_samples, max_tokens=args.max_tokens,
            temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, stop=args.stop or None,
            seed=args.seed, prompt_logprobs=args.prompt_logprobs, topk_prompt_logprobs=args.topk_prompt_logprobs)
        return SampleOutput(
            sequences=[GeneratedSequence(s.tokens, s.logprobs, s.stop_reason) for s in out.sequences],
            prompt_logprobs=out.prompt_logprobs, topk_prompt_logprobs=out.topk_prompt_logprobs)


class _NumpyTrainer:
    def __init__(self, trainer: LoraTrainer) -> None:
        self._trainer = trainer

    def run(self, batch: list[DatumInput], loss_fn: str, loss_fn_config: dict[str, float | str] | None,
            *, backward: bool) -> StepOutput:
        arrays = [DatumArrays(tokens=d.tokens, loss_inputs=d.loss_fn_inputs) for d in batch]
        if backward:
            result = self._trainer.forward_backward(arrays, loss_fn, loss_fn_config)
        else:
            result = self._trainer.forward(arrays, loss_fn, loss_fn_config)
        return StepOutput(outputs=result.outputs, metrics=result.metrics)

    def optim_step(self, adam: AdamSettings) -> dict[str, float]:
        return self._trainer.optim_step(adam.learning_rate, adam.beta1, adam.beta2, adam.eps,
                                        adam.weight_decay, adam.grad_clip_norm)

    def state(self, *, with_optimizer: bool) -> Arrays:
        return self._trainer.state(with_optimizer)

    def load_state(self, arrays: Arrays, *, with_optimizer: bool) -> None:
        self._trainer.load_state(arrays, with_optimizer)

    def sampler(self) -> SamplerEngine:
        return _NumpySampler(Sampler.from_trainer(self._trainer))


class NumpyBackend:
    """Real training and sampling on the tiny numpy model (CPU-heavy: called on worker threads)."""

    instant = False

    def base_models(self) -> list[BaseModelDescription]:
        return [self.describe(name) for name in BASE_MODELS]

    def describe(self, base_model: str) -> BaseModelDescription:
        info = get_base_model(base_model)
        return BaseModelDescription(name=info.name, arch=info.arch, tokenizer_id=info.tokenizer_id,
                                    vocab_size=info.vocab_size, context_window=info.context_window)

    def new_trainer(self, base_model: str, lora: LoraSpec) -> Trainer:
        return _NumpyTrainer(LoraTrainer(base_model, lora.rank, lora.seed, lora.train_mlp, lora.train_attn,
                                         lora.train_unembed))

    def new_sampler(self, base_model: str, lora_arrays: Arrays | None) -> SamplerEngine:
        return _NumpySampler(Sampler(base_model, lora_arrays))
