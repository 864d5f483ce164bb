"""The hostile strings a markup injector types, and how a page's text is judged free of them.

One table, fed as a student's name, a prompt, a quick check's question and answers and a
gallery caption, by the AppTest checks (tests/security/test_plain_text.py) and the
Chromium check (tests/security/test_markup_browser.py). Every outside address in it is
on EVIL_HOST, so a request that leaves for it, or a link or picture pointing at it, is
the injected text at work.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from markdown_it import MarkdownIt

EVIL_HOST = "evil.test"
WORD_JOINER = "\u2060"

# (what it tries, the text typed); each at most 40 characters: a display name's limit.
HOSTILE: tuple[tuple[str, str], ...] = (
    ("a markdown image", f"![](http://{EVIL_HOST}/p.png)"),
    ("a markdown link", f"[Let me back](http://{EVIL_HOST}/x)"),
    ("autolinks", f"www.{EVIL_HOST} http://{EVIL_HOST}/a"),
    ("an e-mail autolink", f"mail me@{EVIL_HOST} now"),
    ("raw HTML", f"<img src=http://{EVIL_HOST}/i onerror=x>"),
    ("a script", "<script>document.title=1</script>"),
    ("LaTeX", "$x^2$ and $$y$$"),
    ("shortcodes", ":red[red] :smile: :material/home:"),
    ("a very long word", "Pneumonoultramicroscopicsilicovolcanoco"),
    ("an RTL override", "\u202egnp.exe"),
    ("a heading", "# I am the teacher now"),
)
# What the service refuses before any page shows it (hidden characters in names, prompts, questions).
REFUSED = {"an RTL override"}
SHOWN = tuple((what, text) for what, text in HOSTILE if what not in REFUSED)

_MARKDOWN = MarkdownIt("commonmark").enable(["strikethrough", "table"])
# GitHub's literal autolinks, as mdast-util-gfm-autolink-literal finds them in text after the escapes are read.
_AUTOLINK = re.compile(r"(https?://|www(?=\.))[-.\w]+|[-.\w+]+@[-\w]+(\.[-\w]+)+", re.IGNORECASE)
_SHORTCODE = re.compile(r":[\w/+-]+:")  # an emoji or material icon, found by Streamlit in text after the escapes
_DIRECTIVE = re.compile(r"(?<!\\):[a-z-]+\[")  # Streamlit's :red[...] (syntax: an escaped colon is not one)
_MATH = re.compile(r"(?<!\\)\$")  # remark-math's $ (syntax: an escaped dollar is not one)
_MARKUP_TOKENS = {
    "link_open", "image", "html_inline", "html_block", "heading_open", "s_open", "code_inline", "code_block",
    "fence", "bullet_list_open", "ordered_list_open", "blockquote_open", "table_open", "hr",
}  # fmt: skip


def shown_as(text: str) -> str:
    """What a page should show for `text`: its words with whitespace as single spaces, hidden characters dropped."""
    return " ".join(text.replace("\u202e", "").split())


def rendered_text(markdown: str) -> tuple[str, list[str]]:
    """The words a reader sees in `markdown`, and the markup (links, pictures, tags, ...) it made, by kind."""
    words: list[str] = []
    markup: list[str] = []

    def read(tokens: Iterable) -> None:
        for token in tokens:
            if token.type in _MARKUP_TOKENS:
                markup.append(f"{token.type} {token.attrs or ''} {token.content!r}")
            if token.type in ("text", "code_inline"):
                words.append(token.content)
                for found in (_AUTOLINK.search(token.content), _SHORTCODE.search(token.content)):
                    if found:
                        markup.append(f"a link or shortcode in text: {found.group(0)!r}")
            elif token.type in ("softbreak", "hardbreak"):
                words.append(" ")
            if token.children:
                read(token.children)

    read(_MARKDOWN.parse(markdown))
    for syntax in (_DIRECTIVE, _MATH):
        if found := syntax.search(markdown):
            markup.append(f"markdown syntax: {found.group(0)!r}")
    return "".join(words).replace(WORD_JOINER, ""), markup


# A piece of each hostile string that survives any escaping: a field holding one holds injected text.
_INJECTED = re.compile(r"evil|document\.title|x\^2|smile|red\[|teacher now|Pneumono", re.IGNORECASE)


def injected(source: str) -> bool:
    """Whether a page's field (its markdown source) holds some of the hostile text."""
    return bool(_INJECTED.search(source.replace("\\", "").replace(WORD_JOINER, "")))
