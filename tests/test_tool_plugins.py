"""Which tools the model may call is a setting (ASSISTANT_TOOLS): built-in demo plug-in, a company's own, none."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.tools.plugins import load_tools
from core.errors import AssistantError
from core.identity import User
from core.settings import Settings

PLUGIN = '''
from assistant.tools.registry import business_tool


def tools(settings):
    @business_tool(roles={"finance"})
    def ledger_balance(account: str) -> dict:
        """Ledger balance (账户余额)"""
        return {"account": account, "balance": 1200, "home": str(settings.home)}

    return [ledger_balance]
'''


def test_demo_plugin_is_the_default(settings: Settings) -> None:
    names = set(load_tools(settings).tools)
    assert {"get_policy_status", "search_documents", "calculator", "draft_email"} <= names
    assert settings.business_db.exists()  # the plug-in made its own database


def test_a_company_plugin_by_module_path(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "acme_tools.py").write_text(PLUGIN, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = load_tools(settings.model_copy(update={"tools": ["acme_tools:tools"]}))
    assert list(registry.tools) == ["ledger_balance"]
    finance, staff = User("f", "finance", "finance"), User("s", "staff", "sales")
    assert registry.execute("ledger_balance", {"account": "A-1"}, finance).result["balance"] == 1200
    assert registry.execute("ledger_balance", {"account": "A-1"}, staff).denied


def test_no_tools_and_bad_names(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_tools(settings.model_copy(update={"tools": []})).tools == {}
    monkeypatch.setenv("ASSISTANT_TOOLS", '["nope"]')
    from core.settings import load_settings

    with pytest.raises(AssistantError, match="tool plug-in 'nope'.*ASSISTANT_TOOLS"):
        load_tools(load_settings(home=settings.home))
    with pytest.raises(AssistantError, match="cannot be loaded"):
        load_tools(settings.model_copy(update={"tools": ["no_such_module_xyz:tools"]}))
