"""Tiny randomly initialised models of the real architectures (GPT-2, diffusers pipelines) for tests."""

from __future__ import annotations

from pathlib import Path


def tiny_gpt2(folder: Path, seed: int = 0) -> Path:
    """A 2-layer, 32-wide GPT-2 with a byte-level tokenizer (256 byte tokens, no merges, <|endoftext|>),
    saved like a hub repo so `from_pretrained(folder)` loads both."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {ch: i for i, ch in enumerate(bytes_to_unicode().values())}
    vocab["<|endoftext|>"] = len(vocab)
    GPT2Tokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(vocab), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=len(vocab) - 1, eos_token_id=len(vocab) - 1)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder
