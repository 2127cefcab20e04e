"""One module per page; each `render(settings, account)` only calls library functions."""
