"""The docs cannot rot unseen: README.md and docs/*.md are checked against the code on every run.

- every ```python block whose first line is `# runnable` is executed (fresh namespace, empty folder);
  blocks without the marker are illustrative (they need a trained model or your files) and are left alone;
- every `mulap <command>` the docs show (inline, in tables and in shell blocks) is a command of the CLI,
  and every `--option` written after it is one that command's `--help` lists;
- every repository path the docs name (`mulap/…`, `tests/…`, `benchmarks/…`, `tools/…`, `configs/…`) exists;
- the README's links into docs/ point at a page and a heading that exist; the README stays short;
- `mkdocs build --strict` passes (broken links and anchors inside docs/ are errors there).

The package's docstrings hold no `>>>` examples (checked below), so there are no docstring doctests to run.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
DOCS = [README, *PAGES]
MARKER = "# runnable"
FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")
TEST_COMMAND = "bash install.sh && .venv/bin/python -m pytest -q -p no:cacheprovider"  # CI greps for this line


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _split(path: Path) -> tuple[list[tuple[str, int, str]], str]:
    """(fenced blocks as (language, first line number, text), the prose with the blocks blanked out)."""
    blocks, prose, lines = [], [], path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i].strip())
        if not m:
            prose.append(lines[i])
            i += 1
            continue
        fence, lang, start, body = m.group(1), m.group(2).lower(), i + 1, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        blocks.append((lang, start + 1, "\n".join(body)))
        prose.append("")
        i += 1
    return blocks, "\n".join(prose)


def _inline_code(prose: str) -> list[str]:
    return [s.replace("\\|", "|") for s in re.findall(r"(?<!`)`([^`\n]+)`(?!`)", prose)]


# --- (a) runnable blocks ----------------------------------------------------------------------------------

RUNNABLE = [
    (path, line, text)
    for path in DOCS
    for lang, line, text in _split(path)[0]
    if lang in ("python", "py") and text.lstrip().startswith(MARKER)
]


def test_the_convention_is_in_use():
    """The marker exists in the README and on the pages: a renamed marker would silently run nothing."""
    assert any(p == README for p, _, _ in RUNNABLE), f"no {MARKER!r} block in README.md"
    assert sum(p != README for p, _, _ in RUNNABLE) >= 4, "fewer runnable blocks on the pages than written"
    assert MARKER in (ROOT / "docs" / "index.md").read_text(encoding="utf-8"), "docs/index.md must explain the marker"


@pytest.mark.parametrize("path,line,text", RUNNABLE, ids=[f"{_rel(p)}:{n}" for p, n, _ in RUNNABLE])
def test_runnable_block(path, line, text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = compile(text, f"{_rel(path)}:{line}", "exec")
    exec(code, {"__name__": "__doc_block__"})


def test_no_docstring_examples_to_doctest():
    """If a docstring ever gains a `>>>` example, it must run: this test then says to add it to the doctests."""
    with_examples = [_rel(p) for p in sorted((ROOT / "mulap").rglob("*.py")) if ">>> " in p.read_text(encoding="utf-8")]
    assert not with_examples, f"docstrings with >>> examples: {with_examples}; run them with doctest in tests/test_docs.py"


# --- (b) commands and options -----------------------------------------------------------------------------


@functools.cache
def _help(*command: str) -> tuple[int, str]:
    """`mulap <command> --help`: (exit status, the help text)."""
    from mulap.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main([*command, "--help"])
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
    return status, out.getvalue() + err.getvalue()


def _subcommands(help_text: str) -> set[str]:
    """The sub-commands in a usage line (`{demo,shard} ...`; a positional's choices have no `...`)."""
    m = re.search(r"\{([\w,-]+)\}\s+\.\.\.", help_text)
    return set(m.group(1).split(",")) if m else set()


WORD = re.compile(r"[a-z][a-z0-9-]*")


def _command_uses(path: Path) -> list[tuple[list[str], list[str], str]]:
    """Every `mulap …` the file shows: (command words, --options after them, where)."""
    blocks, prose = _split(path)
    found = []

    def parse(snippet: str, where: str, shell: bool) -> None:
        # a shell line ends a command at a pipe or a redirection; inline, `a|b` is a placeholder's alternatives
        for segment in re.split(r"&&|\|\||;|\||>" if shell else r"&&|;", snippet):
            tokens = segment.split()
            for k, tok in enumerate(tokens):
                launched = tok.endswith("bin/mulap") or (
                    tok == "mulap" and (k == 0 or tokens[k - 1] == "-m" or re.fullmatch(r"[A-Z_]+=\S*", tokens[k - 1]))
                )
                if launched:
                    words = []
                    for t in tokens[k + 1 : k + 3]:
                        w = t.rstrip(":,.")
                        if not WORD.fullmatch(w):
                            break
                        words.append(w)
                        if w != t:
                            break
                    options = [t.split("=")[0] for t in tokens[k + 1 :] if re.fullmatch(r"--[a-z][\w-]*(=.*)?", t)]
                    if words:
                        found.append((words, options, where))
                    break

    for span in _inline_code(prose):
        if span.startswith("mulap "):
            parse(span, f"{_rel(path)}: `{span[:60]}`", shell=False)
    for lang, line, text in blocks:
        if lang in ("bash", "sh", "shell", "console", ""):
            joined = re.sub(r"\\\n\s*", " ", text)
            for n, row in enumerate(joined.splitlines()):
                parse(row.split(" # ")[0], f"{_rel(path)}:{line + n}", shell=True)
    return found


COMMAND_USES = [use for path in DOCS for use in _command_uses(path)]


def test_docs_show_commands():
    assert len(COMMAND_USES) > 50  # the parser below found them (a broken parser would check nothing)


@pytest.mark.parametrize("path", DOCS, ids=_rel)
def test_every_command_shown_exists_with_its_options(path):
    problems = []
    for words, options, where in _command_uses(path):
        status, text = _help(words[0])
        if status != 0:
            problems.append(f"{where}: `mulap {words[0]}` is not a command")
            continue
        command = words[:1]
        subs = _subcommands(text)
        if subs and len(words) > 1:
            if words[1] not in subs:
                problems.append(f"{where}: `mulap {' '.join(words[:2])}`: {words[1]!r} is not one of {sorted(subs)}")
                continue
            command = words[:2]
            status, text = _help(*command)
        for opt in options:
            if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text):
                problems.append(f"{where}: `mulap {' '.join(command)}` has no option {opt}")
    assert not problems, "\n".join(problems)


def test_readme_command_table_covers_the_cli():
    """Each row of the README's command table names a real command, and every command has a row."""
    rows = [r for r in README.read_text(encoding="utf-8").splitlines() if r.startswith("| `mulap ")]
    named = set()
    for row in rows:
        for span in _inline_code(row.split(" | ")[0]):
            m = re.match(r"mulap ([a-z][a-z0-9-]*)", span)
            if m:
                named.add(m.group(1))
                assert _help(m.group(1))[0] == 0, f"README's table: `mulap {m.group(1)}` is not a command"
    commands = _subcommands(_help()[1])
    assert commands, "could not read the CLI's commands from `mulap --help`"
    assert commands <= named, f"commands missing from the README's table: {sorted(commands - named)}"


# --- paths, links, the README's size -------------------------------------------------------------------

PATH = re.compile(r"(?<![\w./~-])((?:mulap|tests|benchmarks|tools|configs)/[\w./-]*[\w/])")


@pytest.mark.parametrize("path", DOCS, ids=_rel)
def test_repository_paths_named_exist(path):
    blocks, prose = _split(path)
    texts = _inline_code(prose) + [t for lang, _, t in blocks if lang != "python"]
    missing = set()
    for text in texts:
        for m in PATH.finditer(text):
            after = text[m.end() : m.end() + 1]
            if after in ("<", "{", "*", "…") or "<" in m.group(1):
                continue  # a pattern (configs/downstream/<task>.yaml), not a path
            if not (ROOT / m.group(1)).exists():
                missing.add(m.group(1))
    assert not missing, f"{_rel(path)} names paths that do not exist: {sorted(missing)}"


def _slug(heading: str) -> str:
    """The anchor mkdocs (Python-Markdown's toc) gives a heading."""
    text = re.sub(r"`|\*\*", "", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(page: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", _split(page)[1], re.M)}


def test_readme_links_into_docs_resolve():
    links = re.findall(r"\]\(((?!https?:)[^)\s#]+)(#[^)\s]+)?\)", README.read_text(encoding="utf-8"))
    assert links
    bad = []
    for target, anchor in links:
        page = ROOT / target
        if not page.exists():
            bad.append(f"{target}: no such file")
        elif anchor and page.suffix == ".md" and anchor[1:] not in _anchors(page):
            bad.append(f"{target}{anchor}: no such heading (headings: {sorted(_anchors(page))})")
    assert not bad, "\n".join(bad)


def test_readme_is_short_and_keeps_its_commands():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    assert "bash install.sh && .venv/bin/mulap demo\n" in text
    assert TEST_COMMAND + "\n" in text
    assert '.venv/bin/python -m pytest -q -p no:cacheprovider -m "not slow"' in text


def test_slugs_match_mkdocs():
    """The anchor rule above is mkdocs': checked on headings of every kind the pages use."""
    markdown = pytest.importorskip("markdown", reason="Python-Markdown (it comes with mkdocs) is not installed")
    for page in PAGES:
        for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", _split(page)[1], re.M):
            ids = re.findall(r'id="([^"]+)"', markdown.markdown(f"# {m.group(1)}", extensions=["toc"]))
            assert ids == [_slug(m.group(1))], (page.name, m.group(1), ids)


# --- (c) the site builds -------------------------------------------------------------------------------------


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (it is in the `test` extra: pip install -e '.[test]')")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "site" / "index.html").exists()
