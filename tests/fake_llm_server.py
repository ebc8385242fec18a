"""A local OpenAI-compatible chat server on 127.0.0.1 that answers in any shape a test asks for.

`FakeLLM(choose)` serves `POST /v1/chat/completions`; `choose(query, n)` (n: how many requests
for this query came before) returns the name of a reply in `REPLIES`, valid or hostile.
"""

from __future__ import annotations

import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from fake_backend import query_of, valid_answer


def _chat(content, finish="stop") -> dict:
    return {"choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 40}}


def _surrogate_answer(query: str, seed: int) -> str:
    answer = json.loads(valid_answer(query, seed))
    answer["level_3"][0] += " \ud800"
    return json.dumps(answer)  # ensure_ascii: the lone surrogate travels as the escape \ud800


# name -> (status, content type, body bytes or None for "drop the connection", extra headers)
def _reply(name: str, query: str, seed: int):
    ok = json.dumps(_chat(valid_answer(query, seed))).encode()
    j = "application/json"
    if name == "valid":
        return 200, j, ok, {}
    if name == "content_number":
        return 200, j, json.dumps(_chat(42)).encode(), {}
    if name == "content_list":
        return 200, j, json.dumps(_chat([1, [2]])).encode(), {}
    if name == "content_null":
        return 200, j, json.dumps(_chat(None)).encode(), {}
    if name == "no_choices":
        return 200, j, b'{"id": "x", "object": "chat.completion"}', {}
    if name == "empty_choices":
        return 200, j, b'{"choices": []}', {}
    if name == "choice_not_object":
        return 200, j, b'{"choices": ["hello"]}', {}
    if name == "reply_is_list":
        return 200, j, b"[1, 2, 3]", {}
    if name == "html":
        return 200, "text/html", b"<!DOCTYPE html><html><body><h1>Welcome to nginx!</h1></body></html>", {}
    if name == "truncated":
        return 200, j, ok[: len(ok) // 2], {"Content-Length": str(len(ok))}
    if name == "garbage_body":
        return 200, j, ok[: len(ok) // 2], {}
    if name == "surrogates":
        return 200, j, json.dumps(_chat(_surrogate_answer(query, seed))).encode(), {}
    if name == "nested_answer":
        return 200, j, json.dumps(_chat("[" * 200_000)).encode(), {}
    if name == "nested_body":
        return 200, j, b"[" * 200_000, {}
    if name == "not_json_answer":
        return 200, j, json.dumps(_chat("Sure! Here are your passages: level_3 ...")).encode(), {}
    if name == "bad_usage":
        body = _chat(valid_answer(query, seed))
        body["usage"] = {"prompt_tokens": "many", "completion_tokens": [1]}
        return 200, j, json.dumps(body).encode(), {}
    if name == "http429":
        return 429, j, b'{"error": "rate limited"}', {"Retry-After": "0"}
    if name == "http500":
        return 500, "text/plain", b"internal error", {}
    if name == "http503":
        return 503, "text/html", b"<html>Service Unavailable</html>", {}
    if name == "http400":
        return 400, j, b'{"error": "prompt too long"}', {}
    if name == "error_object":
        return 200, j, b'{"error": {"message": "overloaded"}}', {}
    if name == "drop":
        return None, None, None, {}
    if name == "slow":
        return "slow", j, ok, {}
    raise KeyError(name)


HOSTILE = ["content_number", "content_list", "content_null", "no_choices", "empty_choices", "choice_not_object",
           "reply_is_list", "html", "truncated", "garbage_body", "surrogates", "nested_answer", "nested_body",
           "not_json_answer", "bad_usage", "http429", "http500", "http503", "http400", "error_object", "drop"]


class FakeLLM:
    """The server; `.url` is the base URL to give `--backend-opt base_url=...`."""

    def __init__(self, choose: Callable[[str, int], str], slow_s: float = 2.0):
        self.choose = choose
        self.slow_s = slow_s
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.served: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                query = query_of(body["messages"])
                with server.lock:
                    n = server.counts.get(query, 0)
                    server.counts[query] = n + 1
                    name = server.choose(query, n)
                    server.served.append((query, name))
                status, ctype, data, headers = _reply(name, query, body["seed"])
                if status is None:  # drop the connection without a word
                    self.close_connection = True
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                if status == "slow":
                    time.sleep(server.slow_s)
                    status = 200
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                try:
                    self.wfile.write(data)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a client that timed out and left is no news

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FakeLLM":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def random_mix(seed: int, valid_share: float = 0.5, slow_share: float = 0.0) -> Callable[[str, int], str]:
    """A chooser that answers validly `valid_share` of the time and otherwise picks a hostile reply."""
    rng = random.Random(seed)

    def choose(query: str, n: int) -> str:
        r = rng.random()
        if r < slow_share:
            return "slow"
        if r < slow_share + valid_share:
            return "valid"
        return rng.choice(HOSTILE)

    return choose
