"""axe-core in a real page, offline: its rules for WCAG 2.0 and 2.1, levels A and AA, on the page and its frames.

axe-core comes inside `axe-playwright-python` (its `axe.min.js`): it is put into the
page and into every frame (the player and the other components are iframes of the
same server), then run from the top page, which asks each frame for its own results.
Nothing is fetched: the rules' help addresses are text in the results, never opened.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.frontend import wait_for_pictures, wait_for_run

if TYPE_CHECKING:
    from playwright.sync_api import Page

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "accessibility"
WAIT_MS = 120_000  # a page computes on a shared CPU
WCAG_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")
BLOCKING = ("serious", "critical")  # the impacts a page must never have


def axe_script() -> str:
    """axe-core's script as the package ships it (its version is in its first line)."""
    from axe_playwright_python.base import AXE_SCRIPT  # only the accessibility tests need it

    return AXE_SCRIPT


@dataclass(frozen=True)
class Finding:
    """One rule broken on one page state: how badly (axe's impact), on how many elements, and where."""

    state: str  # the page and what it showed, e.g. "lesson 3 with its player"
    rule: str  # axe's rule id, e.g. "color-contrast"
    impact: str  # minor, moderate, serious or critical
    count: int  # how many elements break it
    help: str  # axe's one-line description of the rule
    targets: tuple[str, ...]  # the first few elements' selectors (frames first, then the element)


def _inject(page: Page) -> None:
    """Axe into the page and each of its frames (a frame drawn since the last audit gets it too)."""
    script = axe_script()
    for frame in page.frames:
        if frame.is_detached():
            continue
        try:
            if not frame.evaluate("() => typeof window.axe === 'object'"):
                frame.evaluate(script)
        except Exception:
            continue


def audit(page: Page, state: str) -> list[Finding]:
    """Axe's WCAG 2.0/2.1 A and AA rules on `page` as it stands, frames included: one Finding per broken rule."""
    _inject(page)
    options = {"runOnly": {"type": "tag", "values": list(WCAG_TAGS)}, "resultTypes": ["violations"]}
    results = page.evaluate("options => axe.run(document, options)", options)
    findings = []
    for violation in results["violations"]:
        nodes = violation["nodes"]
        targets = tuple(" >> ".join(map(str, node["target"])) for node in nodes[:3])
        impact = violation.get("impact") or "minor"
        findings.append(Finding(state, violation["id"], impact, len(nodes), violation["help"], targets))
    return findings


def blocking(findings: list[Finding]) -> list[Finding]:
    return [finding for finding in findings if finding.impact in BLOCKING]


def write_report(findings: list[Finding], states: dict[str, str], path: Path) -> None:
    """Every finding, and every state audited with its page's title (a state with none is seen checked), as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    by_impact = Counter(finding.impact for finding in findings)
    report = {
        "axe_core": axe_script().split("\n", 1)[0].strip("/*! ").strip(),
        "tags": list(WCAG_TAGS),
        "states": states,
        "by_impact": dict(by_impact),
        "findings": [asdict(finding) for finding in findings],
    }
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


def focus_shows(page_or_frame: object) -> dict[str, str]:
    """The focused element's name and how its focus is drawn (outline and box shadow), in its own document."""
    return page_or_frame.evaluate(  # type: ignore[attr-defined]
        """() => {
          const element = document.activeElement;
          if (!element || element === document.body) return {name: "", outline: "none", shadow: "none"};
          const drawn = node => {
            const style = getComputedStyle(node);
            return style.outlineStyle === "none" || parseFloat(style.outlineWidth) === 0
              ? "none" : `${style.outlineWidth} ${style.outlineStyle} ${style.outlineColor}`;
          };
          // A text box's or a picker's ring is drawn around it, on the box that holds it (:focus-within).
          let outline = drawn(element);
          for (let node = element.parentElement, up = 0; outline === "none" && node && up < 4; up += 1) {
            outline = drawn(node);
            node = node.parentElement;
          }
          const name = element.getAttribute("aria-label") || element.innerText || element.value || element.tagName;
          return {name: name.trim().split("\\n")[0], outline, shadow: getComputedStyle(element).boxShadow};
        }"""
    )


def focus_visible(shown: dict[str, str]) -> bool:
    """Whether focus is drawn at all: an outline, or a box shadow (Streamlit's widgets draw theirs so)."""
    return shown["outline"] != "none" or shown["shadow"] not in ("", "none")


def unnamed_pictures(page: Page) -> list[str]:
    """Pictures, in the page and its frames, whose text alternative is missing or under three words (their sources)."""
    found: list[str] = []
    for frame in page.frames:
        if frame.is_detached():
            continue
        try:
            found += frame.evaluate(
                """() => [...document.querySelectorAll("img")]
                  .filter(i => i.getClientRects().length)
                  .filter(i => (i.getAttribute("alt") || "").trim().split(/\\s+/).length < 3)
                  .map(i => (i.getAttribute("alt") || "(no alt)") + " " + i.src.slice(0, 60))"""
            )
        except Exception:  # a frame replaced while it was being reached: gone, not checked
            continue
    return found


def unnamed_charts(page: Page) -> int:
    """How many Vega-Lite charts shown have no words (the aria-label Vega gives the chart from its description)."""
    return page.evaluate(
        """() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')]
          .filter(chart => chart.getClientRects().length)
          .map(chart => chart.getAttribute("aria-label") || "")  // Vega names the chart's own box
          .filter(words => !words.trim())
          .length"""
    )


def sideways(page: Page) -> list[str]:
    """What scrolls sideways in the page (WCAG 1.4.10, reflow): the document, the app's view, its main area, a player.

    A school Chromebook's screen is 1366 pixels wide; at that width no page may need
    horizontal scrolling, nor the trajectory player inside its own frame.
    """
    return page.evaluate(
        """() => {
          const wide = el => el && el.scrollWidth > el.clientWidth + 1;
          const found = [];
          if (document.scrollingElement.scrollWidth > window.innerWidth) found.push("the document");
          if (wide(document.querySelector('[data-testid="stAppViewContainer"]'))) found.push("the app's view");
          if (wide(document.querySelector('[data-testid="stMain"]'))) found.push("the main area");
          for (const frame of document.querySelectorAll('iframe[title="frontend.player.trajectory_player"]')) {
            try {
              const inner = frame.contentDocument.scrollingElement;
              if (inner.scrollWidth > inner.clientWidth + 1) found.push("the player's frame");
            } catch (e) {}
          }
          return found;
        }"""
    )


def settle(page: Page) -> None:
    """Wait until the page's script has finished running (its own state says so), and no exception is shown."""
    wait_for_run(page, WAIT_MS)
    wait_for_pictures(page, WAIT_MS)
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, exceptions.first.inner_text()


class Audits:
    """The findings of every state audited, in order, written to test-artifacts/accessibility/`report` as they come.

    Each state is photographed beside the report (`<report's name>-NN.png`), audited by
    axe, and read for pictures and charts without words: beyond axe's "has an alt",
    every picture's words say what it is (three words or more) and every chart has some.
    """

    def __init__(self, report: str = "axe.json") -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.report = ARTIFACTS / report
        self.findings: list[Finding] = []
        self.states: dict[str, str] = {}  # state: the page's title (what a browser's tab and a screen reader say)
        self.unnamed: dict[str, list[str]] = {}  # state: pictures without words (or charts, counted)

    def check(self, page: Page, state: str) -> None:
        page.screenshot(path=str(ARTIFACTS / f"{self.report.stem}-{len(self.states):02d}.png"), full_page=True)
        self.states[state] = page.title()
        self.findings.extend(audit(page, state))
        unnamed = unnamed_pictures(page) + [
            f"{count} chart(s) without words" for count in [unnamed_charts(page)] if count
        ]
        if unnamed:
            self.unnamed[state] = unnamed
        write_report(self.findings, self.states, self.report)  # as it goes: a failure keeps what was seen

    def passed(self) -> None:
        """Assert that no state had pictures or charts without words, nor a serious or critical finding."""
        assert self.unnamed == {}, self.unnamed
        bad = blocking(self.findings)
        assert bad == [], "\n".join(f"{f.state}: {f.rule} ({f.impact}) x{f.count}: {f.targets}" for f in bad)
