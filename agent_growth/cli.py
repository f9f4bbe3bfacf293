"""The `agent-growth` command: one entrypoint whose subcommand picks the process's role."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from agent_growth import logs
from agent_growth.settings import get_settings

app = typer.Typer(
    help="Agent Growth keeps knowledge agents' taxonomy coverage fresh.",
    no_args_is_help=True,
    add_completion=False,
)
corpus_app = typer.Typer(help="Import a taxonomy and its documents.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")


@app.callback()
def _configure_logging() -> None:
    settings = get_settings()
    logs.configure(log_format=settings.log_format, level=settings.log_level)


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the REST API (and /metrics, /healthz, /readyz)."""
    import uvicorn

    uvicorn.run(
        "agent_growth.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        log_config=None,
        proxy_headers=True,
    )


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(min=1, help="Tasks run at once.")] = 2,
    metrics_port: Annotated[
        int, typer.Option(help="Port for /metrics and /healthz; 0 turns them off.")
    ] = 0,
) -> None:
    """Take coverage refreshes from the queue and run them."""
    from agent_growth.worker import runner

    asyncio.run(runner.run_worker(concurrency=concurrency, metrics_port=metrics_port))


@app.command()
def operator(
    namespace: Annotated[
        list[str] | None,
        typer.Option(help="Namespace to watch (repeatable); cluster-wide when omitted."),
    ] = None,
) -> None:
    """Reconcile CoverageRefresh resources in a Kubernetes cluster."""
    from agent_growth.operator import main as operator_main

    operator_main.run(namespaces=namespace or [])


@app.command()
def migrate(
    create_database: Annotated[
        bool, typer.Option(help="Create the database first when it does not exist.")
    ] = True,
) -> None:
    """Bring the database schema up to date (safe to run from several pods at once)."""
    from agent_growth.db import engine
    from agent_growth.db import migrate as migrations

    if create_database and engine.ensure_database():
        typer.echo("created the database")
    migrations.upgrade()
    typer.echo("database schema is up to date")


@corpus_app.command("load")
def corpus_load(
    directory: Annotated[
        Path,
        typer.Argument(
            exists=True, file_okay=False, help="Holds taxonomy.json and documents.jsonl[.gz]."
        ),
    ],
    fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of the documents to load.")
    ] = 1.0,
    taxonomy_version: Annotated[str, typer.Option(help="Version tag of this taxonomy.")] = "1",
) -> None:
    """Load a taxonomy and its documents; loading again adds only what is new."""
    from agent_growth import corpus

    report = corpus.load_corpus(directory, fraction=fraction, taxonomy_version=taxonomy_version)
    typer.echo(report.summary())


@app.command()
def demo(
    data: Annotated[
        Path | None, typer.Option(help="Corpus directory; defaults to the bundled trimmed copy.")
    ] = None,
) -> None:
    """Run the whole job on the bundled Wikispeedia corpus, start to finish."""
    from agent_growth import demo as demo_module

    demo_module.main(data_dir=data)


def main() -> None:
    app()
