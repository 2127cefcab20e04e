"""A restrictive Content-Security-Policy for the app's page: images, media, fonts, connections and frames
from the app's own origin only, so that even text that slipped past ui.safe_markdown cannot make the
browser send anything elsewhere.

Streamlit has no setting for response headers (checked: 1.67 has none, and its server is not ours to
patch), so the policy goes in as a `<meta http-equiv>` element that a small script adds to the document
head; browsers enforce such a policy from the moment it is inserted. The chat page installs it first
thing, before any model or document text is drawn (ui/app.py may call `install()` before login as well).
"""

from __future__ import annotations

import streamlit as st

# 'unsafe-inline'/'unsafe-eval' for scripts and styles: Streamlit's own front end needs them; what the policy
# is for is that nothing can be fetched from, or sent to, another origin
_JS = """(() => {
  if (document.head.querySelector('meta[http-equiv="Content-Security-Policy"]')) return;
  const h = location.host;
  const m = document.createElement('meta');
  m.httpEquiv = 'Content-Security-Policy';
  m.content = [
    "default-src 'self'", "img-src 'self' data: blob:", "media-src 'self' data: blob:", "font-src 'self' data:",
    "style-src 'self' 'unsafe-inline'", "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
    `connect-src 'self' ws://${h} wss://${h}`, "frame-src 'self' blob: data:", "worker-src 'self' blob:",
    "object-src 'none'", "base-uri 'self'", "form-action 'self'"].join('; ');
  document.head.prepend(m);
})();"""


def install() -> None:
    """Add the policy to the page (once per page load; later calls find it there)."""
    st.html(f"<script>{_JS}</script>", unsafe_allow_javascript=True, width="content")
