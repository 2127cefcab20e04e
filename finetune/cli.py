"""`finetune` CLI: a thin Typer shell over `finetune.jobs` and the adapter registry (`core.registry`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from core import registry
from core.clikit import err, out, print_json, settings_or_exit, user_errors
from core.errors import AssistantError
from finetune import jobs
from finetune.recipe import load_recipe

app = typer.Typer(help="Train, evaluate and version LoRA adapters for the assistant's model.",
                  no_args_is_help=True, pretty_exceptions_enable=False)

HomeOpt = Annotated[Path | None, typer.Option("--home", help="Data home (ASSISTANT_HOME).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


class _TrainProgress:
    """Rich bar over optimizer steps with the running loss, throughput and each evaluation."""

    def __init__(self) -> None:
        self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=err)
        self.task: Any = None

    def __call__(self, ev: dict[str, Any]) -> None:
        kind = ev["event"]
        if kind == "start":
            err.print(f"model: {ev['model']}")
            err.print(f"examples: {ev['train_examples']} train, {ev['eval_examples']} eval; "
                      f"trainable parameters: {ev['trainable_params']:,}; run: {ev['run']}"
                      + (" (resumed)" if ev["resumed"] else ""))
            if ev["truncated"]:
                err.print(f"[yellow]warning:[/yellow] {ev['truncated']} examples were longer than max_length and "
                          f"truncated ({ev['dropped']} dropped: no answer tokens left); "
                          "raise --max-length to keep them")
            self.progress.start()
            self.task = self.progress.add_task("train", total=ev["total_steps"], completed=ev["step"], info="")
        elif kind == "step":
            info = f"loss {ev['loss']:.4f} · lr {ev['lr']:.2e} · {ev['tokens_per_s']:.0f} tok/s"
            self.progress.update(self.task, completed=ev["step"], info=info)
        elif kind == "eval" and "eval_loss" in ev:
            label = "base model" if ev["step"] == 0 else f"step {ev['step']}"
            best = " [green](best)[/green]" if ev.get("best") else ""
            self.progress.console.print(f"{label}: eval loss {ev['eval_loss']:.4f}, "
                                        f"token accuracy {ev['eval_token_acc']:.3f}{best}")
        elif kind == "done":
            self.progress.stop()


@app.command()
def train(
    data: Annotated[list[Path], typer.Argument(help="Training files (.jsonl/.json) or folders of them.")],
    name: Annotated[str, typer.Option("--name", help="Adapter name, e.g. finance, hr.")],
    base: Annotated[
        str | None, typer.Option("--base", help="Base model: 'offline', a folder, a .gguf or a hub id.")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML recipe; flags override it.")] = None,
    eval_data: Annotated[
        list[Path] | None, typer.Option("--eval-data", help="Held-out files instead of a split.")
    ] = None,
    rank: Annotated[int | None, typer.Option(help="LoRA rank r.")] = None,
    alpha: Annotated[int | None, typer.Option(help="LoRA alpha.")] = None,
    dropout: Annotated[float | None, typer.Option(help="LoRA dropout.")] = None,
    target_modules: Annotated[
        str | None, typer.Option(help="'all-linear' or comma-separated, e.g. q_proj,v_proj.")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    scheduler: Annotated[str | None, typer.Option(help="cosine, linear, constant, constant_with_warmup.")] = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps (overrides epochs).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Examples per forward pass.")] = None,
    grad_accum: Annotated[int | None, typer.Option(help="Batches per optimizer step.")] = None,
    max_length: Annotated[
        int | None, typer.Option(help="Max tokens per example (longer: truncated, reported).")
    ] = None,
    eval_ratio: Annotated[float | None, typer.Option(help="Held-out share when no --eval-data.")] = None,
    eval_steps: Annotated[int | None, typer.Option(help="Optimizer steps between evaluations/checkpoints.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    thinking: Annotated[
        bool | None, typer.Option("--thinking/--no-thinking", help="Qwen3 thinking (default: reasoning rows).")
    ] = None,
    gradient_checkpointing: Annotated[
        bool | None, typer.Option("--gradient-checkpointing/--no-gradient-checkpointing")
    ] = None,
    qlora: Annotated[bool | None, typer.Option("--qlora", help="4-bit base (CUDA only).")] = None,
    method: Annotated[
        str | None, typer.Option("--method", help="lora (an adapter) or full (every weight; small models).")
    ] = None,
    optimizer: Annotated[str | None, typer.Option(help="adamw, or adamw_8bit (bitsandbytes, CUDA).")] = None,
    packing: Annotated[
        bool | None, typer.Option("--packing/--no-packing", help="Padding-free micro-batches (default on).")
    ] = None,
    report_to: Annotated[
        list[str] | None, typer.Option("--report-to", help="tensorboard, swanlab or mlflow (repeatable; local).")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the last interrupted run of this name.")] = False,
    activate: Annotated[
        bool | None, typer.Option("--activate/--no-activate", help="Activate it (default: first version only).")
    ] = None,
    job_dir: Annotated[Path | None, typer.Option("--job-dir", help="Write progress here (the UI's jobs).")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Supervised fine-tuning (LoRA, or --method full); registers the best checkpoint as the next version."""
    from finetune.background import JobReporter

    settings = settings_or_exit(home=home)
    job = JobReporter(job_dir)
    modules: Any = target_modules
    if target_modules not in (None, "all-linear"):
        modules = [m.strip() for m in target_modules.split(",")]
    with user_errors():
        recipe = load_recipe(config, dict(
            base=base, rank=rank, alpha=alpha, dropout=dropout, target_modules=modules, lr=lr, scheduler=scheduler,
            epochs=epochs, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum, max_length=max_length,
            eval_ratio=eval_ratio, eval_steps=eval_steps, seed=seed, enable_thinking=thinking,
            gradient_checkpointing=gradient_checkpointing, qlora=qlora, method=method, optimizer=optimizer,
            packing=packing))
        progress = None if as_json else _TrainProgress()

        def on_event(ev: dict[str, Any]) -> None:
            job.on_event(ev)
            if progress:
                progress(ev)

        with job.running():
            job.on_phase("training", {"data": [str(d) for d in data]})
            av = jobs.train_adapter(name, data, recipe, settings, eval_data, on_event, resume, activate,
                                    report_to=report_to)
    job.done({"adapter": av.ref, "active": av.active, "eval_loss": av.meta["metrics"].get("eval_loss"),
              "base_eval_loss": av.meta["metrics"].get("base_eval_loss")})
    if as_json:
        print_json({"adapter": av.ref, "active": av.active, "path": str(av.path), "metrics": av.meta["metrics"]})
        return
    m = av.meta["metrics"]
    out.print(f"[bold green]{av.ref}[/bold green] saved{' (active)' if av.active else ''}: {av.path}")
    for tracker, where in av.meta.get("tracking", {}).items():
        out.print(f"{tracker}: {where}")
    out.print(f"eval loss {_fmt(m.get('base_eval_loss'))} (base) -> {_fmt(m.get('eval_loss'))} (best, step "
              f"{m.get('best_step')}); {m['steps']} steps, {m['tokens']:,} tokens in {m['seconds']} s "
              f"({m['tokens_per_s']:.0f} tok/s)")
    if not av.active:
        out.print(f"activate it with `finetune promote {av.ref}`")


@app.command("list")
def list_(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Adapters and their versions; * marks the active one."""
    settings = settings_or_exit(home=home)
    rows = [av for n in registry.list_names(settings) for av in registry.list_versions(settings, n)]
    if as_json:
        print_json([{"adapter": a.ref, "active": a.active, "base": a.meta.get("base"), "created": a.meta.get("created"),
                     "eval_loss": a.meta.get("metrics", {}).get("eval_loss")} for a in rows])
        return
    if not rows:
        out.print("no adapters yet; train one with `finetune train DATA --name NAME`")
        return
    table = Table("adapter", "active", "base", "eval loss", "examples", "created")
    for a in rows:
        m = a.meta.get("metrics", {})
        table.add_row(a.ref, "*" if a.active else "", str(a.meta.get("base")), _fmt(m.get("eval_loss")),
                      _fmt(m.get("train_examples")), str(a.meta.get("created")))
    out.print(table)


@app.command()
def show(ref: Annotated[str, typer.Argument(help="NAME (active version) or NAME@vN.")], home: HomeOpt = None,
         as_json: JsonOpt = False) -> None:
    """One version's base model, data, recipe and metrics."""
    settings = settings_or_exit(home=home)
    with user_errors():
        av = registry.get(settings, ref)
        versions = registry.list_versions(settings, av.name)
    meta = {k: v for k, v in av.meta.items() if k != "history"}
    if as_json:
        print_json({"active": av.active, "path": str(av.path), **meta,
                    "versions": [v.version + ("*" if v.active else "") for v in versions]})
        return
    out.print(f"[bold]{av.ref}[/bold]{' (active)' if av.active else ''} — {av.path}")
    out.print(f"versions: {', '.join(v.version + ('*' if v.active else '') for v in versions)}")
    out.print(f"base: {meta.get('base')} (fingerprint {meta.get('base_fingerprint')}); created {meta.get('created')}")
    for d in meta.get("data", []):
        out.print(f"data: {d['path']} ({d['examples']} examples, sha256 {d['sha256'][:12]}…)")
    recipe = meta.get("recipe", {})
    out.print("recipe: " + ", ".join(f"{k}={v}" for k, v in recipe.items()))
    table = Table("metric", "value")
    for k, v in meta.get("metrics", {}).items():
        if not isinstance(v, dict | list):
            table.add_row(k, _fmt(v))
    out.print(table)


@app.command("eval")
def eval_(
    ref: Annotated[str, typer.Argument(help="NAME or NAME@vN.")],
    data: Annotated[list[Path], typer.Option("--data", help="Evaluation files (same formats as training).")],
    base: Annotated[
        str | None, typer.Option("--base", help="Evaluate on another base (refused if it differs).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate the first N examples only.")] = None,
    no_generate: Annotated[bool, typer.Option("--no-generate", help="Loss and token accuracy only (fast).")] = False,
    max_new_tokens: Annotated[int, typer.Option(help="Generation budget per answer.")] = 96,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Loss, token accuracy and answer-level metrics on the structured replies (answer F1, exact match, evidence ids,
    refusals, tool choices, follow-ups, valid rate)."""
    settings = settings_or_exit(home=home)
    with user_errors(), Progress(TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                  console=err, transient=True) as progress:
        task = progress.add_task("eval", total=None)
        metrics = jobs.evaluate_adapter(ref, data, settings, base, not no_generate, limit, max_new_tokens,
                                        lambda n, total: progress.update(task, completed=n, total=total))
    if as_json:
        print_json(metrics)
        return
    table = Table("metric", "value")
    for k, v in metrics.items():
        if not isinstance(v, dict | list) and not (isinstance(v, float) and math.isnan(v)):
            table.add_row(k, _fmt(v))
    out.print(table)
    if "classification" in metrics:
        _print_classification(metrics["classification"])


def _print_classification(c: dict[str, Any]) -> None:
    out.print(f"classification: accuracy {c['accuracy']:.3f}, macro F1 {c['macro_f1']:.3f}")
    table = Table("label", "precision", "recall", "F1", "support")
    for label, m in c["per_class"].items():  # labels come from the user's data: shown, never read as markup
        table.add_row(escape(label), _fmt(m["precision"]), _fmt(m["recall"]), _fmt(m["f1"]), str(m["support"]))
    out.print(table)
    confusion = Table("reference \\ predicted", *map(escape, c["labels"]), title="confusion matrix")
    for label, row in zip(c["labels"], c["confusion"], strict=False):
        confusion.add_row(escape(label), *map(str, row))
    out.print(confusion)


@app.command()
def promote(ref: Annotated[str, typer.Argument(help="NAME@vN to make active (also: roll back).")],
            home: HomeOpt = None) -> None:
    """Make a version the active one."""
    import getpass

    from core.audit import record_event

    settings = settings_or_exit(home=home)
    with user_errors():
        before = registry.active_ref(settings, ref.partition("@")[0])
        av = registry.promote(settings, ref)
    record_event(settings.audit_db, registry.promotion_event(before, av.ref), f"cli:{getpass.getuser()}",
                 adapter=av.name, version=av.ref, previous=before)
    out.print(f"{av.ref} is now the active version of '{av.name}'")


@app.command()
def remove(ref: Annotated[str, typer.Argument(help="NAME@vN (one version) or NAME (the whole adapter).")],
           yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
           home: HomeOpt = None) -> None:
    """Delete a version, or an adapter with all its versions."""
    settings = settings_or_exit(home=home)
    if "@" not in ref and not yes:
        typer.confirm(f"remove adapter '{ref}' and all its versions?", abort=True)
    with user_errors():
        removed = registry.remove(settings, ref)
    out.print("removed " + ", ".join(removed))


@app.command()
def merge(ref: Annotated[str, typer.Argument(help="NAME or NAME@vN.")],
          output: Annotated[Path, typer.Option("--output", "-o", help="New folder for the merged model.")],
          home: HomeOpt = None) -> None:
    """Merge an adapter into its base: a standalone model folder for vLLM, llama.cpp and others."""
    settings = settings_or_exit(home=home)
    with user_errors():
        path = jobs.merge_adapter(ref, output, settings)
    out.print(f"merged model written to {path}")


@app.command()
def retrain(
    name: Annotated[str, typer.Argument(help="Adapter to improve; its active version is the one to beat.")],
    data: Annotated[
        list[Path] | None, typer.Option("--data", help="Base training set (default: the active version's).")
    ] = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs (default: the active version's recipe).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps (overrides epochs).")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    eval_steps: Annotated[int | None, typer.Option(help="Optimizer steps between evaluations.")] = None,
    eval_ratio: Annotated[float, typer.Option(help="Held-out share of the base set and of the feedback.")] = 0.1,
    feedback_weight: Annotated[int, typer.Option(help="Times each feedback example is repeated.")] = 2,
    tolerance: Annotated[float, typer.Option(help="Promote if held-out loss is at most (1+tolerance)× the active's.")]
    = 0.0,
    job_dir: Annotated[Path | None, typer.Option("--job-dir", help="Write progress here (the UI's jobs).")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who asked for it (the audit log; default: the OS user).")]
    = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Learn from staff feedback: new version from feedback + base set, promoted only if not worse."""
    import getpass

    from finetune.background import JobReporter
    from finetune.retrain import retrain as run_retrain

    settings = settings_or_exit(home=home)
    job = JobReporter(job_dir)
    progress = None if as_json else _TrainProgress()

    def on_event(ev: dict[str, Any]) -> None:
        job.on_event(ev)
        if progress:
            progress(ev)

    def on_phase(phase: str, info: dict[str, Any]) -> None:
        job.on_phase(phase, info)
        if not as_json:
            err.print(f"[bold]{phase}[/bold] {info if phase != 'done' else ''}")

    overrides = {k: v for k, v in dict(epochs=epochs, max_steps=max_steps, lr=lr, eval_steps=eval_steps).items()
                 if v is not None}
    try:
        with job.running():
            res = run_retrain(settings, name, data, overrides, eval_ratio, feedback_weight, tolerance, on_event,
                              on_phase, requested_by=by or f"cli:{getpass.getuser()}")
    except AssistantError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    job.done(res.to_dict())
    if as_json:
        print_json(res.to_dict())
        return
    c, a = res.candidate_eval, res.active_eval
    out.print(f"feedback: {res.feedback}")
    out.print(f"held-out loss: {res.candidate} {c['eval_loss']:.4f} vs active {res.active} {a['eval_loss']:.4f}; "
              f"token accuracy {c['eval_token_acc']:.3f} vs {a['eval_token_acc']:.3f}")
    if res.promoted:
        out.print(f"[bold green]{res.candidate} promoted[/bold green] (not worse than {res.active})")
    else:
        out.print(f"[yellow]{res.candidate} kept inactive[/yellow]: {escape(res.reason)}")


@app.command("worker")
def worker(
    once: Annotated[bool, typer.Option("--once", help="Stop when the queue is empty (else wait for jobs).")] = False,
    home: HomeOpt = None,
) -> None:
    """Run queued training jobs (the app servers' queue in the database: ASSISTANT_DATABASE_URL on PostgreSQL, or
    app.db): claim one, run it, record its progress, repeat. While a worker runs, the UI queues jobs for it;
    without one, the app server starts them itself. A job whose worker dies is queued again once, then failed."""
    from finetune.worker import serve

    settings = settings_or_exit(home=home)
    with user_errors():
        n = serve(settings, once=once)
    err.print(f"{n} job(s) run")


if __name__ == "__main__":
    app()
