"""`assistant` CLI: ask, chat, eval — a thin Typer shell over `assistant.chain` and `assistant.evaluation`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from core.clikit import err, out, print_json, settings_or_exit, user_errors
from core.identity import User

app = typer.Typer(help="Ask the domain assistant: cited answers from the knowledge base, business tools.",
                  no_args_is_help=True, pretty_exceptions_enable=False)

KbOpt = Annotated[str | None, typer.Option("--kb", help="Knowledge base (default: 'default').")]
AdapterOpt = Annotated[str | None, typer.Option("--adapter", help="NAME, NAME@vN, or 'none' for the base model.")]
UserOpt = Annotated[str, typer.Option("--user", help="Who is asking (audit, permissions).")]
RoleOpt = Annotated[str, typer.Option("--role", help="staff, claims, underwriting, service, finance, admin ...")]
DeptOpt = Annotated[str | None, typer.Option("--department", help="The user's department (document access).")]
ThinkOpt = Annotated[bool | None, typer.Option("--think/--no-think", help="Qwen3 thinking mode for this question.")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Base model spec (ASSISTANT_MODEL).")]
HomeOpt = Annotated[Path | None, typer.Option("--home", help="Data home (ASSISTANT_HOME).")]


def _assistant(home: Path | None, model: str | None) -> Any:
    from assistant.chain import build_assistant

    settings = settings_or_exit(home=home, model=model)
    err.print(f"[dim]loading {settings.model if settings.backend == 'local' else settings.openai_base_url} …[/dim]")
    return build_assistant(settings)


def _print_answer(ans: Any, streamed: bool) -> None:
    if ans.thinking and not streamed:
        err.print(f"[dim]thinking: {escape(ans.thinking)}[/dim]")
    if not streamed:
        out.print(escape(ans.answer))
    for t in ans.tool_calls:
        status = "denied" if t.denied else ("ok" if t.ok else "error")
        err.print(f"[cyan]tool[/cyan] {t.name}({t.arguments}) → {status} {escape(str(t.result if t.ok else t.error))}"
                  f" [{t.duration_s * 1000:.0f} ms]")
    for s in ans.sources:
        page = f" p.{s.page + 1}" if s.page is not None else ""
        err.print(f"[green][{s.n}][/green] {s.source}{page} {s.clause or ''}")
    err.print(f"[dim]{ans.latency_s:.1f} s · model {ans.model} · adapter {ans.adapter or 'none'} · "
              f"audit #{ans.audit_id}[/dim]")


def _stream_printer() -> Any:
    state = {"thinking": False}

    def emit(kind: str, payload: Any) -> None:
        if kind == "thinking":
            if not state["thinking"]:
                err.print("[dim]thinking:[/dim] ", end="")
                state["thinking"] = True
            err.print(f"[dim]{escape(payload)}[/dim]", end="")
        elif kind == "token":
            if state["thinking"]:
                err.print()
                state["thinking"] = False
            sys.stdout.write(payload)
            sys.stdout.flush()

    return emit


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question; /think or /no_think switch thinking.")],
    kb: KbOpt = None, adapter: AdapterOpt = None, user: UserOpt = "cli", role: RoleOpt = "staff",
    department: DeptOpt = None, think: ThinkOpt = None, model: ModelOpt = None, home: HomeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="answer, sources, tool_calls, thinking, latency_s.")] = False,
) -> None:
    """Answer one question (streamed), with sources and tool calls."""
    with user_errors():
        assistant = _assistant(home, model)
        ans = assistant.ask(question, User(user, role, department), kb=kb, adapter=adapter, think=think,
                            on_event=None if as_json else _stream_printer())
    if as_json:
        print_json(ans.to_dict())
    else:
        sys.stdout.write("\n")
        _print_answer(ans, streamed=True)
    if ans.error:
        raise typer.Exit(1)


@app.command()
def chat(
    kb: KbOpt = None, adapter: AdapterOpt = None, user: UserOpt = "cli", role: RoleOpt = "staff",
    department: DeptOpt = None, think: ThinkOpt = None, model: ModelOpt = None, home: HomeOpt = None,
) -> None:
    """Interactive chat; follow-ups use the history. /reset clears it, /quit leaves."""
    import uuid

    with user_errors():
        assistant = _assistant(home, model)
    who = User(user, role, department)
    history: list[dict[str, str]] = []
    conversation = uuid.uuid4().hex[:12]
    err.print("[dim]/reset clears the history, /quit leaves; /think or /no_think in a question switch thinking[/dim]")
    while True:
        try:
            question = input("\n> ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if question in ("/quit", "/exit"):
            break
        if question == "/reset":
            history.clear()
            continue
        if not question:
            continue
        ans = assistant.ask(question, who, history, kb, adapter, think, _stream_printer(), conversation)
        sys.stdout.write("\n")
        _print_answer(ans, streamed=True)
        history += [{"role": "user", "content": ans.question}, {"role": "assistant", "content": ans.answer}]


@app.command("eval")
def eval_(
    data: Annotated[Path, typer.Argument(help="JSONL: question, expected_answer / expected_sources / expected_tool.")],
    kb: KbOpt = None, adapter: AdapterOpt = None, user: UserOpt = "eval", role: RoleOpt = "admin",
    department: DeptOpt = None, model: ModelOpt = None, home: HomeOpt = None,
    limit: Annotated[int | None, typer.Option(help="First N questions only.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Retrieval hit rate, answer accuracy, citation correctness and tool-call accuracy over a question set."""
    from assistant.evaluation import evaluate_file

    with user_errors():
        assistant = _assistant(home, model)
        def progress(i: int, n: int, row: dict) -> None:
            err.print(f"[dim]{i}/{n}[/dim] {escape(row['question'][:60])}")

        report = evaluate_file(assistant, data, User(user, role, department), kb, adapter, limit, progress)
    if as_json:
        print_json(report)
        return
    table = Table("metric", "value", "n")
    for k, v in report["metrics"].items():
        table.add_row(k, "-" if v["value"] is None else f"{v['value']:.3f}", str(v["n"]))
    out.print(table)


users_app = typer.Typer(help="Staff accounts for the chat UI (passwords stored as salted scrypt hashes).",
                        no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="Login name.")],
    role: RoleOpt = "staff", department: DeptOpt = None,
    password: Annotated[str | None, typer.Option(
        "--password", help="Default: asked for (hidden). Or ASSISTANT_NEW_PASSWORD for scripts.",
        envvar="ASSISTANT_NEW_PASSWORD")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite an existing user (new password).")] = False,
    home: HomeOpt = None,
) -> None:
    """Create a user."""
    from assistant.app.users import add_user

    settings = settings_or_exit(home=home)
    if password is None:
        password = typer.prompt(f"password for {name}", hide_input=True, confirmation_prompt=True)
    with user_errors():
        acc = add_user(settings.app_db, name, password, role, department, replace)
    out.print(f"user [bold]{acc.name}[/bold] ({acc.role}, {acc.department or 'no department'}) saved")


@users_app.command("list")
def users_list(home: HomeOpt = None,
               as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """List users (never their passwords)."""
    from assistant.app.users import list_users

    settings = settings_or_exit(home=home)
    accounts = list_users(settings.app_db)
    if as_json:
        print_json([a.__dict__ for a in accounts])
        return
    table = Table("user", "role", "department", "created")
    for a in accounts:
        table.add_row(a.name, a.role, a.department or "-", a.created)
    out.print(table)


@users_app.command("remove")
def users_remove(name: Annotated[str, typer.Argument(help="Login name.")], home: HomeOpt = None) -> None:
    """Delete a user (their saved conversations stay; the audit log is never touched)."""
    from assistant.app.users import remove_user

    settings = settings_or_exit(home=home)
    with user_errors():
        remove_user(settings.app_db, name)
    out.print(f"user {name} removed")


@users_app.command("demo")
def users_demo(home: HomeOpt = None) -> None:
    """Create the demo accounts that are missing and print the demo logins."""
    from assistant.app.users import DEMO_USERS, authenticate, ensure_demo_users

    settings = settings_or_exit(home=home)
    made = {m[0] for m in ensure_demo_users(settings.app_db)}
    for name, password, role, dept in DEMO_USERS:
        shown = password if name in made or authenticate(settings.app_db, name, password) else "(password changed)"
        out.print(f"  {name:<11} / {shown:<18} {role} ({dept}){'  (new)' if name in made else ''}", markup=False)


if __name__ == "__main__":
    app()
