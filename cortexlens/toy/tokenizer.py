"""The toy model's word-level tokenizer: one id per word of the built-in corpus grammar.

Ids: `<|bos|>` 0, `<|pad|>` 1, `<|unk|>` 2, then `corpus_vocabulary()` in its sorted order. Text is
lowercased and split on whitespace and on each punctuation mark, the way the vocabulary was built, so
every corpus sentence encodes without `<|unk|>`. With `add_special_tokens=True` (the default) `<|bos|>`
is prepended, like TransformerLens' `prepend_bos`; it doubles as EOS since the model never ends text.
"""

from __future__ import annotations

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from cortexlens.data.corpus import corpus_vocabulary
from cortexlens.toy.config import BOS, BOS_ID, N_SPECIAL, PAD, PAD_ID, SPECIAL_TOKENS, UNK, UNK_ID

__all__ = ["BOS", "BOS_ID", "N_SPECIAL", "PAD", "PAD_ID", "SPECIAL_TOKENS", "UNK", "UNK_ID", "build_toy_tokenizer"]


def build_toy_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *corpus_vocabulary()])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Punctuation(behavior="isolated"),  # "dog?" -> "dog", "?"
    ])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])])
    # No decoder: the tokenizers library then joins tokens with single spaces.
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=BOS, pad_token=PAD, unk_token=UNK,
        model_max_length=1_000_000, clean_up_tokenization_spaces=False)
