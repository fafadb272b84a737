"""Coverage-guided fuzzing (atheris) of the code that reads hostile input.

Targets:
  decode   app.services.imaging.decode: only TooLarge or UnsupportedMedia may escape, and a
           returned image is fully loaded within the size limits.
  alias    app.services.aliases.validate_alias and mentions: validate_alias accepts exactly the
           documented grammar (nothing else, no trailing newline) or raises Invalid; every
           mention is itself a well-formed alias that occurs in the prompt.
  prompt   prompt normalisation in app.services.generations: a stripped, non-empty prompt of at
           most MAX_PROMPT characters, or Invalid.

Usage (libFuzzer flags after the target; a hang longer than -timeout seconds is a finding):

  python bench/fuzz.py decode -max_total_time=600 -timeout=10
  python bench/fuzz.py alias -runs=1000000

Crashes are written to the working directory (crash-*). tests/fuzz runs every target for a
short, bounded time.
"""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import atheris

from app import models  # noqa: F401  (imported first: only the code under test is instrumented)
from app.errors import Invalid, TooLarge, UnsupportedMedia
from app.services import credits  # noqa: F401

with atheris.instrument_imports(include=["PIL", "app.services"]):
    from PIL import Image as PILImage

    from app.services import aliases, generations, imaging

MAX_BYTES = 256 * 1024
GRAMMAR = re.compile(r"@[A-Za-z0-9][A-Za-z0-9_-]{0,49}")


def fuzz_decode(data: bytes) -> None:
    try:
        image = imaging.decode(data, max_bytes=MAX_BYTES)
    except (TooLarge, UnsupportedMedia):
        return
    width, height = image.size
    assert 0 < width <= imaging.MAX_SIDE and 0 < height <= imaging.MAX_SIDE


def fuzz_alias(data: bytes) -> None:
    text = atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(len(data))
    try:
        accepted = aliases.validate_alias(text)
    except Invalid as exc:
        assert exc.code in ("INVALID_ALIAS", "RESERVED_ALIAS")
        assert not GRAMMAR.fullmatch(text) or text.lower() in aliases.RESERVED
    else:
        assert accepted == text and GRAMMAR.fullmatch(text)
        assert text.lower() not in aliases.RESERVED
    found = aliases.mentions(text)
    assert len(found) == len(set(found))
    for mention in found:
        assert GRAMMAR.fullmatch(mention) and mention in text


def fuzz_prompt(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    value = provider.ConsumeUnicodeNoSurrogates(len(data)) if provider.ConsumeBool() else None
    try:
        prompt = generations._prompt({"prompt": value})
    except Invalid as exc:
        assert exc.code in ("PROMPT_REQUIRED", "VALIDATION_ERROR")
        return
    assert prompt == prompt.strip() and 0 < len(prompt) <= generations.MAX_PROMPT


TARGETS = {"decode": fuzz_decode, "alias": fuzz_alias, "prompt": fuzz_prompt}


def seed_corpus(target: str) -> str:
    """fuzz-corpus-<target>/ in the working directory, seeded with valid inputs; kept between
    runs, so a longer run starts where the last one stopped."""
    corpus = Path(f"fuzz-corpus-{target}")
    corpus.mkdir(exist_ok=True)
    if target == "decode":
        for index, fmt in enumerate(("PNG", "JPEG", "WEBP")):
            buffer = io.BytesIO()
            PILImage.new("RGB", (4, 3), (index * 80, 20, 200)).save(buffer, format=fmt)
            (corpus / fmt.lower()).write_bytes(buffer.getvalue())
    else:
        for index, text in enumerate(("@hero", "@last", "a @cat and @dog-2 with @hero_", " x ")):
            (corpus / str(index)).write_bytes(text.encode())
    return str(corpus)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [libFuzzer flags]")
    target = sys.argv[1]
    argv = [sys.argv[0], *sys.argv[2:], seed_corpus(target)]
    atheris.Setup(argv, TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
