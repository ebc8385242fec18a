"""Shared fixtures: the real datasets (through $LISTRANK_DATA) and the bundled encoder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ci_budget import pytest_runtest_setup  # noqa: F401  (the CI time budget's hook, see there)
from needs import missing

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _data_root() -> Path | None:
    for candidate in (os.environ.get("LISTRANK_DATA"), Path(__file__).resolve().parents[2] / "shared" / "data"):
        if candidate and (Path(candidate) / "beir" / "scifact").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if root is None:
        missing("real datasets not found: set LISTRANK_DATA to the shared data folder")
    return root


@pytest.fixture
def make_scifact_folder(data_root):
    """A function writing a BEIR folder of SciFact: the first `n_queries` test queries (and, with
    `n_train`, the first `n_train` train queries as a train split), their judged documents and the
    first `n_docs` documents of the corpus."""
    from listrank.datasets import resolve
    from listrank.formats import write_corpus, write_qrels, write_queries

    def make(root: Path, n_queries: int, n_docs: int, n_train: int = 0) -> Path:
        ds = resolve("beir/scifact", data_dir=data_root)
        splits = {"test": n_queries, "train": n_train}
        chosen = {split: ds.queries(split)[:n] for split, n in splits.items() if n}
        qrels = {split: ds.qrels(split) for split in chosen}
        wanted = {d for split, qs in chosen.items() for q in qs for d in qrels[split][q.id]}
        docs = [d for d in ds.corpus if d.id in wanted] + ds.corpus[:n_docs]
        write_corpus(root / "corpus.jsonl", list({d.id: d for d in docs}.values()))
        write_queries(root / "queries.jsonl", list({q.id: q for qs in chosen.values() for q in qs}.values()))
        for split, qs in chosen.items():
            write_qrels(root / "qrels" / f"{split}.tsv", {q.id: qrels[split][q.id] for q in qs})
        return root

    return make


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Never read or write the user's cache from tests."""
    monkeypatch.setenv("LISTRANK_CACHE", str(tmp_path / "listrank-cache"))


@pytest.fixture(scope="session")
def encoder():
    from listrank.encoder import Encoder

    return Encoder(max_length=128)


@pytest.fixture(scope="session")
def other_model(tmp_path_factory):
    """The bundled model's files with one weight nudged: same architecture, another identity."""
    import shutil

    from safetensors.torch import load_file, save_file

    from listrank.encoder import default_model_path

    path = tmp_path_factory.mktemp("other-model") / "model"
    shutil.copytree(default_model_path(), path)
    weights = load_file(path / "model.safetensors")
    name = next(k for k in weights if "encoder.layer.0" in k)
    weights[name] = weights[name] + 0.01
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    return path


@pytest.fixture(scope="module")
def one_thread():
    """On a small shared CPU, 2 OpenMP threads contending with other jobs run tiny training steps
    ~3x slower than 1 thread; modules opt in with `pytestmark`, and the setting is restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
