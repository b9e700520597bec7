"""Journey 1, smoke test: is the service there, and can I sample from a base model?

    .venv/bin/python examples/hello.py [--base-model tiny-bpe]

ServiceClient -> get_server_capabilities -> create_sampling_client(base_model) -> get_tokenizer ->
sample(...).result(). Runs against the embedded local service unless TINKER_BASE_URL and TINKER_API_KEY
are set.
"""

from __future__ import annotations

import argparse

from _endpoint import service_endpoint

import tinker_actors as tinker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", default="tiny-bpe")
    parser.add_argument("--prompt", default="The lighthouse keeper")
    args = parser.parse_args()

    with service_endpoint() as endpoint, \
            tinker.ServiceClient(base_url=endpoint.base_url, api_key=endpoint.api_key) as service:
        models = [m.model_name for m in service.get_server_capabilities().supported_models]
        print(f"models: {', '.join(str(name) for name in models)}")

        sampler = service.create_sampling_client(base_model=args.base_model).result()
        tokenizer = sampler.get_tokenizer()
        prompt = tinker.ModelInput.from_ints(tokenizer.encode(args.prompt, add_special_tokens=False))
        params = tinker.SamplingParams(max_tokens=20, temperature=0.8, seed=1)
        # result() always has a deadline here: a sample that cannot finish fails with a typed error.
        response = sampler.sample(prompt, num_samples=2, sampling_params=params).result(timeout=60)
        for i, sequence in enumerate(response.sequences):
            print(f"sample {i}: {args.prompt}{tokenizer.decode(sequence.tokens)!r} "
                  f"({len(sequence.tokens)} tokens, stop={sequence.stop_reason})")
    print("hello: ok")


if __name__ == "__main__":
    main()
