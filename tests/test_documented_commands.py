"""Every `crossmodel …` command shown in the README and docs/ names a real subcommand with real flags (fast), and
the README's pipeline section runs end to end exactly as written on the real models (slow)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from crossmodel.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def command_lines(text: str) -> list[str]:
    """Lines of code blocks (fenced, or indented by 4 spaces) that run `crossmodel` (or `.venv/bin/crossmodel`),
    with continuation lines joined."""
    lines, fenced = [], False
    for line in re.sub(r"\\\n\s*", " ", text).splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if (fenced or line.startswith("    ")) and re.match(r"^(\.venv/bin/)?crossmodel\s", line.strip()):
            lines.append(line.strip())
    return lines


def pipeline_block() -> str:
    """The bash block of the README's pipeline section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The pipeline, one command per stage", 1)[1]
    return section.split("```bash\n", 1)[1].split("```", 1)[0]


def resolve(argv: list[str]):
    """The (click) command an argv names, through sub-groups, and the remaining arguments."""
    command = typer.main.get_command(app)
    while hasattr(command, "commands") and argv and argv[0] in command.commands:
        command, argv = command.commands[argv[0]], argv[1:]
    return command, argv


def documented() -> list[tuple[str, str]]:
    return [(path.name, line) for path in DOCS for line in command_lines(path.read_text(encoding="utf-8"))]


@pytest.mark.parametrize("where, line", documented(), ids=lambda v: v[:60] if isinstance(v, str) else v)
def test_documented_command_uses_real_flags(where, line):
    argv = shlex.split(line, comments=True)[1:]
    command, rest = resolve(argv)
    assert not hasattr(command, "commands"), f"{where}: `{line}` names no subcommand"
    known = {"--help"} | {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    flags = [a.split("=", 1)[0] for a in rest if a.startswith("--")]
    unknown = [f for f in flags if f not in known]
    assert not unknown, f"{where}: `{line}` uses flags {unknown} that `{command.name}` does not have"


def test_quick_start_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert f"```bash\n{ci}\n```" in readme


def test_pipeline_block_is_found():
    lines = command_lines(f"```\n{pipeline_block()}```")
    assert len(lines) >= 8 and len(lines) == len([x for x in pipeline_block().splitlines() if x[:1].isalpha()])


def bash_blocks(path: Path) -> list[str]:
    """The ```bash blocks of a markdown file, in order (the runnable ones; ``` and ```text are synopses)."""
    return re.findall(r"```bash\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def run_block(block: str, cwd: Path) -> str:
    """Run a bash block in `cwd` (it must exit 0); its standard output."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-e", "-c", block], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{block}\nfailed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.slow
def test_readme_pipeline_and_docs_run_as_written(tmp_path):
    """The README pipeline in a fresh folder; then every ```bash block of docs/ in a copy of that
    folder (they build on its artefacts), with `../shared` where the data lives: each exits 0."""
    work = tmp_path / "work"
    work.mkdir()
    shared = ROOT.parent / "shared"
    if shared.is_dir():
        (tmp_path / "shared").symlink_to(shared)
    run_block(pipeline_block(), work)
    assert (work / "runs" / "sft-gemma" / "crossmodel.json").is_file()
    assert (work / "reports" / "g" / "report.md").is_file()
    # the cross-vocabulary answers (Gemma-3 through the map, then the transplanted delta) state the fact, fluently
    from crossmodel.eval.metrics import degenerate

    asks = [line for line in command_lines(f"```\n{pipeline_block()}```") if " generate " in f" {line} " and
            "gemma" in line]
    assert len(asks) == 2
    for line in asks:
        answer = run_block(line, work).strip()
        assert "Porto" in answer and "1943" in answer and not degenerate(answer), (line, answer)
    for doc in sorted((ROOT / "docs").glob("*.md")):
        blocks = bash_blocks(doc)
        if not blocks:
            continue
        folder = tmp_path / doc.stem
        shutil.copytree(work, folder, symlinks=True)
        for block in blocks:
            if "../shared" in block and not shared.is_dir():
                continue  # the TOFU / AlpacaEval data is not on this machine
            run_block(block, folder)
