"""The README's settings table, made from `proxy.edge.settings_table`.

``python -m proxy.edge.settings_doc`` prints it; ``python -m proxy.edge.settings_doc
README.md`` rewrites the table between the README's markers; ``--check`` only says
whether the README is up to date (exit status 1 when not).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from proxy.edge.setting_kinds import BOOL, URLS
from proxy.edge.settings_table import CONFIG_FILE, Spec, specs

START = "<!-- settings:start (made by python -m proxy.edge.settings_doc README.md) -->"
END = "<!-- settings:end -->"


def markdown() -> str:
    """One row per option: --config, then every setting that has an option."""
    lines = [
        "| option | environment variable | config key | default | what it does |",
        "|---|---|---|---|---|",
    ]
    for spec in (CONFIG_FILE, *specs()):
        if spec.option is not None:
            cells = (_option(spec), _variable(spec), _key(spec), spec.default_text, spec.what)
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _option(spec: Spec) -> str:
    if spec.kind is BOOL:
        return f"`--{spec.dashed}`, `--no-{spec.dashed}`"
    shown = "|".join(spec.choices) if spec.choices else spec.placeholder
    return f"`{spec.option} {shown}`"


def _variable(spec: Spec) -> str:
    return f"`{spec.env}`" + (" (space-separated)" if spec.kind is URLS else "")


def _key(spec: Spec) -> str:
    return f"`{spec.toml_key}`" if spec.toml_key else "—"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # GitHub's tables split cells even inside code spans


def with_table(readme: str) -> str:
    """The README's text with the table between its markers made anew."""
    before, start, rest = readme.partition(START)
    _, end, after = rest.partition(END)
    if not (start and end):
        raise ValueError(f"the README has no {START} ... {END} markers")
    return f"{before}{START}\n{markdown()}{END}{after}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m proxy.edge.settings_doc",
        description="Print the README's settings table, or rewrite it in the README.",
    )
    parser.add_argument("readme", nargs="?", type=Path, help="rewrite the table in this file")
    parser.add_argument("--check", action="store_true", help="only say whether it is current")
    args = parser.parse_args(argv)
    if args.readme is None:
        sys.stdout.write(markdown())
        return 0
    text = args.readme.read_text()
    made = with_table(text)
    if args.check:
        if made != text:
            print(f"{args.readme}: the settings table is out of date: {parser.prog} {args.readme}")
            return 1
        return 0
    args.readme.write_text(made)
    return 0


if __name__ == "__main__":
    sys.exit(main())
