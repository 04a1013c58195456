"""The named API is also an MCP server, for AI assistants: a real MCP client (the `mcp` package) over loopback
lists the tools, with the endpoints' docstrings as their descriptions, and gets from two of them what
gradio_client gets. Training is not among the tools unless the operator asks for it."""

from __future__ import annotations

import ast
import asyncio

import pytest

from app_support import build_model_folders, launch
from lstmgen.app import build_demo
from lstmgen.serve import service

pytestmark = [pytest.mark.filterwarnings("ignore::Warning:gradio.*"),
              pytest.mark.filterwarnings("ignore::ResourceWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    folders = build_model_folders(tmp_path_factory.mktemp("mcp-models"))
    demo = build_demo(service.load_all(records=[], sources=[str(f) for f in folders.values()], use_hub=False))
    url = launch(demo)
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


def tool_result(result) -> dict:
    assert not result.isError, result.content
    # Gradio's MCP server answers with the text of the endpoint's dict (its Python representation).
    return ast.literal_eval(result.content[0].text)


def test_the_tools_are_the_named_endpoints_described_by_their_docstrings(url):
    async def work(session):
        return (await session.list_tools()).tools

    tools = {tool.name: tool for tool in mcp_session(url, work)}
    assert {"generate", "generate_stream", "next_tokens", "list_models"} <= set(tools)
    assert "train" not in tools  # not listed unless LSTMGEN_MCP_TRAIN=1
    assert tools["next_tokens"].description.startswith("The k most likely next tokens")
    assert "temperature" in tools["generate"].inputSchema["properties"]


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
