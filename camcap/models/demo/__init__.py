"""Models camcap trains itself and ships inside the package: `demo:<name>` specs.

`demo:shapes` names coloured shapes and where they are. It was trained on scenes drawn by
`camcap.models.demo.scenes` (see docs/demo-model.md): it sees real pixels and says true things
about simple scenes, so tests can check that the right picture reached the model. It is not a
general captioner.
"""

from __future__ import annotations

from pathlib import Path

from camcap.errors import UnknownModelSpecError

DEMO_MODELS: dict[str, str] = {
    "shapes": "demo model trained by camcap on drawn scenes: names coloured circles, squares and "
    "triangles and their side (a few MB, ships with camcap)",
}
MARKER = "camcap-demo.json"  # in every demo checkpoint folder; `ModelInfo.demo` comes from it


def checkpoint_dir(name: str) -> Path:
    """The shipped checkpoint folder of `demo:<name>`."""
    if name not in DEMO_MODELS:
        raise UnknownModelSpecError(f"Unknown demo model {name!r}, expected one of: {', '.join(DEMO_MODELS)}.")
    return Path(__file__).parent / name


def is_demo_checkpoint(folder: Path) -> bool:
    """True if `folder` holds a demo model (its captions only cover the scenes it was trained on)."""
    return (Path(folder) / MARKER).is_file()
