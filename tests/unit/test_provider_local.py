import io
import time
from fractions import Fraction

import pytest
from PIL import Image, ImageChops, ImageStat

from app.providers import (
    ASPECT_RATIOS,
    TEMPLATES,
    ImageProvider,
    ProviderError,
    Reference,
    get_provider,
    size_for,
)
from app.providers.base import STYLE_HINTS
from app.providers.local import MODEL_ID, LocalProvider


def _png(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _generate(provider: LocalProvider | None = None, **overrides: object) -> bytes:
    request: dict[str, object] = {
        "prompt": "a lighthouse on a cliff at dusk",
        "negative_prompt": None,
        "aspect_ratio": "1:1",
        "references": [],
        "seed": 7,
        "model": None,
    }
    request.update(overrides)
    return (provider or LocalProvider()).generate(**request).data  # type: ignore[arg-type]


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _mean_difference(a: bytes, b: bytes) -> float:
    first, second = _open(a).convert("RGB"), _open(b).convert("RGB")
    assert first.size == second.size
    return sum(ImageStat.Stat(ImageChops.difference(first, second)).mean) / 3


def test_same_inputs_give_identical_bytes() -> None:
    assert _generate() == _generate()
    assert _generate(seed=None) == _generate(LocalProvider(), seed=None)


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": "a bowl of ramen, top view"},
        {"seed": 8},
        {"negative_prompt": "people"},
    ],
)
def test_each_input_changes_the_picture(change: dict[str, object]) -> None:
    assert _mean_difference(_generate(), _generate(**change)) > 8


def test_result_is_a_plain_png_without_text_chunks() -> None:
    result = LocalProvider().generate(
        prompt="hello", negative_prompt=None, aspect_ratio="1:1", references=[], seed=1, model=None
    )
    image = _open(result.data)
    assert (result.mime_type, result.model, image.format, image.mode) == (
        "image/png",
        MODEL_ID,
        "PNG",
        "RGB",
    )
    assert image.text == {}  # type: ignore[attr-defined]


@pytest.mark.parametrize("ratio", ASPECT_RATIOS)
def test_size_follows_the_aspect_ratio(ratio: str) -> None:
    width, height = size_for(ratio)
    w_part, h_part = (int(p) for p in ratio.split(":"))
    assert Fraction(width, height) == Fraction(w_part, h_part)
    assert width % 16 == 0 and height % 16 == 0
    assert width * height <= 2_000_000 and max(width, height) <= 2048
    assert _open(_generate(aspect_ratio=ratio, prompt=f"ratio {ratio}")).size == (width, height)


def test_known_sizes() -> None:
    assert size_for("1:1") == (1024, 1024)
    assert size_for("16:9") == (1792, 1008)
    assert size_for("9:16") == (1008, 1792)


def test_unknown_aspect_ratio_is_rejected() -> None:
    with pytest.raises(ValueError, match="Invalid aspect ratio"):
        size_for("7:3")
    with pytest.raises(ValueError):
        _generate(aspect_ratio="1:2")


def test_references_change_the_picture_and_lend_their_colours() -> None:
    plain = _generate()
    red = _generate(references=[Reference(_png((230, 20, 20)), "image/png")])
    blue = _generate(references=[Reference(_png((20, 20, 230)), "image/png")])
    assert _mean_difference(plain, red) > 8
    red_r, _, red_b = ImageStat.Stat(_open(red).convert("RGB")).mean
    blue_r, _, blue_b = ImageStat.Stat(_open(blue).convert("RGB")).mean
    assert red_r > blue_r and blue_b > red_b


def test_undecodable_reference_still_influences_the_result() -> None:
    plain = _generate()
    odd = _generate(references=[Reference(b"not an image at all", "image/png")])
    assert _open(odd).size == (1024, 1024)
    assert odd != plain


def test_delay_is_honoured() -> None:
    provider = LocalProvider(delay_ms=150)
    started = time.monotonic()
    _generate(provider)
    assert time.monotonic() - started >= 0.15


def test_unknown_model_is_refused() -> None:
    with pytest.raises(ProviderError) as caught:
        _generate(model="gemini-2.5-flash-image")
    assert caught.value.code == "PROVIDER_ERROR" and not caught.value.retryable
    assert _generate(model=MODEL_ID) == _generate()


@pytest.mark.parametrize("template", TEMPLATES)
def test_enhance_uses_the_template_style(template: str) -> None:
    provider = LocalProvider()
    enhanced = provider.enhance("  a red   bicycle. ", template)
    assert enhanced.startswith("a red bicycle, ")
    assert STYLE_HINTS[template] in enhanced
    assert enhanced == provider.enhance("  a red   bicycle. ", template)


def test_enhance_templates_differ_and_unknown_is_rejected() -> None:
    provider = LocalProvider()
    assert len({provider.enhance("a cat", t) for t in TEMPLATES}) == len(TEMPLATES)
    with pytest.raises(ValueError):
        provider.enhance("a cat", "baroque")


def test_models_lists_the_one_local_model() -> None:
    (model,) = LocalProvider(credits=3).models()
    assert (model.id, model.provider, model.credits, model.tiers, model.default) == (
        MODEL_ID,
        "local",
        3,
        ("free", "pro"),
        True,
    )


def test_get_provider_picks_local_and_caches_it() -> None:
    config = {"IMAGE_PROVIDER": None, "GEMINI_API_KEY": None, "LOCAL_PROVIDER_DELAY_MS": 0}
    provider = get_provider(config)
    assert isinstance(provider, LocalProvider) and isinstance(provider, ImageProvider)
    assert provider.name == "local"
    assert get_provider(dict(config)) is provider
    assert get_provider({**config, "LOCAL_PROVIDER_DELAY_MS": 5}) is not provider
    assert get_provider({"IMAGE_PROVIDER": "local", "GEMINI_API_KEY": "k"}).name == "local"


def test_get_provider_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="IMAGE_PROVIDER"):
        get_provider({"IMAGE_PROVIDER": "dalle"})
