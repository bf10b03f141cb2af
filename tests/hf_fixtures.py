"""Fixtures shared by the test modules that build tiny transformers models (imported by name there)."""

from __future__ import annotations

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
