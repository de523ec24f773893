from __future__ import annotations

import pytest

from camcap import ModelOptions, UnknownModelSpecError, create_captioner
from camcap.models.registry import known_specs


def test_unknown_spec_lists_the_known_ones():
    with pytest.raises(UnknownModelSpecError) as caught:
        create_captioner("gpt-vision-9000")
    message = str(caught.value)
    for spec in ("moondream2", "random:blip-tiny", "hf:<repo-id-or-folder>"):
        assert spec in message


def test_unknown_random_architecture_lists_the_built_in_ones():
    with pytest.raises(UnknownModelSpecError, match=r"Unknown random architecture 'vit-huge'.*blip-tiny"):
        create_captioner("random:vit-huge")


def test_empty_hf_spec_shows_an_example():
    with pytest.raises(UnknownModelSpecError, match="hf:Salesforce/blip-image-captioning-base"):
        create_captioner("hf:")


def test_creating_a_captioner_does_no_io(tmp_path):
    # Building a random checkpoint is deferred to setup(): the cache stays empty until then.
    captioner = create_captioner("random:blip-tiny", ModelOptions(cache_dir=tmp_path))
    assert list(tmp_path.iterdir()) == []
    captioner.setup()
    assert (tmp_path / "random" / "blip-tiny" / "config.json").is_file()
    assert captioner.info.name == "random:blip-tiny"
    assert captioner.info.random_weights


def test_known_specs_start_with_the_default_and_carry_sizes():
    specs = known_specs()
    assert specs[0].spec == "moondream2"
    assert specs[0].approx_size_gb
    assert {"random:blip-tiny", "random:blip-base", "random:smolvlm-256m"} <= {info.spec for info in specs}
