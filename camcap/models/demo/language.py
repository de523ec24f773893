"""What `demo:shapes` is asked and what it answers: prompts, reference answers, its vocabulary.

The model reads a prompt after the image and writes the answer. Captions are prompted with the
exact instructions camcap's chat prompt style sends for each length (`_prompts.CHAT_INSTRUCTIONS`),
so `caption short|normal|long` reach the model as trained; queries are the user's question.
Every word of every prompt and answer is in `VOCABULARY`, so the WordLevel tokenizer has no
unknown words for what it was trained on (other words become [UNK]).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from camcap.models._prompts import CHAT_INSTRUCTIONS
from camcap.models.demo.scenes import COLOURS, SHAPES, SIDES, Truth

# Special tokens, in id order. GIT starts from [CLS] and stops at [SEP]; [ANS] ends the prompt.
SPECIALS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[ANS]")
ROLES = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "bos_token": "[CLS]"}
ANSWER_MARK = "[ANS]"
NUMBERS = ("zero", "one", "two")
PLURALS = {shape: f"{shape}s" for shape in SHAPES}
TASKS = ("short", "normal", "long", "yesno", "colour", "count", "position")

# A prompt is the user turn's text; the chat template adds [CLS] before and [ANS] after it.
CHAT_TEMPLATE = (
    "{{ '[CLS] ' }}{% for message in messages %}{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ ' [ANS]' }}{% endif %}"
)

_WORDS = """
    a an the and on in of is there what which where how many colour color shape shapes
    yes no none left right centre center small large plain gradient noisy striped cluttered background
    describe this image few words one sentence detail
"""


def vocabulary() -> list[str]:
    """Specials first, then every word prompts and answers use, then punctuation."""
    words = [*_WORDS.split(), *COLOURS, *SHAPES, *PLURALS.values(), *SIDES, *NUMBERS]
    for instruction in CHAT_INSTRUCTIONS.values():
        words += instruction.lower().replace(".", " ").split()
    return list(dict.fromkeys([*SPECIALS, *words, ".", "?", ",", "'"]))


@dataclass(frozen=True)
class Example:
    """One training or evaluation item: the prompt text and the answer the truth implies."""

    task: str
    prompt: str
    answer: str


def caption_example(truth: Truth, length: str) -> Example:
    return Example(length, CHAT_INSTRUCTIONS[length], truth.caption(length))  # type: ignore[index]


def example(truth: Truth, task: str, rng: random.Random) -> Example:
    """A prompt of kind `task` about this scene, with its correct answer."""
    if task in ("short", "normal", "long"):
        return caption_example(truth, task)
    colour_word = rng.choice(("colour", "color"))
    present = [o for o in truth.objects]
    if task == "yesno":
        # Half the questions are about something present; the others change its colour or its shape.
        target = rng.choice(present)
        colour, shape = target.colour, target.shape
        if rng.random() < 0.5:
            if rng.random() < 0.5:
                colour = rng.choice(tuple(COLOURS))
            else:
                shape = rng.choice(SHAPES)
        if rng.random() < 0.15:  # by shape alone or colour alone
            if rng.random() < 0.5:
                return Example(task, f"is there a {shape}?", _yes(any(o.shape == shape for o in present)))
            return Example(
                task,
                f"is there a {colour} shape?",
                _yes(any(o.colour == colour for o in present)),
            )
        return Example(
            task, f"is there a {colour} {shape}?", _yes(any(o.phrase == f"{colour} {shape}" for o in present))
        )
    shape = rng.choice(present).shape if rng.random() < 0.8 else rng.choice(SHAPES)
    matches = [o for o in present if o.shape == shape]
    if task == "colour":
        answer = " and ".join(o.colour for o in matches) or "none"
        return Example(task, f"what {colour_word} is the {shape}?", answer)
    if task == "count":
        if rng.random() < 0.2:
            return Example(task, "how many shapes?", NUMBERS[len(present)])
        return Example(task, f"how many {PLURALS[shape]}?", NUMBERS[len(matches)])
    if task == "position":
        if rng.random() < 0.3 and matches:
            target = rng.choice(matches)
            spots = [o.side for o in present if o.phrase == target.phrase]
            return Example(task, f"where is the {target.phrase}?", " and ".join(spots))
        return Example(task, f"where is the {shape}?", " and ".join(o.side for o in matches) or "none")
    raise ValueError(f"Unknown task {task!r}, expected one of: {', '.join(TASKS)}.")


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def tokenizer() -> object:
    """The WordLevel tokenizer `demo:shapes` ships (no post-processor: the chat template adds [CLS])."""
    from camcap.models._wordlevel import word_tokenizer

    return word_tokenizer(SPECIALS, {**ROLES, "additional_special_tokens": [ANSWER_MARK]}, words=vocabulary())
