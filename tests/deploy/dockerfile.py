"""Read a Dockerfile, and run its install steps as plain commands, without a container engine.

Each stage gets a directory that stands for its root filesystem: container paths in
WORKDIR, COPY, ENV and in the commands that are run are mapped below it. Only the steps
that install software (pip) or make directories are run; steps that need a real root
filesystem (users, ownership) are returned for the caller to check instead.
"""

from __future__ import annotations

import glob
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            words = shlex.split(instruction.args)
            if words and "=" not in words[0]:  # legacy form: ENV KEY value with spaces
                values[words[0]] = instruction.args.split(None, 1)[1]
                continue
            for word in words:
                key, sep, value = word.partition("=")
                if not sep:
                    raise ValueError(f"line {instruction.line}: bad ENV word {word!r}")
                values[key] = value
        return values

    def user(self) -> str | None:
        found = self.last("USER")
        return found.args.strip() if found else None

    def volumes(self) -> list[str]:
        result: list[str] = []
        for instruction in self.all("VOLUME"):
            text = instruction.args.strip()
            result.extend(json.loads(text) if text.startswith("[") else text.split())
        return result

    def exposed(self) -> list[str]:
        return [port for i in self.all("EXPOSE") for port in i.args.split()]

    def cmd(self) -> list[str]:
        found = self.last("CMD")
        if found is None:
            raise ValueError("no CMD")
        return exec_form(found)

    def healthcheck(self) -> tuple[dict[str, str], list[str]]:
        """The HEALTHCHECK's options and its command (exec form)."""
        found = self.last("HEALTHCHECK")
        if found is None:
            raise ValueError("no HEALTHCHECK")
        options: dict[str, str] = {}
        rest = found.args.strip()
        while rest.startswith("--"):
            option, _, rest = rest.partition(" ")
            key, _, value = option[2:].partition("=")
            options[key] = value
            rest = rest.lstrip()
        keyword, _, command = rest.partition(" ")
        if keyword.upper() != "CMD":
            raise ValueError(f"line {found.line}: HEALTHCHECK without CMD")
        return options, exec_form(Instruction("CMD", command, found.line))


def exec_form(instruction: Instruction) -> list[str]:
    text = instruction.args.strip()
    if not text.startswith("["):
        raise ValueError(f"line {instruction.line}: use the exec (JSON) form")
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"line {instruction.line}: not a list of strings")
    return value


def parse(text: str) -> list[Stage]:
    """Stages in order; line continuations joined, comments dropped."""
    stages: list[Stage] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments may also sit between continued lines
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        instruction = Instruction(keyword.upper(), args.strip(), start)
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif not stages:
            raise ValueError(f"line {start}: {instruction.keyword} before FROM")
        else:
            stages[-1].instructions.append(instruction)
    return stages


def run_flags(instruction: Instruction) -> tuple[list[dict[str, str]], str]:
    """A RUN's --mount options (as dicts) and its shell command."""
    mounts: list[dict[str, str]] = []
    rest = instruction.args.strip()
    while rest.startswith("--"):
        option, _, rest = rest.partition(" ")
        key, _, value = option[2:].partition("=")
        if key != "mount":
            raise ValueError(f"line {instruction.line}: unsupported RUN option --{key}")
        mounts.append(dict(part.partition("=")[::2] for part in value.split(",")))
        rest = rest.lstrip()
    return mounts, rest


@dataclass
class Build:
    """Runs the Dockerfile's stages on this machine, each under ``work/<stage>``."""

    context: Path
    work: Path
    stages: list[Stage]
    commands: Mapping[str, Sequence[str]]  # program -> argv prefix to run it with
    env: Mapping[str, str]
    ignored: list[str] = field(default_factory=list)  # commands left to the caller to check

    def root(self, stage: Stage) -> Path:
        return self.work / (stage.name or f"stage{self.stages.index(stage)}")

    def host_path(self, root: Path, path: str, workdir: str) -> Path:
        absolute = PurePosixPath(workdir) / path
        return root / str(absolute).lstrip("/")

    def run(self) -> None:
        for stage in self.stages:
            self._run_stage(stage)

    def _run_stage(self, stage: Stage) -> None:
        root = self.root(stage)
        root.mkdir(parents=True, exist_ok=True)
        workdir = "/"
        for instruction in stage.instructions:
            if instruction.keyword == "WORKDIR":
                workdir = str(PurePosixPath(workdir) / instruction.args.strip())
                self.host_path(root, ".", workdir).mkdir(parents=True, exist_ok=True)
            elif instruction.keyword == "COPY":
                self._copy(root, workdir, instruction)
            elif instruction.keyword == "RUN":
                self._run(stage, root, workdir, instruction)

    def _copy(self, root: Path, workdir: str, instruction: Instruction) -> None:
        words = shlex.split(instruction.args)
        if any(w.startswith("--") for w in words):
            raise ValueError(f"line {instruction.line}: COPY options are not supported here")
        *sources, dest = words
        target = self.host_path(root, dest, workdir)
        for source in sources:
            origin = self.context / source
            if origin.is_dir():
                shutil.copytree(
                    origin, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target / origin.name)

    def _run(self, stage: Stage, root: Path, workdir: str, instruction: Instruction) -> None:
        mounts, command = run_flags(instruction)
        mapped: dict[str, Path] = {}
        for mount in mounts:
            if mount.get("type") != "bind" or "from" not in mount:
                raise ValueError(f"line {instruction.line}: only bind mounts from a stage")
            source = next(s for s in self.stages if s.name == mount["from"])
            mapped[mount["target"]] = self.host_path(self.root(source), mount["source"], "/")
        for part in command.split("&&"):
            argv = shlex.split(part)
            program = argv[0]
            if program not in self.commands:
                self.ignored.append(part.strip())
                continue
            args = [self._map(root, mapped, word) for word in argv[1:]]
            expanded = [m for a in args for m in (sorted(glob.glob(a)) if "*" in a else [a])]
            done = subprocess.run(
                [*self.commands[program], *expanded],
                cwd=self.host_path(root, ".", workdir),
                env={**os.environ, **stage.env(), **self.env},
                capture_output=True,
                text=True,
                timeout=120,
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"line {instruction.line}: {part.strip()!r} failed ({done.returncode}):\n"
                    f"{done.stdout}{done.stderr}"
                )

    def _map(self, root: Path, mounts: Mapping[str, Path], word: str) -> str:
        if not word.startswith("/"):
            return word
        for target, source in mounts.items():
            if word == target or word.startswith(target + "/"):
                return str(source) + word[len(target) :]
        return str(root / word.lstrip("/"))
