#!/usr/bin/env python3
"""Regenerates every command output shown in README.md and docs/ (``make docs``), or checks
that the committed ones are fresh (``make docs-check``, run by CI).

A block is generated when the line right before it is a marker::

    <!-- make-docs: SHELL COMMAND -->          run with .venv/bin first on PATH (TF 1.15)
    <!-- make-docs[tf2]: SHELL COMMAND -->     run with .venv-tf2/bin first on PATH

followed by a fenced code block (its content becomes the command's stdout) or by any text up
to a closing ``<!-- /make-docs -->`` line (raw markdown, e.g. a table). Commands run from the
repository root with bash; a command that exits non-zero fails the run.

Values that vary by machine are declared right before the marker, one regex a line::

    <!-- make-docs-varies: [0-9.]+ s -->

Each match is replaced by ``<varies>`` in both the committed and the fresh text before they are
compared, so a new timing does not fail the check; ``make docs`` rewrites a block only when it
differs beyond those values (no churn from timings alone).

A fenced block without a marker must name an input language (```python, ```sh, ...): shown
output must come from a command. Outputs are cached under .make-docs-cache/ keyed by the
command, the venv's installed packages and the content of every file of the repository except
the markdown, so a re-run after a prose edit is instant and any code change reruns everything;
a clean clone (CI) has no cache and runs every command.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import difflib
import hashlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
VENVS = {"tf1": ".venv", "tf2": ".venv-tf2"}
SETUP = {"tf1": "make setup", "tf2": "make setup BACKEND=tf2"}
MARKER = re.compile(r"^<!-- make-docs(?:\[(?P<backend>[a-z0-9]+)\])?: (?P<command>.+?) -->$")
VARIES = re.compile(r"^<!-- make-docs-varies: (?P<regex>.+?) -->$")
END = "<!-- /make-docs -->"
FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
INPUT_LANGUAGES = {"python", "py", "sh", "bash", "shell", "ini", "toml", "cfg", "yaml", "json",
                   "diff", "dockerfile", "make", "makefile"}
VARIES_TEXT = "<varies>"
CACHE = ROOT / ".make-docs-cache"
TIMEOUT = 900  # seconds per command


class DocsError(Exception):
    """A marker or block that cannot be processed, said in one line with FILE:LINE."""


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the marker
    backend: str
    command: str
    varies: Tuple[str, ...]
    start: int  # index of the first content line
    end: int  # index one past the last content line
    fenced: bool
    fence: str = ""
    content: str = ""
    fresh: Optional[str] = field(default=None, repr=False)

    @property
    def where(self) -> str:
        return "%s:%d" % (_relative(self.path), self.line)


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def parse(path: Path, text: str) -> List[Block]:
    """The make-docs blocks of one markdown file; raises DocsError for a malformed one and for
    an unmarked fenced block that names no input language."""
    lines = text.split("\n")
    blocks: List[Block] = []
    i = 0
    while i < len(lines):
        marker = MARKER.match(lines[i])
        fence = FENCE.match(lines[i])
        if marker:
            backend = marker.group("backend") or "tf1"
            where = "%s:%d" % (_relative(path), i + 1)
            if backend not in VENVS:
                raise DocsError("%s: unknown backend [%s] in make-docs marker; use one of %s"
                                % (where, backend, ", ".join(sorted(VENVS))))
            varies = []
            j = i - 1
            while j >= 0 and VARIES.match(lines[j]):
                regex = VARIES.match(lines[j]).group("regex")
                try:
                    re.compile(regex)
                except re.error as exc:
                    raise DocsError("%s: bad make-docs-varies regex %r: %s"
                                    % (where, regex, exc)) from None
                varies.insert(0, regex)
                j -= 1
            opening = FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
            if opening:
                close = _closing_fence(lines, i + 2, opening.group("fence"))
                if close is None:
                    raise DocsError("%s: the fenced block after this marker is never closed"
                                    % where)
                blocks.append(Block(path, i + 1, backend, marker.group("command"), tuple(varies),
                                    i + 2, close, True, opening.group("fence"),
                                    _join(lines[i + 2:close])))
                i = close + 1
                continue
            try:
                close = lines.index(END, i + 1)
            except ValueError:
                raise DocsError("%s: a make-docs marker must be followed by a fenced code block "
                                "or closed by a %s line" % (where, END)) from None
            blocks.append(Block(path, i + 1, backend, marker.group("command"), tuple(varies),
                                i + 1, close, False, "", _join(lines[i + 1:close])))
            i = close + 1
            continue
        if fence:
            close = _closing_fence(lines, i + 1, fence.group("fence"))
            info = fence.group("info").strip().split(" ")[0].lower()
            if info not in INPUT_LANGUAGES:
                raise DocsError("%s:%d: a fenced block without a make-docs marker must name an "
                                "input language (%s); shown output must come from a "
                                "<!-- make-docs: COMMAND --> marker"
                                % (_relative(path), i + 1, ", ".join(sorted(INPUT_LANGUAGES))))
            i = (close if close is not None else len(lines)) + 1
            continue
        i += 1
    return blocks


def _closing_fence(lines: List[str], start: int, fence: str) -> Optional[int]:
    for k in range(start, len(lines)):
        stripped = lines[k].strip()
        if stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]}:
            return k
    return None


def _join(lines: Sequence[str]) -> str:
    return "".join(line + "\n" for line in lines)


def normalize(text: str, varies: Sequence[str]) -> str:
    for regex in varies:
        text = re.sub(regex, VARIES_TEXT, text, flags=re.MULTILINE)
    return text


def environment(backend: str) -> Dict[str, str]:
    """The commands' environment: the backend's venv first on PATH, no terminal width and no
    parent make, so output is what a user sees in a pipe."""
    venv = ROOT / VENVS[backend]
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "COLUMNS", "LINES", "PYTHONPATH",
                        "VIRTUAL_ENV", "TF_CPP_MIN_LOG_LEVEL")}
    env.update(PATH="%s%s%s" % (venv / "bin", os.pathsep, os.environ.get("PATH", "")),
               VIRTUAL_ENV=str(venv), PYTHONHASHSEED="0", MPLBACKEND="Agg",
               PYTHONIOENCODING="utf-8", TZ="UTC")
    return env


def run(block: Block) -> str:
    """The block's fresh content: the command's stdout, with the repository's absolute path
    written as '.' and trailing blank lines dropped."""
    venv = ROOT / VENVS[block.backend]
    if not (venv / "bin" / "python").exists():
        raise DocsError("%s needs %s: run `%s` first" % (block.where, VENVS[block.backend],
                                                         SETUP[block.backend]))
    try:
        out = subprocess.run(["bash", "-c", block.command], cwd=str(ROOT), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=environment(block.backend), timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise DocsError("%s: `%s` ran longer than %d s" % (block.where, block.command,
                                                            TIMEOUT)) from None
    if out.returncode != 0:
        tail = out.stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
        raise DocsError("%s: `%s` exited with status %d%s"
                        % (block.where, block.command, out.returncode,
                           "".join("\n    " + line for line in tail)))
    text = out.stdout.decode("utf-8").replace(str(ROOT), ".")
    text = text.rstrip("\n") + "\n" if text.strip() else ""
    if block.fenced and any(line.startswith(block.fence[0] * len(block.fence))
                            for line in text.splitlines()):
        raise DocsError("%s: the output of `%s` holds a line starting with %s, which would close "
                        "its block; use a longer fence" % (block.where, block.command, block.fence))
    return text


def fingerprint(backend: str) -> str:
    """What a command's output may depend on: every file of the repository but the markdown
    (tracked, or untracked and not ignored) and the packages installed in the venv."""
    digest = hashlib.sha256()
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"],
                            cwd=str(ROOT), stdout=subprocess.PIPE, check=True).stdout
    for name in sorted(n for n in listed.decode().split("\0") if n and not n.endswith(".md")):
        path = ROOT / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    site = sorted((ROOT / VENVS[backend]).glob("lib/python*/site-packages/*.dist-info"))
    digest.update("\n".join(p.name for p in site).encode())
    return digest.hexdigest()


def fresh_outputs(blocks: Sequence[Block], use_cache: bool, jobs: int) -> None:
    """Fills ``block.fresh``: each distinct (backend, command) runs once, from the cache when
    nothing it may depend on changed."""
    prints = {b.backend: fingerprint(b.backend) for b in blocks} if use_cache else {}
    todo: Dict[Tuple[str, str], List[Block]] = {}
    for block in blocks:
        todo.setdefault((block.backend, block.command), []).append(block)

    def one(key: Tuple[str, str]) -> str:
        first = todo[key][0]
        cached = None
        if use_cache:
            name = hashlib.sha256(("%s\0%s\0%s" % (key[0], key[1], prints[key[0]])).encode())
            cached = CACHE / name.hexdigest()
            if cached.exists():
                return cached.read_text(encoding="utf-8")
        text = run(first)
        if cached is not None:
            CACHE.mkdir(exist_ok=True)
            cached.write_text(text, encoding="utf-8")
        return text

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = dict(zip(todo, pool.map(one, todo)))
    for key, group in todo.items():
        for block in group:
            block.fresh = results[key]


def files(paths: Sequence[str]) -> List[Path]:
    if paths:
        return [Path(p).resolve() for p in paths]
    return [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))


def rewrite(text: str, blocks: Sequence[Block]) -> str:
    lines = text.split("\n")
    for block in sorted(blocks, key=lambda b: b.start, reverse=True):
        fresh = (block.fresh or "").split("\n")[:-1]  # fresh ends with "\n" (or is "")
        lines[block.start:block.end] = fresh
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="make_docs.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", help="markdown files (default README.md, docs/**.md)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; fail with a diff when a committed block is stale")
    parser.add_argument("--no-cache", action="store_true", help="run every command")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="commands run at once (default: 2, or 1 on one core)")
    args = parser.parse_args(argv)
    try:
        parsed = []
        for path in files(args.files):
            text = path.read_text(encoding="utf-8")
            parsed.append((path, text, parse(path, text)))
        blocks = [b for _, _, bs in parsed for b in bs]
        fresh_outputs(blocks, not args.no_cache, args.jobs)
    except DocsError as exc:
        print("make_docs.py: error: %s" % exc, file=sys.stderr)
        return 2
    stale = 0
    for path, text, file_blocks in parsed:
        changed = [b for b in file_blocks
                   if normalize(b.content, b.varies) != normalize(b.fresh or "", b.varies)]
        if args.check:
            for block in changed:
                stale += 1
                sys.stdout.writelines(difflib.unified_diff(
                    block.content.splitlines(True), (block.fresh or "").splitlines(True),
                    "%s (committed)" % block.where, "%s (fresh: %s)" % (block.where,
                                                                       block.command)))
        else:
            new = rewrite(text, changed)
            if new != text:
                path.write_text(new, encoding="utf-8")
            print("%s: %d block(s), %d changed" % (_relative(path), len(file_blocks),
                                                   len(changed)))
    if stale:
        print("make_docs.py: %d block(s) differ from a fresh run: run `make docs` and commit"
              % stale, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
