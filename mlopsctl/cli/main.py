"""The `mlopsctl` entry point: the root Typer app, global options, and the ONE place where
errors become exit codes and one-line messages."""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from mlopsctl import __version__
from mlopsctl.cli import audit as audit_cli
from mlopsctl.cli import build as build_cli
from mlopsctl.cli import ci as ci_cli
from mlopsctl.cli import completion_cmd as completion_cli
from mlopsctl.cli import ct as ct_cli
from mlopsctl.cli import datasets as datasets_cli
from mlopsctl.cli import deploy as deploy_cli
from mlopsctl.cli import doctor as doctor_cli
from mlopsctl.cli import export as export_cli
from mlopsctl.cli import features as features_cli
from mlopsctl.cli import gc as gc_cli
from mlopsctl.cli import hooks as hooks_cli
from mlopsctl.cli import init as init_cli
from mlopsctl.cli import lineage as lineage_cli
from mlopsctl.cli import logs as logs_cli
from mlopsctl.cli import models as models_cli
from mlopsctl.cli import monitor as monitor_cli
from mlopsctl.cli import progress
from mlopsctl.cli import release as release_cli
from mlopsctl.cli import run as run_cli
from mlopsctl.cli import runs as runs_cli
from mlopsctl.cli import schema as schema_cli
from mlopsctl.cli import serve as serve_cli
from mlopsctl.cli import site as site_cli
from mlopsctl.cli import validate as validate_cli
from mlopsctl.cli.output import AppState, err
from mlopsctl.errors import ExitCode, MlopsError, SpecError


class MlopsGroup(TyperGroup):
    """Root command group. Turns MlopsError into its documented exit code, and anything
    unexpected into exit 1, with a traceback only under -v."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except SpecError as exc:
            # Every problem on its own line, file:line:column first, as compilers print them.
            for diagnostic in exc.diagnostics:
                err(diagnostic.render())
            _report(
                ctx, f"error: {len(exc.diagnostics)} problem(s) in the spec; fix them and retry"
            )
            raise typer.Exit(int(exc.exit_code)) from None
        except MlopsError as exc:
            _report(ctx, f"error: {exc.one_line()}")
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt as exc:
            raise typer.Exit(_interrupted(exc)) from None
        except (typer.Exit, typer.Abort, BrokenPipeError):
            raise
        except Exception as exc:
            if type(exc).__module__.startswith(("typer", "click")):
                raise  # usage errors: the parser reports them itself (exit 2)
            _report(ctx, f"internal error: {type(exc).__name__}: {exc}; please report it")
            raise typer.Exit(int(ExitCode.ERROR)) from None
        finally:
            _end_of_command()


def _end_of_command() -> None:
    """The global flags hold for one command: forget them (tests run many in one process)."""
    from mlopsctl.config import set_store_flag

    set_store_flag(None)
    progress.reset()


def _interrupted(exc: KeyboardInterrupt) -> int:
    """One line, and the exit code: 128 + the signal (130 for Ctrl-C, 143 for SIGTERM). A run
    interrupted by a signal says which one and what became of the run."""
    signum = getattr(exc, "signum", None)
    if isinstance(signum, int) and signum > 0:
        err(f"mlopsctl: {exc}")
        return 128 + signum
    err("mlopsctl: interrupted")
    return int(ExitCode.INTERRUPTED)


def _report(ctx: Any, line: str) -> None:
    state = ctx.find_root().obj
    if isinstance(state, AppState) and state.verbose:
        err(traceback.format_exc().rstrip())
    err(f"mlopsctl: {line}")


app = typer.Typer(
    cls=MlopsGroup,
    name="mlopsctl",
    help="Serverless MLOps: pipelines, experiments, registry, releases and monitoring, "
    "driven by YAML specs in git and records in an object store.",
    epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 invalid spec, 4 check failed, "
    "5 store/engine unreachable or not authorized, 6 not found, 7 conflict, 130 interrupted "
    "(Ctrl-C), 143 terminated (SIGTERM).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mlopsctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Show tracebacks and more detail.")
    ] = False,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            metavar="URL",
            help="Store to use: a folder or s3://bucket/prefix. Wins over MLOPSCTL_STORE, "
            "which wins over store.url in mlops.yaml.",
        ),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option(
            "-q", "--quiet", help="No progress lines or bars (errors and results still print)."
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    install_completion: Annotated[
        bool,
        typer.Option(
            "--install-completion",
            callback=completion_cli.install_option,
            is_eager=True,
            help="Install shell completion for the shell in $SHELL (bash, zsh, fish).",
        ),
    ] = False,
    show_completion: Annotated[
        bool,
        typer.Option(
            "--show-completion",
            callback=completion_cli.show_option,
            is_eager=True,
            help="Print the completion script for the shell in $SHELL.",
        ),
    ] = False,
) -> None:
    from mlopsctl.config import set_store_flag

    set_store_flag(_flag_store_url(store))
    progress.configure(quiet=quiet)
    ctx.obj = AppState(verbose=verbose)


def _flag_store_url(url: str | None) -> str | None:
    """A folder given on the command line is relative to where the command runs (a store URL
    from the environment or mlops.yaml is relative to the project root)."""
    if not url:
        return None
    if "://" in url or os.path.isabs(url):
        return url
    return os.path.abspath(url)


app.command("init")(init_cli.init)
app.command("validate")(validate_cli.validate)
app.command("doctor")(doctor_cli.doctor)
app.command("run")(run_cli.run)
app.command("build")(build_cli.build)
app.add_typer(export_cli.app, name="export")
app.command("deploy")(deploy_cli.deploy)
app.add_typer(runs_cli.app, name="runs")
app.add_typer(models_cli.app, name="models")
app.command("lineage")(lineage_cli.lineage)
app.command("audit")(audit_cli.audit)
app.command("gc")(gc_cli.gc)
app.add_typer(hooks_cli.app, name="hooks")
app.add_typer(release_cli.app, name="release")
app.command("serve")(serve_cli.serve)
app.add_typer(serve_cli.traffic_app, name="traffic")
app.add_typer(logs_cli.app, name="logs")
app.command("feedback")(serve_cli.feedback)
app.add_typer(monitor_cli.app, name="monitor")
app.add_typer(ct_cli.app, name="ct")
app.add_typer(features_cli.app, name="features")
app.add_typer(datasets_cli.app, name="datasets")
app.add_typer(schema_cli.app, name="schema")
app.add_typer(ci_cli.app, name="ci")
app.add_typer(completion_cli.app, name="completion")
app.add_typer(site_cli.app, name="site")


# Root options that take a value; the others are flags, and -h/--help, --version and the
# completion options need the whole command tree.
_VALUE_OPTIONS = ("--store",)
_WHOLE_TREE = ("-h", "--help", "--version", "--install-completion", "--show-completion")


def command_tree(args: list[str]) -> typer.Typer:
    """The app with only the command that `args` name, when they name one: Typer builds every
    command's parameters from its signature before it parses anything (about 40 ms for this
    tree), and one command needs only its own. Anything else (root help, an unknown or
    misspelled command, no command) gets the whole tree, with its help and suggestions."""
    import copy

    index = 0
    while index < len(args):
        word = args[index]
        if word in _WHOLE_TREE or word == "--":
            return app
        if word in _VALUE_OPTIONS:
            index += 2
            continue
        if word.startswith("-"):
            index += 1
            continue
        commands = [c for c in app.registered_commands if c.name == word]
        groups = [g for g in app.registered_groups if g.name == word]
        if not commands and not groups:
            return app
        pruned = copy.copy(app)
        pruned.registered_commands = commands
        pruned.registered_groups = groups
        return pruned
    return app


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    args = sys.argv[1:] if argv is None else argv
    try:
        code = command_tree(args)(args=args, prog_name="mlopsctl", standalone_mode=False)
    except KeyboardInterrupt as exc:
        code = _interrupted(exc)
    except BrokenPipeError:
        # `mlopsctl ... | head` closed our stdout early: not an error worth a word. Point stdout
        # at /dev/null so the interpreter's final flush does not raise again.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = int(ExitCode.OK)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        err("mlopsctl: aborted")
        code = int(ExitCode.INTERRUPTED)
    except Exception as exc:
        show = getattr(exc, "show", None)
        if show is None:
            raise
        show()  # a click usage error: message plus usage line, exit 2
        code = getattr(exc, "exit_code", int(ExitCode.USAGE))
    sys.exit(code if isinstance(code, int) else 0)
