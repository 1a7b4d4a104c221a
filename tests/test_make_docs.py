"""scripts/make_docs.py (``make docs`` / ``make docs-check``): markers are parsed as documented,
the check fails with a readable diff on a drifted block and writes nothing, values declared as
varying are left out of the comparison, and the cache reruns a command when a file changes.
Commands here are plain shell (echo, printf), so no TensorFlow runs."""
import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "make_docs.py")
DOC_SHELL = os.path.join(ROOT, "scripts", "doc-shell")
DOC_PYTHON = os.path.join(ROOT, "scripts", "doc_python.py")


@pytest.fixture(scope="module")
def make_docs():
    spec = importlib.util.spec_from_file_location("make_docs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_docs"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def write(tmp_path, text, name="page.md"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def parse(make_docs, path):
    return make_docs.parse(path, path.read_text())


def test_markers_fenced_raw_backend_and_varies_are_parsed(make_docs, tmp_path):
    path = write(tmp_path, """
        # Title

        ```python
        print("an input block needs no marker")
        ```

        <!-- make-docs-varies: [0-9.]+ s -->
        <!-- make-docs-varies: load [0-9. ]+ -->
        <!-- make-docs: echo one -->
        ````text
        old
        ```
        still inside the four-backtick fence
        ````

        <!-- make-docs[tf2]: echo two | tr a-z A-Z -->
        | a | b |
        |---|---|
        <!-- /make-docs -->
        """)
    first, second = parse(make_docs, path)
    assert (first.line, first.backend, first.command) == (9, "tf1", "echo one")
    assert first.varies == ("[0-9.]+ s", "load [0-9. ]+")
    assert first.fenced and first.fence == "````"
    assert first.content == "old\n```\nstill inside the four-backtick fence\n"
    assert (second.line, second.backend, second.command) == (16, "tf2", "echo two | tr a-z A-Z")
    assert not second.fenced and second.varies == ()
    assert second.content == "| a | b |\n|---|---|\n"


@pytest.mark.parametrize("text, message", [
    ("<!-- make-docs[tf3]: echo x -->\n```\n```\n", "page.md:1: unknown backend [tf3]"),
    ("<!-- make-docs: echo x -->\n```\nnever closed\n", "page.md:1: the fenced block after this"),
    ("<!-- make-docs: echo x -->\ntext without a fence or an end marker\n",
     "page.md:1: a make-docs marker must be followed by a fenced code block or closed by"),
    ("intro\n\n```\nhand-typed output\n```\n",
     "page.md:3: a fenced block without a make-docs marker must name an input language"),
    ("<!-- make-docs-varies: ([ -->\n<!-- make-docs: echo x -->\n```\n```\n",
     "page.md:2: bad make-docs-varies regex"),
])
def test_malformed_markers_say_where_and_what(make_docs, tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(make_docs.DocsError) as raised:
        parse(make_docs, path)
    assert message in str(raised.value)


def run_script(*args):
    return subprocess.run([sys.executable, SCRIPT, "--no-cache", *map(str, args)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, cwd=ROOT)


def test_check_catches_a_drifted_block_with_a_diff_and_writes_nothing(tmp_path):
    text = ("before\n<!-- make-docs: printf 'alpha\\nbeta\\n' -->\n```\nalpha\ngamma\n```\n"
            "after\n")
    path = write(tmp_path, text)
    out = run_script("--check", path)
    assert out.returncode == 1
    assert "page.md:2 (committed)" in out.stdout and "(fresh: printf" in out.stdout
    assert "-gamma\n" in out.stdout and "+beta\n" in out.stdout
    assert "1 block(s) differ from a fresh run: run `make docs`" in out.stderr
    assert path.read_text() == text  # --check never writes

    assert run_script(path).returncode == 0  # make docs: rewrites the block...
    assert path.read_text() == text.replace("gamma", "beta")
    out = run_script("--check", path)  # ...and then the check passes
    assert (out.returncode, out.stdout) == (0, "")


def test_raw_blocks_are_replaced_up_to_their_end_marker(tmp_path):
    path = write(tmp_path, "<!-- make-docs: echo '| x |' -->\nstale\nlines\n<!-- /make-docs -->\n")
    assert run_script(path).returncode == 0
    assert path.read_text() == "<!-- make-docs: echo '| x |' -->\n| x |\n<!-- /make-docs -->\n"


def test_declared_varying_values_are_left_out_of_the_comparison(tmp_path):
    text = ("<!-- make-docs-varies: [0-9.]+ s -->\n<!-- make-docs: echo 'took 2.71 s, 3 rows' -->"
            "\n```\ntook 1.5 s, 3 rows\n```\n")
    path = write(tmp_path, text)
    assert run_script("--check", path).returncode == 0
    assert run_script(path).returncode == 0
    assert path.read_text() == text  # only a varying value differs: no churn
    # Anything else that differs is still caught.
    path.write_text(text.replace("1.5 s, 3 rows", "1.5 s, 4 rows"))
    out = run_script("--check", path)
    assert out.returncode == 1 and "-took 1.5 s, 4 rows" in out.stdout


def test_a_failing_command_fails_the_run_and_says_which(tmp_path):
    path = write(tmp_path, "x\n<!-- make-docs: echo oops >&2; exit 3 -->\n```\nkept\n```\n")
    out = run_script(path)
    assert out.returncode == 2
    assert "page.md:2: `echo oops >&2; exit 3` exited with status 3" in out.stderr
    assert "oops" in out.stderr and "kept" in path.read_text()


def test_commands_run_from_the_root_with_the_backend_venv_first_and_no_machine_path(tmp_path):
    path = write(tmp_path, "<!-- make-docs: pwd; command -v python; echo \"[$COLUMNS]\" -->"
                           "\n```\n```\n")
    assert run_script(path).returncode == 0
    assert path.read_text().split("```\n")[1] == ".\n./.venv/bin/python\n[]\n"


def test_the_cache_reruns_a_command_when_a_file_of_the_repository_changes(make_docs, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setattr(make_docs, "CACHE", tmp_path / "cache")
    counter = tmp_path / "runs"
    block = make_docs.Block(tmp_path / "p.md", 1, "tf1", "echo run >> %s; echo out" % counter,
                            (), 0, 0, True, "```")
    prints = iter(["a", "a", "b"])  # the repository's fingerprint: unchanged, then changed
    monkeypatch.setattr(make_docs, "fingerprint", lambda backend: next(prints))
    for _ in range(3):
        make_docs.fresh_outputs([block], use_cache=True, jobs=1)
        assert block.fresh == "out\n"
    assert counter.read_text() == "run\nrun\n"  # the unchanged fingerprint was served cached


def test_the_fingerprint_ignores_markdown_and_follows_code(make_docs, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "code.py").write_text("x = 1\n")
    (repo / "page.md").write_text("prose\n")
    monkeypatch.setattr(make_docs, "ROOT", repo)
    first = make_docs.fingerprint("tf1")
    (repo / "page.md").write_text("other prose\n")
    assert make_docs.fingerprint("tf1") == first
    (repo / "code.py").write_text("x = 2\n")
    assert make_docs.fingerprint("tf1") != first


def test_doc_shell_shows_each_command_its_output_and_the_previous_status(tmp_path):
    out = subprocess.run([DOC_SHELL, "echo hi", "ls /nonexistent-dir >/dev/null", "echo $?"],
                         stdout=subprocess.PIPE, universal_newlines=True)
    lines = out.stdout.splitlines()
    assert lines[:2] == ["$ echo hi", "hi"]
    assert lines[2] == "$ ls /nonexistent-dir >/dev/null" and "nonexistent-dir" in lines[3]
    assert lines[4:] == ["$ echo $?", "2"]  # ls's status, stderr shown in place
    assert out.returncode == 0
    assert subprocess.run([DOC_SHELL, "no-such-command-here"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE).returncode == 127


def test_doc_python_prints_a_prompt_transcript(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("x = [1, 2]\n# the sum\nsum(x)\nfor i in x:\n    print(i * 10)\n\n"
                      "None\nint('a')\n'after'\n")
    out = subprocess.run([sys.executable, DOC_PYTHON, str(script)], stdout=subprocess.PIPE,
                         universal_newlines=True)
    assert out.stdout == (
        ">>> x = [1, 2]\n>>> # the sum\n>>> sum(x)\n3\n>>> for i in x:\n...     print(i * 10)\n"
        "10\n20\n>>> None\n>>> int('a')\nTraceback (most recent call last):\n  ...\n"
        "ValueError: invalid literal for int() with base 10: 'a'\n>>> 'after'\n'after'\n")
