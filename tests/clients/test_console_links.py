"""Links into the web console (official 0.38): ``ServiceClient.get_console_url``, ``TrainingClient.get_console_url``,
``SaveWeightsResponse.get_console_url``, ``SaveWeightsForSamplerResponse.get_console_url`` / ``get_playground_url``.

The URL shapes are the official SDK's (checked against it when it is installed); the console is
``Config.console_url``, the hosted one for the hosted service, and none for the local service, where asking for a
link raises ``NoConsoleError`` (tinker_actors.console).
"""

from __future__ import annotations

import json
import os
import subprocess
import warnings
from urllib.parse import quote

import pytest

import tinker_actors as tinker
from tests.wire.conftest import OFFICIAL_038_PYTHON
from tinker_actors.call_style import DeprecatedCallWarning
from tinker_actors.config import DEFAULT_BASE_URL, Config
from tinker_actors.console import HOSTED_CONSOLE_URL, NoConsoleError, console_for
from tinker_actors.local import LocalService
from tinker_actors.types import SaveWeightsForSamplerResponse, SaveWeightsResponse

CONSOLE = "https://console.example.test/tinker"


def test_the_local_service_has_no_console(client: tinker.ServiceClient) -> None:
    with pytest.raises(NoConsoleError, match="no web console"):
        client.get_console_url()
    assert not client.has_session  # asking created no session
    training = client.create_lora_training_client(base_model="tiny-byte", rank=4).result(timeout=30)
    with pytest.raises(NoConsoleError):
        training.get_console_url()
    saved = training.save_state("links").result(timeout=30)
    sampler_saved = training.save_weights_for_sampler("links").result(timeout=30)
    assert isinstance(sampler_saved, SaveWeightsForSamplerResponse)
    for link in (saved.get_console_url, sampler_saved.get_console_url, sampler_saved.get_playground_url):
        with pytest.raises(NoConsoleError, match=r"Config\.console_url"):
            link()
    assert issubclass(NoConsoleError, tinker.TinkerError)


def test_a_configured_console_gets_the_official_url_shapes(service: LocalService, fast_config: Config) -> None:
    with tinker.ServiceClient(config=fast_config.replace(console_url=CONSOLE + "/")) as client:
        assert client.get_console_url() == f"{CONSOLE}/sessions"
        assert not client.has_session
        future = client.create_lora_training_client(base_model="tiny-byte", rank=4)
        with warnings.catch_warnings():  # the future used as the client: deprecated (warned once per process)
            warnings.simplefilter("ignore", DeprecatedCallWarning)
            forwarded = future.get_console_url()
        training = future.result(timeout=30)
        assert client.get_console_url() == f"{CONSOLE}/sessions/{client.session_id}"
        assert training.get_console_url() == forwarded == f"{CONSOLE}/training_runs/{training.model_id}"

        saved = training.save_state("step-1").result(timeout=30)
        assert saved.path == f"tinker://{training.model_id}/weights/step-1"
        run = quote(training.model_id, safe="")  # as the official SDK writes it in checkpoint links
        assert saved.get_console_url() == f"{CONSOLE}/checkpoints/{run}/weights%2Fstep-1"
        sampler_saved = training.save_weights_for_sampler("step-1").result(timeout=30)
        assert sampler_saved.get_console_url() == f"{CONSOLE}/checkpoints/{run}/sampler_weights%2Fstep-1"
        assert sampler_saved.get_playground_url() == (
            f"{CONSOLE}/playground?mode=checkpoint&checkpoint=tinker%3A%2F%2F{run}%2Fsampler_weights%2Fstep-1")


def test_which_console_a_config_links_to(service: LocalService) -> None:
    assert console_for(Config(base_url=DEFAULT_BASE_URL)).base == HOSTED_CONSOLE_URL  # the hosted service
    assert console_for(Config(base_url="https://tinker.thinkingmachines.dev/services/other")).base == HOSTED_CONSOLE_URL
    assert console_for(Config(base_url=service.base_url)).base is None
    assert console_for(Config(base_url=service.base_url, console_url=CONSOLE)).base == CONSOLE
    with pytest.raises(ValueError, match="console_url"):
        Config(console_url="console.example.test")
    # A response built by hand (not read by a client) links into the hosted console, as the official one does.
    assert SaveWeightsResponse(path="tinker://run-1/weights/a").get_console_url() == (
        f"{HOSTED_CONSOLE_URL}/checkpoints/run-1/weights%2Fa")


def test_the_hosted_links_are_the_official_sdks() -> None:
    if not OFFICIAL_038_PYTHON.exists():
        pytest.skip(f"the official tinker==0.38.0 SDK is not installed at {OFFICIAL_038_PYTHON}")
    path, sampler_path = "tinker://run:7/weights/step 1", "tinker://run:7/sampler_weights/s-1"
    script = (
        "import json\nfrom tinker import types\nfrom tinker.lib import console_urls as c\n"
        f"w = types.SaveWeightsResponse(path={path!r})\n"
        f"s = types.SaveWeightsForSamplerResponse(path={sampler_path!r})\n"
        "print(json.dumps([c.sessions_console_url(), c.session_console_url('sess-1'),\n"
        "                  c.training_run_console_url('run:7'), w.get_console_url(), s.get_console_url(),\n"
        "                  s.get_playground_url()]))\n")
    done = subprocess.run([str(OFFICIAL_038_PYTHON), "-c", script], capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TINKER_TELEMETRY": "0",
                               "HOME": "/nonexistent", "PYTHONDONTWRITEBYTECODE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    hosted = console_for(Config(base_url=DEFAULT_BASE_URL))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = [hosted.sessions(), hosted.session("sess-1"), hosted.training_run("run:7"),
                SaveWeightsResponse(path=path).get_console_url(),
                SaveWeightsForSamplerResponse(path=sampler_path).get_console_url(),
                SaveWeightsForSamplerResponse(path=sampler_path).get_playground_url()]
    assert ours == json.loads(done.stdout)
