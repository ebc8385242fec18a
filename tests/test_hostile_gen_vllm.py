"""The vLLM backend's reply guards, without vLLM: a stand-in `vllm` module whose `LLM.chat` returns
the odd shapes a real engine can give (no outputs, text that is not a string, missing token ids).
Each must become a `Completion` the generator turns into a retry or a reject, never a traceback.
The real engine is tested in tests/test_gen_vllm.py (marker `vllm`)."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace as NS

import pytest

from listrank.gen.backends.base import Request, Sampling


class _FakeLLM:
    replies: list = []

    def __init__(self, model, **engine):
        self.model, self.engine = model, engine

    def chat(self, messages, sampling_params, use_tqdm):
        assert len(messages) == len(sampling_params) == len(self.replies)
        return self.replies


@pytest.fixture
def fake_vllm(monkeypatch):
    mod = types.ModuleType("vllm")
    mod.LLM = _FakeLLM
    mod.SamplingParams = lambda **kw: NS(**kw)
    monkeypatch.setitem(sys.modules, "vllm", mod)
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    return mod


def test_odd_replies_become_errors_or_empty_text(fake_vllm):
    from listrank.gen.backends.base import get_backend

    _FakeLLM.replies = [
        NS(outputs=[], prompt_token_ids=[1, 2, 3]),                                   # no output at all
        NS(outputs=[NS(text=None, token_ids=None, finish_reason=None)], prompt_token_ids=None),
        NS(outputs=[NS(text=["a", "list"], token_ids=[5], finish_reason="length")], prompt_token_ids=[1]),
        NS(outputs=[NS(text='{"ok": 1}', token_ids=[7, 8], finish_reason="stop")], prompt_token_ids=[1, 2]),
    ]
    backend = get_backend("vllm")("some/model", structured=False)
    req = Request(messages=[{"role": "user", "content": "q"}], sampling=Sampling(), seed=0)
    out = backend.generate([req] * 4)
    assert out[0].error == "vLLM returned no output" and out[0].text == "" and out[0].prompt_tokens == 3
    assert out[1].error is None and out[1].text == "" and out[1].completion_tokens == 0 and out[1].finish_reason == "stop"
    assert out[2].text == "" and out[2].finish_reason == "length"
    assert out[3].text == '{"ok": 1}' and out[3].completion_tokens == 2
