"""The demo insurer's business tools and records (policies, claims, orders): a plug-in chosen by settings."""
