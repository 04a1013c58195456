"""The named API is also an MCP server, for AI assistants: a real MCP client (the `mcp` package) over loopback
lists the tools, with the endpoints' docstrings as their descriptions, and gets from two of them what
gradio_client gets. Every place that lists the API agrees on what is served: the MCP server's tools, its
schema (/gradio_api/mcp/schema), view_api() and the API panel ("Use via API or MCP") list training only where
the operator asks for it (LSTMGEN_MCP_TRAIN), and a tool not listed is not callable. Every parameter is
described by its setting's declaration, the same words in view_api(), the MCP schema and the panel, and the
panel's Python example for /generate runs as copied."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from app_support import build_model_folders, launch
from lstmgen.app import build_demo
from lstmgen.core.sampling import SamplingConfig
from lstmgen.core.settings import describe
from lstmgen.serve import service
from lstmgen.serve.service import Inputs
from lstmgen.serve.studio import TrainRequest

pytestmark = [pytest.mark.filterwarnings("ignore::Warning:gradio.*"),
              pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

ENDPOINTS = {"/generate", "/generate_stream", "/next_tokens", "/models", "/cells", "/cell_features", "/score"}
# Gradio's own words for a parameter nobody described.
GRADIO_DEFAULT = "The input value that is provided in the"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return build_model_folders(tmp_path_factory.mktemp("mcp-models"))


def serve(folders, mcp_train: bool):
    """A launched app over the tiny models, its operator having set LSTMGEN_MCP_TRAIN or not."""
    with pytest.MonkeyPatch.context() as environment:
        if mcp_train:
            environment.setenv("LSTMGEN_MCP_TRAIN", "1")
        else:
            environment.delenv("LSTMGEN_MCP_TRAIN", raising=False)
        demo = build_demo(service.load_all(records=[], sources=[str(f) for f in folders.values()], use_hub=False))
    return demo, launch(demo)


@pytest.fixture(scope="module")
def url(folders):
    demo, url = serve(folders, mcp_train=False)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def url_with_train(folders):
    demo, url = serve(folders, mcp_train=True)
    yield url
    demo.close()


def mcp_session(url, work):
    """Run `work(session)` in an MCP client session with the app's MCP server (streamable HTTP)."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async def run():
        async with streamablehttp_client(url + "gradio_api/mcp/") as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await work(session)

    return asyncio.run(run())


def listed_tools(url) -> dict:
    async def work(session):
        return (await session.list_tools()).tools

    return {tool.name: tool for tool in mcp_session(url, work)}


def schema(url) -> dict:
    """/gradio_api/mcp/schema: what the API panel's MCP tab lists, tool by tool."""
    return {tool["name"]: tool for tool in httpx.get(url + "gradio_api/mcp/schema", timeout=30).json()}


def documented(url) -> dict:
    from gradio_client import Client

    return Client(url, verbose=False).view_api(return_format="dict", print_info=False)["named_endpoints"]


def tool_result(result) -> dict:
    assert not result.isError, result.content
    # Gradio's MCP server answers with the text of the endpoint's dict (its Python representation).
    return ast.literal_eval(result.content[0].text)


def test_the_tools_are_the_named_endpoints_described_by_their_docstrings(url):
    tools = listed_tools(url)
    assert {"generate", "generate_stream", "next_tokens", "list_models"} <= set(tools)
    assert "train" not in tools  # not listed unless LSTMGEN_MCP_TRAIN=1
    assert tools["next_tokens"].description.startswith("The k most likely next tokens")
    assert "temperature" in tools["generate"].inputSchema["properties"]


@pytest.mark.parametrize("mcp_train", [False, True], ids=["by default", "LSTMGEN_MCP_TRAIN=1"])
def test_every_list_of_the_api_names_what_is_served(mcp_train, request):
    url = request.getfixturevalue("url_with_train" if mcp_train else "url")
    expected = ENDPOINTS | ({"/train"} if mcp_train else set())
    tools, panel = listed_tools(url), schema(url)
    assert set(tools) == set(panel)
    assert {"/" + tool["meta"]["endpoint_name"] for tool in panel.values()} == expected
    assert set(documented(url)) == expected

    async def call_train(session):
        return await session.call_tool("train", {"text": "x" * 2_000, "tokenizer": "char", "size": "small",
                                                 "seconds": 10})

    if not mcp_train:  # a tool not listed cannot be called by its name either
        assert mcp_session(url, call_train).isError


@pytest.mark.parametrize("mcp_train", [False, True], ids=["by default", "LSTMGEN_MCP_TRAIN=1"])
def test_every_parameter_is_described_by_its_declaration(mcp_train, request):
    url = request.getfixturevalue("url_with_train" if mcp_train else "url")
    tools = {"/" + tool["meta"]["endpoint_name"]: tool for tool in schema(url).values()}
    for endpoint, info in documented(url).items():
        for parameter in info["parameters"]:
            name, description = parameter["parameter_name"], parameter["python_type"]["description"]
            assert description and GRADIO_DEFAULT not in description, \
                f"{endpoint} {name}: not described (a line '{name}: ...' under 'Args:' in its docstring)"
            # The MCP client reads the same words (gradio parses them from the docstring's "Args:").
            assert tools[endpoint]["inputSchema"]["properties"][name]["description"] == description, (endpoint, name)
            declaration = declared_in(endpoint, name)
            if declaration is None:
                assert name in ("model", "temperature"), (endpoint, name)
            else:
                assert description.startswith(describe(declaration, name)), (endpoint, name, description)


def declared_in(endpoint: str, name: str):
    """Where a parameter is declared: a training request's, the sampling settings, the service's other inputs;
    None for the model's name and /next_tokens' temperature (above 0 there, unlike generation's)."""
    if endpoint == "/train":
        return TrainRequest
    if endpoint in ("/generate", "/generate_stream") and name in {f.name for f in dataclasses.fields(SamplingConfig)}:
        return SamplingConfig
    return Inputs if name in {f.name for f in dataclasses.fields(Inputs)} else None


@pytest.fixture
def browser():  # for one test only: playwright's event loop holds the thread while it runs
    from playwright.sync_api import sync_playwright

    from test_browser import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_the_api_panel_lists_what_is_served_and_its_examples_run_as_copied(url, browser):
    page = browser.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.get_by_text("Use via API or MCP").click()
    # It opens on MCP: the tools the MCP server lists, and that many in its title.
    page.get_by_text("Available MCP Tools").first.wait_for()
    with ThreadPoolExecutor() as thread:  # the MCP client runs its own event loop, and playwright's holds this thread
        tools = thread.submit(listed_tools, url).result()
    assert sorted(page.locator(".tool-name").all_inner_texts()) == sorted(tools)
    title = " ".join(page.locator("h2", has_text="MCP documentation").inner_text().split())
    assert title.endswith(f" {len(tools)} MCP Tools"), title
    # Python: every parameter with its own description, and examples that run as copied.
    page.get_by_text("Python", exact=True).first.click()
    examples = {re.search(r'api_name="(/\w+)"', code).group(1): code for code in page.locator("code").all_inner_texts()
                if code.startswith("from gradio_client")}
    text = page.locator("body").inner_text()
    page.close()
    assert set(examples) == ENDPOINTS
    for endpoint, info in documented(url).items():
        for parameter in info["parameters"]:
            assert parameter["python_type"]["description"] in text, (endpoint, parameter["parameter_name"])
    for endpoint, example in sorted(examples.items()):
        result = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, example + result.stderr[-2000:]
        answer = ast.literal_eval(result.stdout.strip().splitlines()[-1])  # print(result): the endpoint's dict
        if endpoint == "/generate":
            assert answer["float32"]["text"] and answer["int8"]["text"], answer


def test_two_tools_answer_as_gradio_client_does(url):
    from gradio_client import Client

    client = Client(url, verbose=False)

    async def work(session):
        candidates = await session.call_tool("next_tokens", {"model": "char", "prompt": "ROMEO:", "k": 5,
                                                             "temperature": 1.0})
        generated = await session.call_tool("generate", {"model": "char", "prompt": "ROMEO:", "temperature": 0.8,
                                                         "length": 30, "top_k": 0, "top_p": 1.0, "seed": 3,
                                                         "allow_special": False})
        return tool_result(candidates), tool_result(generated)

    candidates, generated = mcp_session(url, work)
    assert candidates == client.predict("char", "ROMEO:", 5, 1.0, api_name="/next_tokens")
    direct = client.predict("char", "ROMEO:", 0.8, 30, 0, 1.0, 3, False, api_name="/generate")
    for side in ("float32", "int8"):  # the same text and probabilities (the timings are each run's own)
        assert generated[side]["text"] == direct[side]["text"]
        assert generated[side]["token_probabilities"] == direct[side]["token_probabilities"]
    assert generated["fidelity"] == direct["fidelity"]
