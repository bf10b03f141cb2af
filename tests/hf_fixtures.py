"""Fixtures and helpers shared by the test modules that build tiny transformers models (imported by name
there)."""

from __future__ import annotations

import string

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> object:
    """Tiny models gain nothing from threads, and on a loaded 2-core machine OpenMP's spinning threads
    made each step 50× slower; restored for the modules that run after this one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    torch.manual_seed(0)


def clip_tokenizer() -> object:
    """Character-level BPE (no merges): every word splits into letters, which is all CLIP needs."""
    from transformers import CLIPTokenizer

    chars = [*string.ascii_lowercase, *string.digits, "'", "-", "."]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars + [c + "</w>" for c in chars]:
        vocab[c] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])
