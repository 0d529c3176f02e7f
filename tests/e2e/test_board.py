"""The operator page in a real browser (Debian's Chromium, driven by Playwright)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Locator, Page, async_playwright, expect

from catcher.broker import free_port
from catcher.kafka import read_topic
from catcher.models.enums import Severity
from tests.support.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

RULES = """
rules:
  - id: m1m3-temperature
    description: M1M3 temperature, one alarm per salIndex.
    actions:
      - name: notify
        type: webhook
        url_env: CATCHER_TEST_WEBHOOK_URL
        on: {severity: WARNING}
        body: {text: "{trigger_id}"}
"""
NAME = "m1m3-temperature:salIndex=1"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    assert CHROMIUM, "Debian's chromium is missing: .ci/run installs it"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox"], headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


async def _commands(stack: Stack) -> list[dict[str, Any]]:
    config = stack.config
    records = [
        await stack.codec.decode("alarms", m.value)
        for m in await read_topic(config, config.alarms_topic)
    ]
    return [r for r in records if r.get("command")]


async def _open(browser: Browser, url: str) -> Page:
    # As behind Gafaelfawr: the ingress adds the user's header to every request.
    context = await browser.new_context(extra_http_headers={"X-Auth-Request-User": "ana"})
    page = await context.new_page()
    await page.goto(url)
    await expect(page.locator("#connection")).to_contain_text("Live, as ana")
    return page


async def _serving_with_its_policy(stack: Stack, api: str) -> None:
    """Wait for the page; its Content-Security-Policy admits only the worker's files."""

    async def serving() -> bool:
        async with httpx.AsyncClient() as client:
            try:
                answer = await client.get(f"{api}/", headers={"X-Auth-Request-User": "ana"})
            except httpx.ConnectError:
                return False
        return answer.status_code == httpx.codes.OK

    await stack.wait_for(serving, what="the page")
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{api}/", headers={"X-Auth-Request-User": "ana"})
        script = await client.get(f"{api}/static/page.js")  # the tests' worker has a local user
        other = await client.get(f"{api}/static/secrets.txt")
    policy = answer.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "frame-ancestors 'self' https://summit-lsp.lsst.codes" in policy
    assert script.status_code == httpx.codes.OK
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert other.status_code == httpx.codes.NOT_FOUND  # the page's two files, nothing else


async def _history_shows_changes_and_actions(alarm: Locator) -> None:
    """An alarm's recent changes, and the actions its triggers started."""
    history = alarm.locator("details.history")
    await history.locator("summary").click()
    await expect(history.locator(".changes")).to_contain_text(
        "acknowledge by ana: “looking at the glycol loop”"
    )
    await expect(history.locator(".changes")).to_contain_text("WARNING (max WARNING), active")
    await expect(history.locator(".actions")).to_contain_text(
        "notify (webhook, WARNING): succeeded", timeout=20_000
    )


async def test_the_board_follows_alarms_live_and_sends_commands(
    stack: Stack, browser: Browser
) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}/catcher"
    stack.extra_env.update(
        CATCHER_HTTP_PORT=str(port),
        CATCHER_PATH_PREFIX="/catcher",
        CATCHER_API_URL=api,
        CATCHER_FRAME_ANCESTORS="'self' https://summit-lsp.lsst.codes",
    )
    stack.write_rules(RULES)
    await stack.start_worker()
    await _serving_with_its_policy(stack, api)
    page = await _open(browser, f"{api}/")
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    # A trigger raises an alarm, and the page shows it without a reload.
    await stack.publish("m1m3-temperature", Severity.WARNING, tags={"salIndex": "1"})
    alarm = page.locator(f'article[data-name="{NAME}"]')
    await expect(page.locator(".group-active").locator(f'[data-name="{NAME}"]')).to_be_visible()
    await expect(alarm.locator(".sev")).to_have_text("WARNING")

    # A click acknowledges it with a comment; the alarms topic records who.
    await alarm.locator('input[name="comment"]').fill("looking at the glycol loop")
    await alarm.get_by_role("button", name=f"Acknowledge {NAME}", exact=True).click()
    acked = page.locator(".group-acknowledged").locator(f'[data-name="{NAME}"]')
    await expect(acked).to_be_visible()
    await expect(acked.locator(".who")).to_contain_text("acknowledged by ana")

    async def acknowledged() -> bool:
        return any(
            c["command"] == "acknowledge" and c["command_user"] == "ana"
            for c in await _commands(stack)
        )

    await stack.wait_for(acknowledged, what="the acknowledgement on the alarms topic")
    (record,) = [c for c in await _commands(stack) if c["command"] == "acknowledge"]
    assert record["comment"] == "looking at the glycol loop"

    await _history_shows_changes_and_actions(acked)

    # With the keyboard alone: Tab to the Unacknowledge button, Enter.
    unack = acked.get_by_role("button", name=f"Unacknowledge {NAME}", exact=True)
    for _ in range(60):
        await page.keyboard.press("Tab")
        if await unack.evaluate("(node) => node === document.activeElement"):
            break
    else:
        pytest.fail("Tab never reached the Unacknowledge button")
    await page.keyboard.press("Enter")
    await expect(page.locator(".group-active").locator(f'[data-name="{NAME}"]')).to_be_visible()

    # A silence made in the page mutes the matching alarm.
    form = page.locator("#silence-form")
    await form.locator('input[name="name"]').fill("m1m3-temperature:.*")
    await form.locator('input[name="duration"]').fill("1h")
    await form.locator('input[name="comment"]').fill("M1M3 maintenance")
    await form.get_by_role("button", name="Create silence").click()
    await expect(page.locator("#message")).to_contain_text("created, active")
    muted = page.locator(".group-muted").locator(f'[data-name="{NAME}"]')
    await expect(muted).to_be_visible(timeout=20_000)
    await expect(muted.locator(".who")).to_contain_text("(silence by ana)")
    await expect(page.locator("#silences tbody tr")).to_have_count(1)
    assert errors == []

    # A bad input is said in the page, not thrown away.
    await form.locator('input[name="name"]').fill("(")
    await form.locator('input[name="duration"]').fill("1h")
    await form.locator('input[name="comment"]').fill("broken pattern")
    await form.get_by_role("button", name="Create silence").click()
    await expect(page.locator("#message")).to_contain_text("was not created: HTTP 422")
    silences = await (await page.request.get(f"{api}/silences")).json()
    assert len(silences["silences"]) == 1
