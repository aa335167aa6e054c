"""A character-level tokenizer for the built-in arithmetic tasks.

Prompts such as ``"37+48+19="`` and worked answers such as
``"37+48=85. 85+19=104. answer 104"`` need no subword vocabulary: one token per character
keeps the model tiny (a 100-row embedding) and makes every token a readable unit when
DelTA coefficients are shaded per token.

Design choices:
- A real ``transformers.PreTrainedTokenizerFast`` built with the ``tokenizers`` library, so the
  trainer, ``generate``, ``save_pretrained``/``from_pretrained`` and any HF tool treat it like
  the tokenizer of a pretrained model. Nothing project-specific is needed to reload it.
- Vocabulary: the four special tokens, then newline and every printable ASCII character
  (codes 32-126) in code-point order. The rule is easy to state and fixed, so token ids never
  depend on a data set. Anything else (``"é"``) maps to ``<unk>``.
- ``<bos>`` is prepended by the post-processor (``add_special_tokens=True``, the default);
  ``<eos>`` is never added automatically: a worked answer ends with it only where the caller
  appends it (supervised targets) or the model emits it (sampling).
- Left padding, because prompts are batched for generation.
- ``clean_up_tokenization_spaces=False``: the HF clean-up would turn ``"85 ."`` into ``"85."`` and
  break the exact round trip that answer checking relies on.
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<bos>"
EOS_TOKEN = "<eos>"
UNK_TOKEN = "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)
"""Special tokens, with ids 0, 1, 2, 3 in this order."""

CHARACTERS: tuple[str, ...] = ("\n",) + tuple(chr(code) for code in range(32, 127))
"""Ordinary tokens: newline, then printable ASCII (space, punctuation, digits, letters)."""

DEFAULT_MAX_LENGTH = 512


def char_vocab() -> dict[str, int]:
    """Token -> id for the full vocabulary (special tokens first), 100 entries."""
    return {token: index for index, token in enumerate(SPECIAL_TOKENS + CHARACTERS)}


def build_char_tokenizer(model_max_length: int = DEFAULT_MAX_LENGTH) -> PreTrainedTokenizerFast:
    """Build the character tokenizer.

    Args:
        model_max_length: longest sequence (prompt + completion, in characters) the tokenizer
            reports as supported; only used by HF truncation and warnings.

    Returns:
        A ``PreTrainedTokenizerFast`` with pad/bos/eos/unk set, ``padding_side="left"``, that
        round-trips any string of vocabulary characters:
        ``tok.decode(tok(s).input_ids, skip_special_tokens=True) == s``.
    """
    if model_max_length < 2:
        raise ValueError(
            f"model_max_length={model_max_length} leaves no room for a prompt; use at least 2 "
            f"(the default is {DEFAULT_MAX_LENGTH})"
        )
    vocab = char_vocab()
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK_TOKEN))
    # Every character is its own pre-token ([\s\S] also matches newline, unlike ".").
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    # Fuse concatenates tokens; WordLevel's default decoding would join them with spaces.
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A $B",
        special_tokens=[(BOS_TOKEN, vocab[BOS_TOKEN])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=model_max_length,
    )
