"""The `ldmscan` command: a thin click layer, one module per command group, that gathers options,
builds one core object and makes a few calls. The CLI is the composition root: the only place
the core meets the scanner, server and training packages. Heavy modules are imported inside the
commands, so `ldmscan --help` or `ldmscan token` never load torch."""

from __future__ import annotations

import logging
from typing import Any

import click

from .. import __version__
from ..config import ENV_PREFIX, load_default_map
from ..errors import LdmscanError


class CliGroup(click.Group):
    """Turns LdmscanError into a one-line message and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LdmscanError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(2)


@click.group(
    cls=CliGroup,
    context_settings={"auto_envvar_prefix": ENV_PREFIX, "help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="ldmscan")
@click.option("-v", "--verbose", count=True, help="more log output (-vv for debug)")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Find images made by latent diffusion models, from the fingerprint of their autoencoder."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if ctx.default_map is None:
        ctx.default_map = load_default_map()


from .audit import export_labels, label_cmd, report, show  # noqa: E402
from .db import db, detector_info  # noqa: E402
from .scan import scan  # noqa: E402
from .serve import serve, token  # noqa: E402
from .train import train  # noqa: E402
from .watch import watch  # noqa: E402

for command in (scan, watch, serve, token, report, show, label_cmd, export_labels, db):
    cli.add_command(command)
cli.add_command(detector_info)
cli.add_command(train)


def main() -> None:
    cli(prog_name="ldmscan")
