"""The application's data: user accounts, conversations, feedback and the audit log (SQLite)."""
