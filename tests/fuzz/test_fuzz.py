"""Hostile input: a short, bounded atheris run of every bench/fuzz.py target, plus the inputs
earlier runs found (each was a real bug: a 500 on upload, an alias with a trailing newline)."""

from __future__ import annotations

import base64
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from app.errors import Invalid, UnsupportedMedia
from app.services import aliases, imaging

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize(("target", "seconds"), [("decode", 20), ("alias", 8), ("prompt", 5)])
def test_fuzz_target_finds_nothing_in_a_short_run(tmp_path, target, seconds):
    pytest.importorskip("atheris")
    # libFuzzer reads its RSS as the process's peak, and Linux carries the peak of this
    # (pytest) process over into the forked and exec'd child: the 1 GB the target may use
    # comes on top of it, or a long suite alone trips the limit before the first input.
    inherited_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    run = subprocess.run(  # noqa: S603
        [
            sys.executable,
            str(ROOT / "bench" / "fuzz.py"),
            target,
            f"-max_total_time={seconds}",
            "-timeout=10",  # an input taking longer is reported as a hang
            f"-rss_limit_mb={inherited_mb + 1024}",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=seconds + 120,  # instrumenting the imports takes a while on a busy machine
    )
    report = run.stderr.decode(errors="replace")
    assert run.returncode == 0, report[-3000:]
    assert "Done" in report and not list(tmp_path.glob("crash-*"))


def test_png_without_image_data_is_unsupported_not_a_crash():
    headers_only = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAQAAAADCAIAAAA7ljmRAAAAFElFTkSuQmCC")
    with pytest.raises(UnsupportedMedia):
        imaging.decode(headers_only)


@pytest.mark.parametrize("alias", ["@hero\n", "@hero\r", "@hero\n\n", "@héro", "@"])
def test_alias_with_trailing_newline_or_foreign_letters_is_invalid(alias):
    with pytest.raises(Invalid) as refused:
        aliases.validate_alias(alias)
    assert refused.value.code == "INVALID_ALIAS"
