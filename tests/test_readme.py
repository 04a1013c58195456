"""The README's and docs/*.md's code runs as written. Every ```python block and every command line that talks to
the app (gradio_client, curl, an MCP client's configuration) runs against a live `python app.py` over loopback,
with the test's port for the README's 7860 and /train given a 2 KB text and the shortest budget; the cheap,
self-contained command lines run in a temporary folder; every other one is listed here with the reason it is
not run, so a new command line in the docs fails this test until it is run or given a reason.
`pytest -s tests/test_readme.py` prints what ran."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from app_support import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^([ \t]*)```(\w*)[^\n]*\n(.*?)^\1```", re.M | re.S)
SHELL = ("bash", "sh", "shell", "console")
TALKS_TO_THE_APP = re.compile(r"gradio_client|\bclient\.|\bcurl\b|gradio_api|mcpServers")

# What the docs write for where the app is, and what this test puts there instead (see app_url).
APP_URLS = ("http://127.0.0.1:7860/", "https://OWNER-lstmgen.hf.space/")
# The README's /train example trains for a minute; here the same call trains for the shortest budget.
SHORTEST_BUDGET_S = 1
TRAIN_BUDGET = ('"small", 60, api_name="/train"', f'"small", {SHORTEST_BUDGET_S}, api_name="/train"')
# The text the /train example reads (my.txt): 2 KB.
MY_TEXT = ("ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n"
           * 30)[:2000]

# Command lines that run here as written, each in an empty temporary folder (a few seconds each).
RUN_HERE = ("python -m lstmgen generate", "python -m lstmgen export", "python -m lstmgen cells")
# Command lines not run, by how they begin, and why.
NOT_RUN = {
    "pip install": "installs packages from the network (this test starts `python app.py` as that line does)",
    "bash .ci/run": "runs the whole test suite, this test included",
    "python -m lstmgen evaluate": "reads a whole split, about 30 s of CPU; tests/test_train_space.py runs evaluate",
    "export LSTMGEN_DATA=": "points at the reader's own copies of the books",
    "python train_space.py": "trains for minutes; tests/test_train_space.py runs its options on small data",
    "torchrun": "trains in two processes for minutes; tests/test_train_space.py trains with two processes",
    "HF_TOKEN=": "publishes to the Hugging Face Hub",
    "python app.py --model runs/": "serves the model that the training lines above it write",
    "hf ": "creates, uploads to or configures a Space on the Hugging Face Hub",
    "out=$(mktemp -d)": "packs the commit for an upload to the Hub (the next line uploads it)",
}
# Python blocks that do not talk to the app, and the test that runs them.
PYTHON_RUN_ELSEWHERE = {"docs/code.md": "tests/test_layout.py::test_the_code_docs_python_example_runs",
                        "README.md": "tests/test_package.py::test_the_readmes_python_lines_run"}


@dataclass
class Snippet:
    doc: str  # README.md, docs/code.md, ...
    line: int  # the line it starts on
    block: int  # the line its block starts on
    language: str  # python, json or bash (a shell block gives one Snippet per command line)
    code: str

    def __str__(self) -> str:
        return f"{self.doc}:{self.line} {self.language}: {self.code.strip().splitlines()[0][:80]}"


def snippets() -> list[Snippet]:
    """Every ```python and ```json block of the docs, and every command line of their shell blocks."""
    found = []
    for path in DOCS:
        text, doc = path.read_text(), path.relative_to(ROOT).as_posix()
        for fence in FENCE.finditer(text):
            indent, language, body = fence.groups()
            first = text.count("\n", 0, fence.start()) + 2
            lines = [line.removeprefix(indent) for line in body.splitlines()]
            if language in SHELL:
                found += [Snippet(doc, first + i, first, "bash", line.removeprefix("$ ").strip())
                          for i, line in enumerate(lines) if line.strip() and not line.strip().startswith("#")]
            elif language in ("python", "json"):
                found.append(Snippet(doc, first, first, language, "\n".join(lines) + "\n"))
    return found


def plan(snippet: Snippet) -> str:
    """How this test runs a snippet: "app" (against the live app), "here" (in a temporary folder), "elsewhere:
    <test>", "not run: <why>", or "" when nobody has decided yet (the docs gained a snippet)."""
    if TALKS_TO_THE_APP.search(snippet.code):
        return "app"
    if snippet.language == "python":
        return f"elsewhere: {PYTHON_RUN_ELSEWHERE[snippet.doc]}" if snippet.doc in PYTHON_RUN_ELSEWHERE else ""
    if snippet.code.startswith(RUN_HERE):
        return "here"
    why = next((why for start, why in NOT_RUN.items() if snippet.code.startswith(start)), "")
    return f"not run: {why}" if why else ""


def for_the_test(code: str, url: str) -> str:
    """The code as written, pointed at the test's app."""
    for written in APP_URLS:
        code = code.replace(written, url)
    return code.replace(*TRAIN_BUDGET)


def run(command: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run a reader's command in `cwd`: `python` is this interpreter, lstmgen imports from the checkout, the Hub
    is off (the bundled weights serve)."""
    python = cwd / ".bin" / "python"
    if not python.exists():
        python.parent.mkdir()
        python.symlink_to(sys.executable)
    env = dict(os.environ, PATH=f"{python.parent}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(ROOT),
               HF_HUB_OFFLINE="1", NO_PROXY="127.0.0.1,localhost")
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def report(title: str, ran: list[Snippet], output: str = "") -> None:
    print(f"\n{title}:\n" + "\n".join(f"  {s}" for s in ran) + (f"\n--- output ---\n{output}" if output else ""))


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """`python app.py --no-hub` on a free loopback port, with training's shortest budget lowered to 1 s."""
    folder = tmp_path_factory.mktemp("readme-app")
    port = free_port()
    env = dict(os.environ, LSTMGEN_TRAIN_MIN_SECONDS=str(SHORTEST_BUDGET_S), HF_HUB_OFFLINE="1",
               NO_PROXY="127.0.0.1,localhost")
    with open(folder / "app.log", "w") as log:
        server = subprocess.Popen([sys.executable, "app.py", "--no-hub", "--port", str(port)], cwd=ROOT, env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(url, server, timeout_s=180)
        yield url
    finally:
        server.terminate()  # SIGTERM: the app deletes its visitors' models folder on the way out
        server.wait(timeout=60)


def test_every_code_snippet_is_run_or_says_why_not():
    decided = [(snippet, plan(snippet)) for snippet in snippets()]
    print("\n" + "\n".join(f"  {snippet}\n      {how}" for snippet, how in decided))
    assert [s for s, how in decided if how == "app" and s.language == "python"], "the README's API examples are gone"
    undecided = [str(s) for s, how in decided if not how]
    assert not undecided, ("new code in the docs: run it here (RUN_HERE, or make it talk to the app) or say why not "
                           f"(NOT_RUN): {undecided}")


def test_the_python_blocks_run_against_the_app(app_url, tmp_path):
    """Each doc's blocks in one interpreter, in order, as a reader pastes them (the /train block uses the client
    made in the block before it)."""
    (tmp_path / "my.txt").write_text(MY_TEXT)
    ran = [s for s in snippets() if s.language == "python" and plan(s) == "app"]
    assert any(TRAIN_BUDGET[0] in s.code for s in ran), "the README's /train example changed: update TRAIN_BUDGET"
    driver = ("import json, sys\n"
              "namespaces = {}\n"
              "for where, doc, code in json.load(open(sys.argv[1])):\n"
              "    print(f'### {where}', flush=True)\n"
              "    exec(compile(code, where, 'exec'), namespaces.setdefault(doc, {'__name__': '__main__'}))\n")
    blocks = tmp_path / "blocks.json"
    blocks.write_text(json.dumps([(f"{s.doc}:{s.line}", s.doc, for_the_test(s.code, app_url)) for s in ran]))
    result = run([sys.executable, "-c", driver, str(blocks)], tmp_path)
    report("python blocks run against the app", ran, result.stdout[-3000:])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("### ") == len(ran)


def test_the_command_lines_that_talk_to_the_app_run_against_it(app_url, tmp_path):
    """Each shell block's lines that talk to the app, in one shell (a line may use a variable set before it); a
    failed command, or an answer that is an error event, fails."""
    lines = [s for s in snippets() if s.language == "bash" and plan(s) == "app"]
    assert lines, "the docs' REST example is gone"
    outputs = []
    for block in dict.fromkeys((s.doc, s.block) for s in lines):
        script = "set -eo pipefail\n" + "\n".join(for_the_test(s.code, app_url) for s in lines
                                                   if (s.doc, s.block) == block)
        result = run(["bash", "-c", script], tmp_path, timeout=120)
        outputs.append(result.stdout)
        assert result.returncode == 0 and "event: error" not in result.stdout, result.stdout + result.stderr
        assert "event: complete" in result.stdout, result.stdout
    report("command lines run against the app", lines, "\n".join(outputs)[-2000:])


def test_the_mcp_configuration_reaches_the_app_s_tools(app_url):
    """The MCP client configuration, pointed at the app, gives an MCP client the app's tools."""
    import asyncio

    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    configs = [s for s in snippets() if s.language == "json" and plan(s) == "app"]
    assert configs, "the README's MCP configuration is gone"

    async def tools(url: str) -> list[str]:
        async with streamablehttp_client(url) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return [tool.name for tool in (await session.list_tools()).tools]

    for config in configs:
        for server in json.loads(for_the_test(config.code, app_url))["mcpServers"].values():
            assert "generate" in asyncio.run(tools(server["url"])), config
    report("MCP configurations connected to the app", configs)


def test_the_cheap_command_lines_run(tmp_path):
    """The library's command lines of docs/code.md, each as written in an empty folder (export writes out/ there)."""
    lines = [s for s in snippets() if plan(s) == "here"]
    assert lines
    for snippet in lines:
        folder = tmp_path / f"line-{snippet.line}"
        folder.mkdir()
        result = run(["bash", "-c", snippet.code], folder)
        assert result.returncode == 0, f"{snippet}\n{result.stderr[-2000:]}"
        assert result.stdout.strip(), snippet
    report("command lines run in a temporary folder", lines)
