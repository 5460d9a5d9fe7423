"""What every command shares: output consoles, the one-line failure, settings from flags, and
the options several commands declare (``--address``, ``--num-cpus``, ``--workers``, ``--out``).

Imports stay light: command modules import this at start-up.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Iterator, NoReturn, Optional

import typer
from rich.console import Console

if TYPE_CHECKING:
    from jobs.settings import Settings

err = Console(stderr=True)
out = Console()


def fail(message: str, code: int = 2) -> NoReturn:
    """One-line error and exit code 2 (bad input) or 1 (job failure)."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def load_settings(settings_cls: "type[Settings] | None" = None, **overrides: object) -> "Settings":
    """Settings from the environment with the flags that were given (None = not given) on top;
    a bad value is a one-line error naming the setting."""
    from pydantic import ValidationError

    from jobs.settings import Settings

    cls = settings_cls or Settings
    try:
        given: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
        return cls(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")


def path_or_none(path: Path | None) -> str | None:
    return str(path) if path is not None else None


# Options declared once, used by several commands.
AddressOption = Annotated[Optional[str], typer.Option(
    "--address", help="Ray address; default: private local Ray")]
NumCpusOption = Annotated[Optional[int], typer.Option(
    "--num-cpus", help="CPUs of the private local Ray")]
WorkersOption = Annotated[Optional[str], typer.Option(
    "--workers", help="'auto' (planner) or a count [auto]")]
OutOption = Annotated[Optional[Path], typer.Option("--out", help="local store root [output]")]
StoreOption = Annotated[Optional[str], typer.Option(help="local or supabase [local]")]
ProgressOption = Annotated[bool, typer.Option(help="show a progress bar")]


@contextmanager
def user_errors() -> Iterator[None]:
    """A ``FramesiftError`` raised inside becomes the one-line error and exit code 2."""
    from actors.errors import FramesiftError

    try:
        yield
    except FramesiftError as exc:
        fail(str(exc))
