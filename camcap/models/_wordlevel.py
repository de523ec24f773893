"""Offline tokenizers of readable English words, for random-weight checkpoints.

A random-weight model emits random token ids. With a WordLevel vocabulary every id is a whole
English word, so its "captions" read as (meaningless) sentences instead of byte fragments or
U+FFFD, and the streaming, subtitle and speech paths see realistic text. Built with the
`tokenizers` library only: no download, no file from a model hub.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

# Words a caption might use, and the words of the prompts camcap sends. Ids are assigned in this
# order; the list is part of each random checkpoint's fingerprint, so editing it rebuilds them.
_WORD_TEXT = """
    a an the this that some two three four many one of in on at with near by under over behind
    beside from to into through across and or but while is are was sitting standing walking
    running holding looking riding eating playing wearing carrying lying driving flying parked
    open closed empty full small large big little long short tall old young new bright dark red
    blue green yellow white black brown grey orange pink purple wooden metal glass plastic man
    woman person people child children boy girl baby dog cat bird horse cow sheep bear elephant
    giraffe zebra car bus truck train bicycle motorcycle boat plane street road sidewalk building
    house room kitchen table chair couch bed desk window door wall floor ceiling lamp light
    screen computer laptop keyboard phone book cup bottle plate bowl food pizza cake sandwich
    fruit apple banana orange tree trees grass field park garden sky cloud clouds sun snow rain
    water river lake sea beach sand mountain hill rock city town shop sign board clock picture
    photo camera face hand hands head hair shirt jacket hat glasses bag box ball kite umbrella
    bench fence pole track bridge tower toilet sink mirror shelf counter oven fridge plant flower
    flowers vase paper pen cable corner background front side top bottom middle left right
    inside outside day night morning evening together alone group crowd team game sport
    there here it its his her their very fully mostly several other each next
    what does do describe detail details paragraph shown image few words sentence colour color
    how who where which text
"""
WORDS: tuple[str, ...] = tuple(_WORD_TEXT.split())
PUNCTUATION: tuple[str, ...] = (".", ",", "?", "!", ":", "'", "-")


def vocabulary(specials: Sequence[str], size: int | None = None) -> list[str]:
    """Specials first (so their ids are small and stable), then words and punctuation.

    `size` pads the vocabulary to a real model's size with compound words ("red-dog"), so a
    benchmark checkpoint has the real embedding and output-layer cost and every id it can emit
    still decodes to something readable.
    """
    vocab = list(dict.fromkeys([*specials, *WORDS, *PUNCTUATION]))
    if size is None:
        return vocab
    if size < len(vocab):
        raise ValueError(f"A vocabulary of {size} tokens cannot hold the {len(vocab)} base tokens.")
    seen = set(vocab)
    for first in WORDS:
        for second in WORDS:
            if len(vocab) >= size:
                return vocab
            compound = f"{first}-{second}"
            if compound not in seen:
                seen.add(compound)
                vocab.append(compound)
    raise ValueError(f"Cannot build {size} distinct words from {len(WORDS)} base words.")


def word_tokenizer(
    specials: Sequence[str],
    roles: Mapping[str, str],
    *,
    size: int | None = None,
    template: str | None = None,
    model_max_length: int = 512,
    padding_side: str = "right",
    words: Sequence[str] | None = None,
) -> PreTrainedTokenizerFast:
    """A lowercase WordLevel tokenizer wrapped for transformers.

    `specials` lists the special tokens in id order; `roles` names their roles
    (`{"pad_token": "[PAD]", "bos_token": ...}`, or model-specific ones such as `image_token`).
    `template` is a post-processor like `"[CLS] $A [SEP]"` for BERT-style models. `words` replaces
    the whole vocabulary (specials first), for a model trained on its own words (`demo:shapes`).
    """
    from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = list(words) if words is not None else vocabulary(specials, size)
    ids = {token: index for index, token in enumerate(vocab)}
    unk = roles.get("unk_token")
    backend = Tokenizer(models.WordLevel(vocab=ids, unk_token=unk))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    # No decoder: tokenizers then joins decoded tokens with single spaces, which is what words need.
    # Special tokens are matched verbatim, before lowercasing and splitting.
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in specials])
    if template is not None:
        pieces = {piece for piece in template.split() if piece != "$A"}
        backend.post_processor = processors.TemplateProcessing(
            single=template, special_tokens=[(piece, ids[piece]) for piece in sorted(pieces)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        model_max_length=model_max_length,
        padding_side=padding_side,
        # Keep decoding prefix-stable: streamed deltas must add up to the final caption.
        clean_up_tokenization_spaces=False,
        **roles,
    )
