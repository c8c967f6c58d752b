"""Tiny local models for tests that run LLaMA-Factory code without the Hugging Face Hub.

``build_tiny_tokenizer`` trains a small byte-level BPE (digits split one by one, like Qwen's) on a
fixed text and saves it as a ``Qwen2Tokenizer`` whose special tokens are ``<|endoftext|>``,
``<|im_start|>`` and ``<|im_end|>``, so LLaMA-Factory's ``qwen`` template uses it as it is. Needs the
[train] extra (tokenizers, transformers); takes well under a second after the imports.
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# Qwen2's pre-tokenizer: words, single digits, punctuation runs, newlines, spaces
_PRETOKENIZE_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                      r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_CORPUS = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May? The answer is 72. "
    "You are a helpful assistant. Answer the question step by step and give the final number. "
    "user assistant system tool function call observation weather sunny cloudy rain "
    "What is the capital of France? Paris is the capital of France. Once upon a time there was a cat. "
    "Add two and three. The sum of 2 and 3 is 5. Name a warm colour: red, orange or yellow. "
)


def build_tiny_tokenizer(out_dir: str | Path, *, vocab_size: int = 600) -> Path:
    """Train a tiny byte-level BPE tokenizer, save it as a Qwen2Tokenizer in ``out_dir``; return the dir."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator([_CORPUS] * 20, trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=model["vocab"], merges=merges, eos_token="<|endoftext|>",
                               pad_token="<|endoftext|>", extra_special_tokens=["<|im_start|>", "<|im_end|>"])
    out = Path(out_dir)
    tokenizer.save_pretrained(str(out))
    return out


# Qwen2.5's chat template without the tool-calling branches: enough for LLaMA-Factory and lm-eval
TINY_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)


def build_tiny_model(out_dir: str | Path, *, seed: int = 0) -> Path:
    """Save a random 2-layer Qwen2 (hidden 64, 4 heads / 2 KV heads, tied embeddings) with the tiny
    tokenizer and a Qwen-style chat template in ``out_dir``; return the dir. ~0.1 M parameters.
    """
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    build_tiny_tokenizer(out)
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    tokenizer.save_pretrained(str(out))
    torch.manual_seed(seed)
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert isinstance(eos, int)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         tie_word_embeddings=True, max_position_embeddings=4096, bos_token_id=None,
                         eos_token_id=eos, pad_token_id=eos)
    Qwen2ForCausalLM(config).save_pretrained(str(out))
    return out
