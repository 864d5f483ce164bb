"""What every page shares to be readable by all: text contrast of 4.5:1 or more, a focus that shows, calm motion.

Streamlit draws captions (`st.caption`, an image's caption) at 60% of the text's colour and a
selected pill's words in its primary red on pink: below WCAG's 4.5:1 on white (measured by
axe-core: 3.88:1 and 4.47:1). The rules here draw captions at 80% of the text's own colour
(7.2:1 on white, 10:1 on the dark theme's background), darken a selected pill's words on
the light theme, and draw every focus as a ring. They travel as one `<style>` element, which
Streamlit puts where it takes no room on the page. Pictures' words are `alt_text`'s, in the reader's language.
"""

from __future__ import annotations

import streamlit as st

from frontend.language import _

# Streamlit's own reds for text: on the light theme 6.2:1 on a selected pill's pink; on the dark one, light.
LIGHT_RED, DARK_RED = "#9e303b", "#f2919a"

# What has the keyboard's focus: a button, a link, a tab, a switch, or the box around a text field or a picker.
FOCUSED = ", ".join([
    "a:focus-visible", "button:focus-visible", '[role="tab"]:focus-visible', 'input[role="switch"]:focus-visible',
    '[data-testid="stCheckbox"] label:has(input:focus-visible)', "div:has(> input:focus-visible)",
    "div:has(> textarea:focus-visible)",
])  # fmt: skip

# `!important` on the rings: Streamlit's own rules for its buttons' focus are more specific, and draw none.
PAGE_STYLE = f"""<style>
[data-testid="stCaptionContainer"] p {{ color: inherit; }}
[data-testid="stCaptionContainer"], figure figcaption.classroom-caption {{ color: inherit; opacity: 0.8; }}
{FOCUSED} {{ outline: 2px solid {LIGHT_RED} !important; outline-offset: 2px; }}
@media (prefers-color-scheme: light) {{
  [data-testid="stButtonGroup"] [data-selected="true"] [data-testid="stMarkdownContainer"] p {{ color: {LIGHT_RED}; }}
}}
@media (prefers-color-scheme: dark) {{
  {FOCUSED} {{ outline-color: {DARK_RED} !important; }}
}}
@media (prefers-reduced-motion: reduce) {{
  *, *::before, *::after {{ animation-duration: 0.01ms !important; transition-duration: 0.01ms !important;
    scroll-behavior: auto !important; }}
}}
</style>"""


def page_look() -> None:
    """The rules above, for this page (call on every run of every page: Streamlit drops what a run did not draw)."""
    st.html(PAGE_STYLE)


def alt_text(what: str, prompt: str = "", *details: str) -> str:
    """A picture's text alternative: which view it is, of which prompt, at which step or with which settings.

    An image's `alt` is an attribute, never read as markdown: the prompt goes in as typed.
    """
    words = " ".join(prompt.split())
    head = _("{what} for the prompt “{prompt}”").format(what=what, prompt=words) if words else what
    return ", ".join([head, *(detail for detail in details if detail)])
