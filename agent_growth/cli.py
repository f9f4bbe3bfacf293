"""The `agent-growth` command: one entrypoint whose subcommand picks the process's role."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import psycopg
import pydantic
import redis.exceptions
import sqlalchemy.exc
import typer

from agent_growth import logs
from agent_growth.errors import AgentGrowthError
from agent_growth.settings import DEV_API_KEY, get_settings

logger = logging.getLogger(__name__)

app = typer.Typer(
    help=(
        "Agent Growth keeps knowledge agents' taxonomy coverage fresh. Settings come from"
        " AGENT_GROWTH_* environment variables (see agent_growth/settings.py)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
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
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Serve the REST API (and /metrics, /healthz, /readyz)."""
    import uvicorn

    if DEV_API_KEY in get_settings().api_keys:
        logger.warning(
            "accepting the development API key %r; set AGENT_GROWTH_API_KEYS to real keys",
            DEV_API_KEY,
        )
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
        int,
        typer.Option(
            min=0, max=65535, help="Port for /metrics and /healthz on all interfaces; 0: none."
        ),
    ] = 0,
) -> None:
    """Take coverage refreshes from the queue and run them."""
    from agent_growth.worker import runner

    asyncio.run(runner.run_worker(concurrency=concurrency, metrics_port=metrics_port))


@app.command()
def operator(
    namespace: Annotated[
        list[str] | None,
        typer.Option(help="Namespace to watch (repeatable); the whole cluster when omitted."),
    ] = None,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", help="Watch the whole cluster.")
    ] = False,
    liveness: Annotated[
        str | None,
        typer.Option(
            help="Serve kopf's liveness probe at this URL, e.g. http://0.0.0.0:8080/healthz."
        ),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Serve Prometheus /metrics on this port.")
    ] = None,
    standalone: Annotated[
        bool, typer.Option("--standalone", help="Run without peering: a single replica only.")
    ] = False,
    peering: Annotated[
        str | None, typer.Option(help="Peering object shared by the replicas.")
    ] = None,
    priority: Annotated[
        int | None, typer.Option(help="This replica's peering priority; highest one acts.")
    ] = None,
) -> None:
    """Reconcile CoverageRefresh resources in a Kubernetes cluster."""
    from agent_growth.operator import main as operator_main

    if all_namespaces and namespace:
        raise typer.BadParameter("give --namespace or --all-namespaces, not both")
    operator_main.run(
        namespaces=[] if all_namespaces else (namespace or []),
        standalone=standalone,
        peering_name=peering,
        priority=priority,
        liveness_endpoint=liveness,
        metrics_port=metrics_port,
    )


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
        float, typer.Option(help="Share of the documents to load, above 0 and at most 1.")
    ] = 1.0,
    taxonomy_version: Annotated[str, typer.Option(help="Version tag of this taxonomy.")] = "1",
) -> None:
    """Load a taxonomy and its documents; loading again adds only what is new."""
    from agent_growth import corpus

    if not 0 < fraction <= 1:
        raise typer.BadParameter("must be above 0 and at most 1", param_hint="--fraction")
    if not taxonomy_version.strip():
        raise typer.BadParameter("must not be empty", param_hint="--taxonomy-version")
    report = corpus.load_corpus(directory, fraction=fraction, taxonomy_version=taxonomy_version)
    typer.echo(report.summary())


@app.command()
def demo(
    data: Annotated[
        Path | None, typer.Option(help="Corpus directory; defaults to the bundled trimmed copy.")
    ] = None,
    database: Annotated[
        str, typer.Option(help="PostgreSQL database to work in; it is dropped and made anew.")
    ] = "agent_growth_demo",
    redis_db: Annotated[int, typer.Option(min=0, help="Redis database number to work in.")] = 1,
) -> None:
    """Run the whole job on the bundled Wikispeedia corpus, start to finish."""
    from agent_growth import demo as demo_module

    demo_module.main(data_dir=data, database=database, redis_db=redis_db)


def _reason(message: str) -> str:
    # pydantic prefixes the messages of our own validators with "Value error, ".
    return message.removeprefix("Value error, ")


def _fail(message: str, *, code: int) -> NoReturn:
    print(f"agent-growth: {message}", file=sys.stderr)
    sys.exit(code)


def main() -> None:
    """Run the command; expected failures end with one line on stderr instead of a traceback."""
    try:
        app()
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            # Checks across several settings have no location; their message names them.
            f"AGENT_GROWTH_{'_'.join(map(str, error['loc'])).upper()}: {_reason(error['msg'])}"
            if error["loc"]
            else _reason(error["msg"])
            for error in exc.errors()
        )
        _fail(f"invalid setting: {problems or exc}", code=2)
    except (sqlalchemy.exc.ProgrammingError, psycopg.errors.UndefinedTable) as exc:
        if isinstance(getattr(exc, "orig", exc), psycopg.errors.UndefinedTable):
            _fail("the database has no schema yet; run `agent-growth migrate` first", code=1)
        raise
    except AgentGrowthError as exc:
        _fail(str(exc), code=2)
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.ArgumentError) as exc:
        _fail(f"cannot use the database: {exc.orig if hasattr(exc, 'orig') else exc}", code=1)
    except psycopg.OperationalError as exc:
        _fail(f"cannot reach the database: {exc}", code=1)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        _fail(f"cannot reach Redis: {exc}", code=1)
