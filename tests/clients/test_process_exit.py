"""A program never hangs on exit: pending futures, live actors and an unreachable telemetry endpoint included."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from tinker_actors.local import FaultAction, FaultRule, LocalService

SCRIPT = textwrap.dedent("""
    import sys
    import tinker_actors as tinker
    svc = tinker.ServiceClient(base_url=sys.argv[1], api_key="tml-k")
    training = svc.create_lora_training_client("tiny-byte", rank=2)
    data = [tinker.Datum(model_input=tinker.ModelInput.from_ints([1, 2, 3]),
                         loss_fn_inputs={"target_tokens": [2, 3, 4]})]
    pending = training.forward_backward(data, "cross_entropy")   # never completes (fault rule)
    print("submitted", flush=True)
    if sys.argv[2] == "raise":
        raise RuntimeError("user code failed with a future pending")
""")


@pytest.mark.parametrize("ending", ["raise", "return"])
def test_exit_is_prompt_with_pending_work(service: LocalService, ending: str) -> None:
    service.faults.clear()
    service.faults.add(FaultRule(endpoint="forward_backward", action=FaultAction.NEVER_COMPLETE))
    service.faults.add(FaultRule(endpoint="telemetry", status=503))  # telemetry down too
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", SCRIPT, service.base_url, ending], capture_output=True,
                            text=True, timeout=60)
    elapsed = time.monotonic() - started
    service.faults.clear()
    assert "submitted" in result.stdout, result.stderr
    assert result.returncode == (1 if ending == "raise" else 0), result.stderr
    if ending == "raise":
        assert "user code failed" in result.stderr
    assert elapsed < 15, f"exit took {elapsed:.1f} s"
    assert result.stderr.count("Traceback") <= 1  # the user's own error, not a flood of telemetry tracebacks
