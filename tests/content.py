"""What a caption of `demo:shapes` names, and what a drawn scene shows, compared the same way by
every content-true test (HTTP, WebSocket, browser, video files, live sources, alerts).

`named(caption)` and `shown(truth)` return the same kind of set, so a test asserts
`named(text) == shown(truth)`. Which words count is decided here, once: `WHAT_COUNTS` is what the
shipped checkpoint gets right reliably (docs/demo-model.md has its held-out accuracy).
"""

from __future__ import annotations

from camcap.models.demo.scenes import Truth, parse_caption

# ("colour", "side") or ("colour", "shape", "side"): the parts of each object a caption must get right.
WHAT_COUNTS: tuple[str, ...] = ("colour", "shape", "side")


def _pick(colour: str, shape: str, side: str) -> tuple[str, ...]:
    parts = {"colour": colour, "shape": shape, "side": side}
    return tuple(parts[name] for name in WHAT_COUNTS)


def named(caption: str) -> set[tuple[str, ...]]:
    """What a caption names, one tuple per object: what a channel swap (red becomes blue), a mirror
    (left becomes right), a lost EXIF rotation or a caption of another frame would change."""
    return {_pick(*triple) for triple in parse_caption(caption)}


def shown(truth: Truth) -> set[tuple[str, ...]]:
    """What a drawn scene shows, in the same terms as `named`."""
    return {_pick(o.colour, o.shape, o.side) for o in truth.objects}
