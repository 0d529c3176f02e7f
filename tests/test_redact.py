"""Secrets stay out of quoted text and log lines, tracebacks included."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog

from catcher.config import LogProfile
from catcher.logs import configure_logging
from catcher.redact import brief, secrets

TOKEN = "gt-abcdefghijklmnop.qrstuvwxyz0123"
HOOK = "https://hooks.slack.com/services/T000/B000/verysecretpath"


@pytest.fixture(autouse=True)
def registry() -> Iterator[None]:
    secrets.clear()
    yield
    secrets.clear()


def test_brief_cuts_urls_masks_tokens_and_keeps_one_short_line() -> None:
    secrets.register("hunter22")
    text = f"failed\n at {HOOK}?token=x with Bearer {TOKEN} and password hunter22 " + "y" * 500
    quoted = brief(text)
    assert "verysecretpath" not in quoted
    assert "https://hooks.slack.com/..." in quoted
    assert TOKEN not in quoted
    assert "Bearer ***" in quoted
    assert "hunter22" not in quoted
    assert "\n" not in quoted
    assert len(quoted) <= 300


def test_a_production_traceback_has_no_locals_and_no_secrets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    secrets.register(TOKEN, HOOK)
    configure_logging(LogProfile.production, "INFO")
    log = structlog.get_logger("catcher")

    def call_service(url: str, headers: dict[str, str]) -> None:
        raise ConnectionError(f"cannot reach {url}")

    try:
        call_service(HOOK, {"Authorization": f"Bearer {TOKEN}"})
    except ConnectionError:
        log.exception("Unexpected error while submitting", url=HOOK)
    line = capsys.readouterr().err.strip()
    record = json.loads(line)  # one JSON line
    assert record["message"] == "Unexpected error while submitting"
    assert TOKEN not in line
    assert "verysecretpath" not in line
    frames = [frame for exc in record["exception"] for frame in exc["frames"]]
    assert frames
    assert all("locals" not in frame for frame in frames)
