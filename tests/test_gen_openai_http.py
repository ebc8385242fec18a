"""The OpenAI-compatible HTTP backend against a tiny local server that answers like vLLM/llama-server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fake_backend import query_of, valid_answer
from listrank.errors import ListrankError
from listrank.formats import Query
from listrank.gen import GenConfig, generate
from listrank.gen.backends.base import get_backend


@pytest.fixture
def server():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append((self.path, self.headers.get("Authorization"), body))
            text = valid_answer(query_of(body["messages"]), body["seed"])
            reply = {"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 30, "completion_tokens": 40}}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", received
    httpd.shutdown()


def test_openai_http_backend_sends_schema_and_seed(tmp_path, server, monkeypatch):
    url, received = server
    monkeypatch.setenv("MY_KEY", "secret")
    cfg = GenConfig(output=tmp_path / "s.jsonl", backend="openai-http", model="served-model", progress=False,
                    backend_options={"base_url": url, "api_key_env": "MY_KEY", "concurrency": "3"}, seed=1)
    queries = [Query(f"q{i}", f"question {i}") for i in range(4)]
    summary = generate(cfg, queries)
    assert (summary.done, summary.prompt_tokens, summary.completion_tokens) == (4, 120, 160)
    path, auth, body = received[0]
    assert path == "/v1/chat/completions" and auth == "Bearer secret"
    assert body["model"] == "served-model" and body["max_tokens"] == 2048 and isinstance(body["seed"], int)
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["level_3", "level_2", "level_1", "level_0"]
    rec = json.loads((tmp_path / "s.jsonl").read_text().splitlines()[0])
    assert rec["generator"]["backend"] == "openai-http" and rec["generator"]["model"] == f"served-model@{url}"
    # off by default here (1.0: no extra field a plain OpenAI server could refuse); when set it goes
    # as the fields vLLM and llama-server read
    assert rec["generator"]["repeat_penalty"] == 1.0
    assert not any("repetition_penalty" in b or "repeat_penalty" in b for _, _, b in received)
    received.clear()
    generate(GenConfig(output=tmp_path / "p.jsonl", backend="openai-http", model="m", progress=False,
                       backend_options={"base_url": url}, repeat_penalty=1.2, limit=1), queries)
    assert received and all(b["repetition_penalty"] == b["repeat_penalty"] == 1.2 for _, _, b in received)
    received.clear()
    generate(GenConfig(output=tmp_path / "o.jsonl", backend="openai-http", model="m", progress=False,
                       backend_options={"base_url": url}, repeat_penalty=1.0, limit=1), queries)
    assert received and not any("repetition_penalty" in b or "repeat_penalty" in b for _, _, b in received)


def test_openai_http_backend_unreachable_is_a_clear_error(tmp_path):
    backend = get_backend("openai-http")(None, base_url="http://127.0.0.1:9/v1", timeout="5")
    cfg = GenConfig(output=tmp_path / "s.jsonl", progress=False)
    with pytest.raises(ListrankError, match="is the server running"):
        generate(cfg, [Query("a", "b")], backend)
