"""Journey 9, checkpoint housekeeping and export.

    .venv/bin/python examples/checkpoints.py [--keep 2]

Trains a few steps, saving a state checkpoint after each, then with the RestClient:
``list_checkpoints(run_id)`` and ``list_user_checkpoints()``; a rolling cleanup that keeps the newest
``--keep`` states (``delete_checkpoint_from_tinker_path``); ``publish`` / ``unpublish``; a TTL on the
sampler weights (``set_checkpoint_ttl_from_tinker_path``); and an export: the signed URL from
``get_checkpoint_archive_url_from_tinker_path``, an HTTP GET of it, and the files of the adapter
archive (ready to merge outside Tinker).
"""

from __future__ import annotations

import argparse
import io
import tarfile

import httpx
import numpy as np
from _endpoint import corpus_text, corpus_windows, service_endpoint

import tinker_actors as tinker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", default="tiny-bpe")
    parser.add_argument("--saves", type=int, default=4)
    parser.add_argument("--keep", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    with service_endpoint() as endpoint, \
            tinker.ServiceClient(base_url=endpoint.base_url, api_key=endpoint.api_key) as service:
        training = service.create_lora_training_client(base_model=args.base_model, rank=4, seed=0).result()
        tokens = training.get_tokenizer().encode(corpus_text(), add_special_tokens=False)
        for step in range(args.saves):
            training.forward_backward(corpus_windows(tokens, 32, 4, rng), "cross_entropy")
            training.optim_step(tinker.AdamParams(learning_rate=5e-3))
            training.save_state(f"step-{step:04d}")  # queued behind the optim_step: order is kept
        sampler_path = training.save_weights_for_sampler("export").result(timeout=60).path

        rest = service.create_rest_client()
        run_id = training.model_id
        listed = rest.list_checkpoints(run_id).result(timeout=60).checkpoints
        print(f"run {run_id} has {len(listed)} checkpoints:")
        for checkpoint in listed:
            print(f"  {checkpoint.checkpoint_type:<8} {checkpoint.checkpoint_id:<24} {checkpoint.time:%H:%M:%S}")
        total = len(rest.list_user_checkpoints().result(timeout=60).checkpoints)
        print(f"this user has {total} checkpoints in all")

        # Rolling cleanup: keep the newest `keep` state checkpoints of this run.
        states = sorted((c for c in listed if c.checkpoint_type == "training"), key=lambda c: (c.time, c.checkpoint_id))
        for old in states[:-args.keep]:
            rest.delete_checkpoint_from_tinker_path(old.tinker_path).result(timeout=60)
            print(f"deleted {old.checkpoint_id}")
        kept = [c.checkpoint_id for c in rest.list_checkpoints(run_id).result(timeout=60).checkpoints]
        print(f"kept: {', '.join(sorted(kept))}")

        newest = states[-1].tinker_path
        rest.publish_checkpoint_from_tinker_path(newest).result(timeout=60)
        public = [c.public for c in rest.list_checkpoints(run_id).result(timeout=60).checkpoints
                  if c.tinker_path == newest]
        rest.unpublish_checkpoint_from_tinker_path(newest).result(timeout=60)
        print(f"published and unpublished {states[-1].checkpoint_id} (public while published: {public[0]})")

        rest.set_checkpoint_ttl_from_tinker_path(sampler_path, 3600).result(timeout=60)
        expiry = [c.expires_at for c in rest.list_checkpoints(run_id).result(timeout=60).checkpoints
                  if c.tinker_path == sampler_path]
        print(f"sampler weights expire at {expiry[0]}")

        archive = rest.get_checkpoint_archive_url_from_tinker_path(sampler_path).result(timeout=60)
        download = httpx.get(archive.url, timeout=60, follow_redirects=True)
        download.raise_for_status()
        with tarfile.open(fileobj=io.BytesIO(download.content)) as tar:
            members = [(m.name, m.size) for m in tar.getmembers() if m.isfile()]
        print(f"downloaded {len(download.content)} bytes (URL valid until {archive.expires:%H:%M:%S}):")
        for name, size in members:
            print(f"  {name}  {size} bytes")
    print("checkpoints: ok")


if __name__ == "__main__":
    main()
