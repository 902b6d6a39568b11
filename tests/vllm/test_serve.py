"""`vllm serve` with explainprune answers an OpenAI-style chat request with an image on 127.0.0.1,
as `Compressor` answers the same question (the server runs compiled, in its own processes)."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import MAX_TOKENS, TELEMETRY_OFF, compressor_reference

from explainprune.embedded import EMBEDDED_DIR
from explainprune.integrations.vllm import hf_overrides

HOST = "127.0.0.1"
START_TIMEOUT = 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Base URL of a `vllm serve` process (learned scorer, keep 0.25), stopped afterwards."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"} | TELEMETRY_OFF
    command = [
        str(Path(sys.executable).parent / "vllm"), "serve", str(EMBEDDED_DIR),
        "--host", HOST, "--port", str(port), "--served-model-name", "embedded",
        "--hf-overrides", json.dumps(hf_overrides("qwen2_vl", "learned", 0.25)),
        "--dtype", "float32", "--max-model-len", "1024", "--kv-cache-memory-bytes", str(256 * 2**20),
        "--seed", "0",
    ]  # fmt: skip
    with open(log, "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"vllm serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve did not start in {START_TIMEOUT} s:\n{log.read_text()[-3000:]}")
            time.sleep(2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def image_url(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_chat_request_with_an_image(server, reference, scenes):
    _, processor = reference
    for sample in scenes[:2]:
        status, reply = post(
            f"{server}/v1/chat/completions",
            {
                "model": "embedded",
                "messages": [{"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": image_url(sample.image)}},
                    {"type": "text", "text": sample.question},
                ]}],  # fmt: skip
                "max_tokens": MAX_TOKENS,
                "temperature": 0.0,
            },
        )
        assert status == 200, reply
        expected = compressor_reference(reference, "learned", 0.25, sample)
        assert reply["choices"][0]["message"]["content"] == processor.tokenizer.decode(expected.tokens, skip_special_tokens=True)
        assert reply["usage"]["prompt_tokens"] == expected.prompt_length  # the Compressor's pruned prompt


def test_two_images_in_one_request_are_refused(server, scenes):
    status, reply = post(
        f"{server}/v1/chat/completions",
        {
            "model": "embedded",
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": image_url(scenes[0].image)}},
                {"type": "image_url", "image_url": {"url": image_url(scenes[1].image)}},
                {"type": "text", "text": "which image has more objects?"},
            ]}],  # fmt: skip
            "max_tokens": 4,
        },
    )
    assert status == 400
    assert "at most 1 image" in json.dumps(reply).lower()
