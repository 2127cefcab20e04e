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


def _say(text: str) -> None:
    """Text from the model, a document or a tool on stdout, exactly as written (no markup, emoji codes or
    highlighting)."""
    out.print(text, markup=False, emoji=False, highlight=False)


def _cite_label(s: dict[str, Any]) -> str:
    """A cited unit's citation: `file · p.N | sheet/slide · clause`, or `tool NAME` for a look-up's record."""
    if s.get("kind") == "tool":
        return f"tool {s.get('source') or ''}"
    page = s.get("page_label") or (f"p.{s['page'] + 1}" if isinstance(s.get("page"), int) else "")
    return " · ".join(str(x) for x in (s.get("source"), page, s.get("clause")) if x)


def _quote_lines(s: dict[str, Any]) -> list[str]:
    """A cited unit quoted as it stands, '> ' before each line, its [n] after it (a table row under its header)."""
    lines = [f"> {s['header']}"] if s.get("kind") == "row" and s.get("header") else []
    lines += [f"> {line}" for line in (str(s.get("text") or "").splitlines() or [""])]
    lines[-1] += f" [{s['n']}]"
    return lines


def _verdict(ans: Any) -> str:
    v = ans.verification or {}
    reasons = "; ".join(str(r) for r in v.get("reasons") or [])
    return (v.get("status") or "none") + (f" — {reasons}" if reasons else "")


def _print_answer(ans: Any, streamed: str | None) -> None:
    """The finished turn. `streamed`: the model's answer text already written to stdout as it came, its line
    still open (None: nothing was). The streamed words stand only when the outcome is the model's answer (its
    [n] marks are then added to them); otherwise (the documents' own words, a record, the refusal) a line says
    why and the answer that stands follows. Then the quoted units, the tool calls, the sources (stderr)."""
    import json

    said = (streamed or "").strip()
    if ans.thinking and streamed is None:
        err.print(f"[dim]thinking: {escape(ans.thinking)}[/dim]")
    lead = ans.lead if ans.outcome and ans.outcome != "error" else ans.answer
    if said and ans.outcome == "answer" and lead.startswith(said):
        sys.stdout.write(lead[len(said):] + "\n")  # the marks of the cited units
    elif said and said == lead.strip():
        sys.stdout.write("\n")
    else:
        if streamed:
            sys.stdout.write("\n")
        if said:  # what the terminal shows is not the answer: say so, then show the one that stands
            err.print(f"[yellow](verification: {escape(_verdict(ans))}; shown instead:)[/yellow]")
        elif ans.outcome in ("evidence", "tool_result"):
            err.print(f"[yellow](verification: {escape(_verdict(ans))})[/yellow]")
        _say(lead)
    sys.stdout.flush()
    shown = ans.shown if ans.outcome not in ("refusal", "error") else []
    if shown:
        _say("")
        for s in shown:
            for line in _quote_lines(s):
                _say(line)
    for t in ans.tool_calls:
        args = json.dumps(t.arguments, ensure_ascii=False, default=str)
        detail = json.dumps(t.result, ensure_ascii=False, default=str) if t.ok else str(t.error)
        err.print(f"[cyan]tool[/cyan] {escape(t.name)}({escape(args)}) → {t.status} {escape(detail)} "
                  f"[{t.duration_s * 1000:.0f} ms]")
    for s in shown:
        where = f"  ({s['path']})" if s.get("path") else ""
        err.print(f"[green][{s['n']}][/green] {escape(_cite_label(s) + where)}")
    if ans.standalone and ans.standalone.strip() != ans.question.strip():
        err.print(f"[dim]searched as: {escape(ans.standalone)}[/dim]")
    if ans.cached_from is not None:
        err.print(escape(f"answered from the cache: first given in turn #{ans.cached_from}; the passages it rests on "
                         "are unchanged since"), style="dim")
    status = (ans.verification or {}).get("status") or "-"
    err.print(escape(f"{ans.outcome or 'answer'} · verification {status} · {ans.latency_s:.1f} s · model {ans.model} · "
                     f"adapter {ans.adapter or 'none'} · audit #{ans.audit_id}"), style="dim")


class _StreamPrinter:
    """Writes the answer's tokens (stdout) and thinking (stderr) as they come, and keeps what it wrote; says on
    stderr what the turn does before the model writes (a follow-up written out, a record looked up)."""

    STATUS = {"followup_resolved": "follow-up question written out in full",
              "tool_routed": "looking up the record the question names",
              "no_relevant_documents": "no relevant passage in the documents"}

    def __init__(self) -> None:
        self.thinking = False
        self.text = ""

    def close(self) -> None:
        """End a thinking line still open on stderr (the answer's own line is closed by `_print_answer`)."""
        if self.thinking:
            err.print()
            self.thinking = False

    def __call__(self, kind: str, payload: Any) -> None:
        if kind == "thinking":
            if not self.thinking:
                err.print("[dim]thinking:[/dim] ", end="")
                self.thinking = True
            err.print(f"[dim]{escape(payload)}[/dim]", end="")
        elif kind == "token":
            self.close()
            self.text += payload
            sys.stdout.write(payload)
            sys.stdout.flush()
        elif kind == "status" and payload == "retracted":  # what streamed is void: the answer starts again
            self.close()
            if self.text:
                sys.stdout.write("\n")
                err.print("[yellow]the model server stopped mid-answer; another one answers afresh:[/yellow]")
            self.text = ""
        elif kind == "status" and payload in self.STATUS and not self.text:
            self.close()
            err.print(f"[dim]{self.STATUS[payload]} …[/dim]")


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question; /think or /no_think switch thinking.")],
    kb: KbOpt = None, adapter: AdapterOpt = None, user: UserOpt = "cli", role: RoleOpt = "staff",
    department: DeptOpt = None, think: ThinkOpt = None, model: ModelOpt = None, home: HomeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="answer, sources, tool_calls, thinking, latency_s.")] = False,
) -> None:
    """Answer one question (streamed), with sources and tool calls."""
    printer = None if as_json else _StreamPrinter()
    with user_errors():
        assistant = _assistant(home, model)
        ans = assistant.ask(question, User(user, role, department), kb=kb, adapter=adapter, think=think,
                            on_event=printer, channel="cli")
    if printer is None:
        print_json(ans.to_dict())
    else:
        printer.close()
        _print_answer(ans, streamed=printer.text)
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
        printer = _StreamPrinter()
        ans = assistant.ask(question, who, history, kb, adapter, think, printer, conversation, channel="cli")
        printer.close()
        _print_answer(ans, streamed=printer.text)
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
PasswordOpt = Annotated[str | None, typer.Option(
    "--password", help="Default: asked for (hidden). Or ASSISTANT_NEW_PASSWORD for scripts.",
    envvar="ASSISTANT_NEW_PASSWORD")]
MustChangeOpt = Annotated[bool, typer.Option("--must-change", help="The first login must set a new password.")]


def _audit_event(settings: Any, event: str, **detail: Any) -> None:
    """Account changes made at the terminal are audited like the admin page's, under the OS user."""
    import getpass

    from core.audit import record_event

    record_event(settings.audit_db, event, f"cli:{getpass.getuser()}", **detail)


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="Login name.")],
    role: RoleOpt = "staff", department: DeptOpt = None, password: PasswordOpt = None,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite an existing user (new password).")] = False,
    must_change: MustChangeOpt = False, home: HomeOpt = None,
) -> None:
    """Create a user (password: 10+ characters, not a common one, not containing the name)."""
    from assistant.app.users import add_user

    settings = settings_or_exit(home=home)
    if password is None:
        password = typer.prompt(f"password for {name}", hide_input=True, confirmation_prompt=True)
    with user_errors():
        acc = add_user(settings.app_db, name, password, role, department, replace, must_change)
    _audit_event(settings, "user_added", target=acc.name, role=acc.role, department=acc.department,
                 replaced=replace)
    out.print(f"user [bold]{escape(acc.name)}[/bold] ({acc.role}, {acc.department or 'no department'}) saved")


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
        table.add_row(escape(a.name), a.role, a.department or "-", a.created)
    out.print(table)


@users_app.command("remove")
def users_remove(name: Annotated[str, typer.Argument(help="Login name.")], home: HomeOpt = None) -> None:
    """Delete a user (their saved conversations stay; the audit log is never touched). Their open sessions end."""
    from assistant.app.users import remove_user

    settings = settings_or_exit(home=home)
    with user_errors():
        remove_user(settings.app_db, name)
    _audit_event(settings, "user_removed", target=name)
    out.print(f"user {escape(name)} removed")


@users_app.command("role")
def users_role(name: Annotated[str, typer.Argument(help="Login name.")],
               role: Annotated[str, typer.Option("--role", help="The new role.")],
               department: DeptOpt = None, home: HomeOpt = None) -> None:
    """Change a user's role and department (their open sessions end at the next step)."""
    from assistant.app.users import get_user, set_role

    settings = settings_or_exit(home=home)
    with user_errors():
        was = get_user(settings.app_db, name)
        acc = set_role(settings.app_db, name, role, department)
    _audit_event(settings, "user_role_changed", target=name, role=acc.role, department=acc.department,
                 was_role=was.role if was else None, was_department=was.department if was else None)
    out.print(f"user {escape(acc.name)} is now {acc.role} ({acc.department or 'no department'})")


@users_app.command("password")
def users_password(name: Annotated[str, typer.Argument(help="Login name.")], password: PasswordOpt = None,
                   must_change: MustChangeOpt = False, home: HomeOpt = None) -> None:
    """Set a user's password (e.g. a reset; with --must-change they choose their own at the next login)."""
    from assistant.app.users import set_password

    settings = settings_or_exit(home=home)
    if password is None:
        password = typer.prompt(f"new password for {name}", hide_input=True, confirmation_prompt=True)
    with user_errors():
        set_password(settings.app_db, name, password, must_change)
    _audit_event(settings, "password_changed", target=name, must_change=must_change)
    out.print(f"password of {escape(name)} changed")


@users_app.command("demo")
def users_demo(
    demo_passwords: Annotated[bool, typer.Option(
        "--demo-passwords", help="Use the README's published demo passwords instead of random ones.")] = False,
    home: HomeOpt = None,
) -> None:
    """Create the demo accounts that are missing, each with a random password printed only now (or the
    documented ones with --demo-passwords); the admin must choose a new password at its first login."""
    from assistant.app.users import DEMO_USERS, ensure_demo_users

    settings = settings_or_exit(home=home)
    made = {m[0]: m[1] for m in ensure_demo_users(settings.app_db, random_passwords=not demo_passwords,
                                                  admin_must_change=True)}
    for name, role, dept in ((n, r, d) for n, _, r, d in DEMO_USERS):
        if name in made:
            _audit_event(settings, "user_added", target=name, role=role, department=dept, demo=True)
        # a password is shown once, when it is made: later runs never print it again
        shown = made.get(name, "(exists; password not shown)")
        note = "  (new; must change it at the first login)" if name in made and role == "admin" else \
            ("  (new)" if name in made else "")
        out.print(f"  {name:<11} / {shown:<30} {role} ({dept}){note}", markup=False)
    if made and not demo_passwords:
        out.print("  these passwords are shown only now: note them (`assistant users password NAME` resets one)",
                  markup=False)


audit_app = typer.Typer(help="The audit log ($ASSISTANT_HOME/audit.db): check its hash chain, ship it elsewhere.",
                        no_args_is_help=True)
app.add_typer(audit_app, name="audit")


def _audit_db(home: Path | None) -> Path:
    settings = settings_or_exit(home=home)
    from core import db

    if db.database_url(settings.audit_db) is None and not settings.audit_db.is_file():  # PostgreSQL: the schema
        err.print(f"[red]error:[/red] no audit log at {escape(str(settings.audit_db))} (check ASSISTANT_HOME / --home)")
        raise typer.Exit(2)
    return settings.audit_db


@audit_app.command("verify")
def audit_verify(home: HomeOpt = None) -> None:
    """Check the append-only triggers and every hash link; name the first broken link (exit code 1 if any)."""
    from core import audit_chain
    from core.audit import AuditLog

    path = _audit_db(home)
    with user_errors():  # a database that cannot be reached: said plainly
        if audit_chain.needs_migration(path):  # a log from before the chain: chain it now, as any open would
            AuditLog(path)
            err.print("[dim]the log predates the hash chain: its rows were chained now[/dim]")
        verdict = audit_chain.verify(path)
    for problem in verdict.problems:
        out.print(f"[red]BROKEN[/red] {escape(problem)}")
    for table, (last, digest) in verdict.heads.items():
        out.print(f"{table}: {verdict.rows[table]:,} rows chained, head #{last} {digest or '-'}")
    if not verdict.intact:
        out.print("The log was changed outside the assistant: compare with the copy shipped by `assistant audit "
                  "export` to see what.")
        raise typer.Exit(1)
    out.print("[green]intact[/green]: note the heads elsewhere to detect a rewrite of the whole file later")


@audit_app.command("export")
def audit_export(
    state: Annotated[Path | None, typer.Option(
        "--state", help="JSON file remembering the last ids exported: each run then writes only newer rows "
        "(for cron | logger / a SIEM forwarder).")] = None,
    home: HomeOpt = None,
) -> None:
    """Write the audit rows (turns, then events; each with its table and hash) to stdout as JSON lines."""
    import json

    from core import audit_chain
    from core.files import atomic_write_text

    path = _audit_db(home)
    after: dict[str, int] = {}
    if state is not None and state.is_file():
        try:
            after = {k: int(v) for k, v in json.loads(state.read_text(encoding="utf-8")).items()}
        except (ValueError, AttributeError) as exc:
            err.print(f"[red]error:[/red] {escape(str(state))} is not an export state ({exc}); remove it to export "
                      "everything again")
            raise typer.Exit(2) from None
    last = dict(after)
    with user_errors():
        for row in audit_chain.export(path, after):
            sys.stdout.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            last[row["table"]] = row["id"]
    sys.stdout.flush()
    if state is not None:
        atomic_write_text(state, json.dumps(last) + "\n")


# idle keep-alive connections are kept longer than a client's back-off after 429/503 (up to a minute): a client
# reusing its connection after waiting Retry-After must not find it closed under it
KEEP_ALIVE_S = 75


@app.command()
def serve(
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on (ASSISTANT_API_HOST; default "
                                             "127.0.0.1: this machine only).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (ASSISTANT_API_PORT, default 8080).")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Worker processes (ASSISTANT_API_WORKERS); more "
                                                "than one need an engine server (ASSISTANT_BACKEND=openai).")] = None,
    home: HomeOpt = None, model: ModelOpt = None,
) -> None:
    """The OpenAI-compatible API: /v1/chat/completions, /v1/models, /v1/retrieve, /healthz, /readyz, /metrics and
    the OpenAPI docs at /docs. Clients authenticate with a key from `assistant keys create USER`."""
    import os
    import tempfile

    import uvicorn

    settings = settings_or_exit(home=home, model=model, api_host=host, api_port=port, api_workers=workers)
    if settings.api_workers > 1 and settings.backend == "local":
        err.print("[red]error:[/red] several workers share one engine server: start one (llama.cpp's llama-server, "
                  "vLLM) and set ASSISTANT_BACKEND=openai and ASSISTANT_OPENAI_BASE_URL, or serve with --workers 1 "
                  "(the model in this process)")
        raise typer.Exit(2)
    if settings.api_workers > 1 and settings.vector_store == "milvus" and "://" not in settings.milvus_target:
        err.print("[red]error:[/red] Milvus Lite's file serves one process: run a Milvus server (or `milvus-lite "
                  "server --data-dir DIR --port 19530`) and set ASSISTANT_MILVUS_URI=http://HOST:19530, or serve with "
                  "--workers 1")
        raise typer.Exit(2)
    if settings.api_host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]warning:[/yellow] listening on {escape(settings.api_host)}: put the API behind HTTPS "
                  "(keys travel in the Authorization header)")
    url = f"http://{settings.api_host}:{settings.api_port}"
    err.print(f"API on {url}/v1 (docs: {url}/docs); keys: `assistant keys create USER`")
    if settings.api_workers == 1:
        from assistant.api.server import create_app

        uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="warning",
                    timeout_graceful_shutdown=5, timeout_keep_alive=KEEP_ALIVE_S)
        return
    # worker processes read the same settings from the environment; metrics are summed across them
    os.environ.update({"ASSISTANT_HOME": str(settings.home), "ASSISTANT_MODEL": settings.model,
                       "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="metrics-", dir=settings.home)})
    uvicorn.run("assistant.api.server:app_from_env", factory=True, workers=settings.api_workers,
                host=settings.api_host, port=settings.api_port, log_level="warning", timeout_graceful_shutdown=5,
                timeout_keep_alive=KEEP_ALIVE_S)


@app.command()
def engine(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (127.0.0.1: this machine only).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port.")] = 8000,
    name: Annotated[str, typer.Option("--name", help="The model name the base model is served under "
                                      "(ASSISTANT_OPENAI_MODEL of the app servers).")] = "base",
    home: HomeOpt = None, model: ModelOpt = None,
) -> None:
    """The model alone as an OpenAI-compatible engine server (llama.cpp, several requests at once, adapters by
    version per request as `NAME@vN`), for app servers with ASSISTANT_BACKEND=openai: start one per engine machine
    and list them in ASSISTANT_OPENAI_BASE_URLS."""
    import uvicorn

    from assistant.api.engine_server import create_engine_app

    settings = settings_or_exit(home=home, model=model)
    err.print(f"engine on http://{host}:{port}/v1 (model name '{name}'; adapters as NAME@vN)")
    uvicorn.run(create_engine_app(settings, base_name=name), host=host, port=port, log_level="warning",
                timeout_graceful_shutdown=5, timeout_keep_alive=KEEP_ALIVE_S)


keys_app = typer.Typer(help="API keys: each acts as its user (role, department), stored hashed, shown once.",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    user: Annotated[str, typer.Argument(help="The account the key acts as.")],
    scope: Annotated[str, typer.Option("--scope", help="Comma list: chat, retrieve.")] = "chat,retrieve",
    expires: Annotated[str | None, typer.Option("--expires", help="30d, 12h or a date (2027-01-31).")] = None,
    rpm: Annotated[int | None, typer.Option("--rpm", help="Requests per minute (default ASSISTANT_API_RPM).")] = None,
    daily_tokens: Annotated[int | None, typer.Option("--daily-tokens", help="Model tokens per day (UTC; default "
                                                     "ASSISTANT_API_DAILY_TOKENS).")] = None,
    label: Annotated[str | None, typer.Option("--label", help="What the key is for (shown in lists).")] = None,
    home: HomeOpt = None,
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from assistant.app import api_keys

    settings = settings_or_exit(home=home)
    with user_errors():
        key, token = api_keys.create_key(settings.app_db, user, [s.strip() for s in scope.split(",") if s.strip()],
                                         api_keys.parse_expiry(expires), rpm or settings.api_rpm,
                                         daily_tokens or settings.api_daily_tokens, label)
    _audit_event(settings, "api_key_created", key_id=key.id, target=user, scopes=list(key.scopes), rpm=key.rpm,
                 daily_tokens=key.daily_tokens, expires=key.expires)
    err.print(f"key {key.id} for {escape(user)} ({', '.join(key.scopes)}; {key.rpm}/min, {key.daily_tokens} "
              "tokens/day); shown only now:")
    _say(token)


@keys_app.command("list")
def keys_list(user: Annotated[str | None, typer.Option("--user", help="Only this account's keys.")] = None,
              as_json: Annotated[bool, typer.Option("--json")] = False, home: HomeOpt = None) -> None:
    """Keys with their user, scopes, limits and state (never the secret)."""
    from dataclasses import asdict

    from assistant.app import api_keys

    settings = settings_or_exit(home=home)
    keys = api_keys.list_keys(settings.app_db, user)
    if as_json:
        print_json([asdict(k) | {"state": k.state} for k in keys])
        return
    table = Table("id", "user", "label", "scopes", "per min", "tokens/day", "state", "created")
    for k in keys:
        table.add_row(k.id, escape(k.user), escape(k.label or ""), ",".join(k.scopes), str(k.rpm),
                      str(k.daily_tokens), k.state, k.created)
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (or the whole key).")],
                home: HomeOpt = None) -> None:
    """Revoke a key: its next request is refused (401)."""
    from assistant.app import api_keys

    settings = settings_or_exit(home=home)
    with user_errors():
        key = api_keys.revoke_key(settings.app_db, key_id)
    _audit_event(settings, "api_key_revoked", key_id=key.id, target=key.user)
    out.print(f"key {key.id} of {escape(key.user)} revoked")


@keys_app.command("usage")
def keys_usage(days: Annotated[int, typer.Option("--days", min=1)] = 7,
               as_json: Annotated[bool, typer.Option("--json")] = False, home: HomeOpt = None) -> None:
    """Requests, tokens, refusals (429) and cache hits per key and day."""
    from assistant.app import api_keys

    settings = settings_or_exit(home=home)
    rows = api_keys.usage(settings.app_db, days)
    if as_json:
        print_json(rows)
        return
    table = Table("day", "key", "user", "requests", "tokens", "of quota", "refused", "cached")
    for r in rows:
        table.add_row(r["day"], r["key_id"], escape(r["user"] or "?"), str(r["requests"]), str(r["tokens"]),
                      str(r["daily_tokens"] or "?"), str(r["refused"]), str(r["cached"]))
    out.print(table)


@app.command("cache-clear")
def cache_clear(kb: KbOpt = None, home: HomeOpt = None) -> None:
    """Drop the cached answers (of one knowledge base with --kb): the next questions are answered afresh."""
    from core.answer_cache import AnswerCache

    settings = settings_or_exit(home=home)
    n = AnswerCache(settings.cache_db).clear(kb)
    out.print(f"{n} cached answers dropped")


if __name__ == "__main__":
    app()
