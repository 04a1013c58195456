"""The Gradio app's named API, in-process and over loopback with gradio_client: documented endpoints,
both texts with timings, reproducible seeds, streaming, clear errors for every bad field, and
independent answers for concurrent users. Tiny model folders, one launched app for the module."""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import torch

import app
from app_support import build_model_folders, launch
from lstmgen.app import build_demo
from lstmgen.serve import service
from lstmgen.core.records import RECORDS
from lstmgen.serve.service import SAMPLING_RANGES, MAX_PROMPT_CHARS
from lstmgen.core.sampling import SamplingConfig
from lstmgen.core.settings import describe

PROJECT = Path(__file__).resolve().parent.parent

# Gradio's queue emits these (Pandas4Warning) on every queued call; they say nothing about the app.
pytestmark = [pytest.mark.filterwarnings("ignore::Warning:gradio.*"),
              pytest.mark.filterwarnings("ignore::ResourceWarning")]

CALL_TIMEOUT_S = 60
PARAMETERS = ["model", "prompt", "temperature", "length", "top_k", "top_p", "seed", "allow_special", "min_p"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return build_model_folders(tmp_path_factory.mktemp("app-models"))


@pytest.fixture(scope="module")
def served(folders):
    served = service.load_all(records=[], sources=[str(folder) for folder in folders.values()], use_hub=False)
    assert all(s.loaded is not None for s in served.values()), {n: s.error for n, s in served.items()}
    return served


@pytest.fixture(scope="module")
def runtime():
    """What app.main() does before serving (process-wide torch settings), undone afterwards so the
    other test modules run as before."""
    mkldnn, threads = torch.backends.mkldnn.enabled, torch.get_num_threads()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        app.prepare_runtime()
    yield
    torch.backends.mkldnn.enabled = mkldnn
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def server(served, runtime):
    demo = build_demo(served)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LSTMGEN_TRUSTED_PROXIES", "1")  # X-Forwarded-For names the visitors, as on a Space
        url = launch(demo)
    yield demo, url
    demo.close()


@pytest.fixture(scope="module")
def url(server):
    return server[1]


@pytest.fixture(scope="module")
def client(url):
    from gradio_client import Client

    return Client(url, verbose=False)


def call(client, *args, api_name="/generate", **kwargs):
    """predict() with a bound on the wait: a hung worker fails the test instead of hanging the suite."""
    return client.submit(*args, api_name=api_name, **kwargs).result(timeout=CALL_TIMEOUT_S)


def request(model="char", prompt="ROMEO:", temperature=0.8, length=40, top_k=0, top_p=1.0, seed=1) -> dict:
    return dict(model=model, prompt=prompt, temperature=temperature, length=length, top_k=top_k, top_p=top_p,
                seed=seed)


# --------------------------------------------------------------------------- the documented API


def test_view_api_documents_the_named_endpoints(client):
    api = client.view_api(return_format="dict", print_info=False)
    named = api["named_endpoints"]
    # The UI's own handlers are private: only the documented endpoints are named. /train is callable by name but
    # documented only where it is an MCP tool too (LSTMGEN_MCP_TRAIN): Gradio's API panel counts every documented
    # endpoint as a tool.
    assert set(named) == {"/generate", "/generate_stream", "/next_tokens", "/models", "/cells", "/cell_features",
                          "/score"}
    for endpoint in ("/generate", "/generate_stream"):
        assert [p["parameter_name"] for p in named[endpoint]["parameters"]] == PARAMETERS
        assert len(named[endpoint]["returns"]) == 1, f"{endpoint} must return one value (a dict)"
        defaults = {p["parameter_name"]: p["parameter_default"] for p in named[endpoint]["parameters"]
                    if p["parameter_has_default"]}
        assert defaults == {"prompt": "", "temperature": 0.8, "length": 200, "top_k": 0, "top_p": 1.0, "seed": None,
                            "allow_special": False, "min_p": 0.0}
    generate_doc = named["/generate"]["description"]
    assert "float32 model and its int8 copy" in generate_doc and "token_probabilities" in generate_doc
    assert "fidelity" in generate_doc and "masked" in generate_doc
    # Each parameter is described by its own declaration, with its limits (lstmgen.core.sampling, service.Inputs).
    described = {e: {p["parameter_name"]: p["python_type"]["description"] for p in info["parameters"]}
                 for e, info in named.items()}
    assert described["/generate"]["temperature"].startswith(describe(SamplingConfig, "temperature"))
    assert "0 is greedy" in described["/generate"]["temperature"]
    assert "at most 2,000 characters" in described["/generate"]["prompt"]
    assert [p["parameter_name"] for p in named["/next_tokens"]["parameters"]] == ["model", "prompt", "k", "temperature"]
    assert "[1, 50]" in described["/next_tokens"]["k"]
    for endpoint in ("/cells", "/score"):
        assert "at most 10,000 characters and 10,000 tokens" in described[endpoint]["text"]
    assert all(all(described[e].values()) for e in described), described  # no parameter left without words
    assert not [e for e, info in named.items() if re.search(r"\{[a-z_]+\}", info["description"])]
    assert "streams" in named["/generate_stream"]["description"]
    assert "could not be loaded" in named["/models"]["description"]
    assert named["/models"]["parameters"] == []
    # Nothing else is callable by name either: the unnamed endpoints (the UI's) are not listed for callers.
    assert not api.get("unnamed_endpoints")


def test_models_reports_what_is_loaded(client, folders):
    info = call(client, api_name="/models")
    assert set(info) == {"char", "subword", "word"}
    for name, entry in info.items():
        assert entry["loaded"] is True and entry["name"] == name
        # Where the weights came from, without the server's path (a visitor never sees one).
        assert entry["source"] == f"a folder on the server ({folders[name].name})"
        assert entry["parameters"] > 0 and entry["vocab_size"] > 0 and entry["tokenizer"] == name
        assert 0 < entry["size_mb"]["int8"] < entry["size_mb"]["float32"]
        assert entry["figures"]["val_float"] == {"loss": 2.9, "perplexity": 18.2, "bits_per_char": None}


# --------------------------------------------------------------------------- /generate


@pytest.mark.parametrize("model", ["char", "subword", "word"])
def test_generate_returns_both_texts_with_timings(client, model):
    length = 25
    result = call(client, **request(model, prompt="the", length=length, seed=11))
    assert result["prompt"] == "the" and result["model"] == model and result["seed"] == 11 and result["done"]
    for side in ("float32", "int8"):
        out = result[side]
        assert out["text"] and out["tokens"] == length
        assert out["first_token_ms"] >= 0 and out["total_ms"] > 0 and out["tokens_per_s"] > 0
        assert out["first_token_ms"] <= out["total_ms"] + 1e-6
        assert out["size_mb"] > 0
    assert result["int8"]["size_mb"] < result["float32"]["size_mb"]
    for side in ("float32", "int8"):
        probabilities = result[side]["token_probabilities"]
        assert len(probabilities) == length and all(0 < p <= 1 for p in probabilities)
    fidelity = result["fidelity"]
    assert fidelity["steps"] == length
    assert 0 <= fidelity["same_choice"] <= 1 and 0 <= fidelity["top1_agreement"] <= 1 and fidelity["mean_kl_nats"] >= 0


def test_the_preset_name_is_accepted_as_an_alias(client):
    assert call(client, **request("char-shakespeare", length=5))["model"] == "char"


def test_temperature_zero_is_greedy_whatever_the_seed(client):
    first = call(client, **request("word", temperature=0, length=30, seed=1))
    second = call(client, **request("word", temperature=0, length=30, seed=999))
    assert first["float32"]["text"] == second["float32"]["text"]
    assert first["int8"]["text"] == second["int8"]["text"]
    # A tiny positive temperature is greedy too (dividing float32 logits by it would overflow).
    tiny = call(client, **request("word", temperature=1e-300, length=30, seed=3))
    assert tiny["float32"]["text"] == first["float32"]["text"] and tiny["int8"]["text"] == first["int8"]["text"]


def test_a_fixed_seed_reproduces_a_run_and_another_seed_changes_it(client):
    runs = [call(client, **request("word", temperature=1.0, length=60, seed=seed)) for seed in (5, 5, 6)]
    for side in ("float32", "int8"):
        assert runs[0][side]["text"] == runs[1][side]["text"]
    assert runs[0]["fidelity"] == runs[1]["fidelity"]
    assert runs[0]["float32"]["text"] != runs[2]["float32"]["text"]


def test_an_empty_seed_picks_one_and_reports_it_so_the_run_can_be_repeated(client):
    first = call(client, **request("word", temperature=1.0, length=40, seed=None))
    assert SAMPLING_RANGES["seed"][0] <= first["seed"] <= SAMPLING_RANGES["seed"][1]
    again = call(client, **request("word", temperature=1.0, length=40, seed=first["seed"]))
    assert again["float32"]["text"] == first["float32"]["text"]


def test_float_and_int8_share_their_randomness(client):
    """With coupled draws the two copies choose alike wherever their distributions are close: over many seeds (no
    one draw decides), the int8 copy of the char model fitted to repeating text makes the full model's choice at
    nearly every step; and in every run the two texts are the same up to where they part, and differ there."""
    runs = [call(client, **request("char", prompt="ROMEO:\nBut", temperature=0.8, length=60, seed=seed))
            for seed in range(20)]
    same = sum(r["fidelity"]["same_choice"] * r["fidelity"]["steps"] for r in runs) / sum(
        r["fidelity"]["steps"] for r in runs)
    assert same >= 0.95, same
    for r in runs:
        texts, parted = (r["float32"]["text"], r["int8"]["text"]), r["parted_at"]  # a character is a token here
        if parted is None:
            assert texts[0] == texts[1]
        else:
            assert texts[0][:parted] == texts[1][:parted] and texts[0][parted] != texts[1][parted]


def test_top_k_1_is_greedy(client):
    greedy = call(client, **request("word", temperature=0, length=20))
    top1 = call(client, **request("word", temperature=1.5, length=20, top_k=1, seed=8))
    assert top1["float32"]["text"] == greedy["float32"]["text"]


def test_an_empty_prompt_starts_from_the_start_token(client):
    result = call(client, **request("char", prompt="", length=10))
    assert result["prompt"] == "" and result["float32"]["tokens"] == 10


def test_characters_outside_the_vocabulary_are_reported_not_fatal(client):
    result = call(client, **request("char", prompt="ROMEO€", length=10))
    assert result["unknown"] == ["€"] and result["float32"]["tokens"] == 10
    words = call(client, **request("word", prompt="Harry looked at Voldemort", length=5))
    assert words["unknown"] == ["voldemort"]
    subword = call(client, **request("subword", prompt="ROMEO: zebra", length=5))
    assert subword["unknown"]  # spelled in bytes, listed
    assert subword["float32"]["tokens"] == 5


# --------------------------------------------------------------------------- /generate_stream


def test_generate_stream_sends_growing_updates_ending_with_the_full_result(client, monkeypatch):
    # The test models are tiny: their 1,000 tokens take a few milliseconds, less than one update interval.
    monkeypatch.setattr(service, "STREAM_EVERY_S", 0.002)
    args = request("word", prompt="Harry", temperature=1.0, length=1000, seed=21)
    job = client.submit(**args, api_name="/generate_stream")
    updates = list(job)  # iterating the job yields every streamed value
    assert job.status().success
    assert len(updates) > 1, "a 1000-token run must arrive in several updates"
    assert updates == job.outputs()
    for earlier, later in zip(updates, updates[1:]):
        for side in ("float32", "int8"):
            assert later[side]["text"].startswith(earlier[side]["text"])
            assert later[side]["tokens"] >= earlier[side]["tokens"]
    assert not any(u["done"] for u in updates[:-1]) and updates[-1]["done"] is True
    assert updates[-1]["float32"]["tokens"] == 1000
    final = call(client, **args)
    for side in ("float32", "int8"):
        assert updates[-1][side]["text"] == final[side]["text"]
    assert updates[-1]["fidelity"] == final["fidelity"] and updates[-1]["seed"] == 21
    assert all(u["fidelity"] is None for u in updates[:-1])
    for update in updates:
        for side in ("float32", "int8"):
            assert len(update[side]["token_probabilities"]) == update[side]["tokens"]


def test_generate_stream_rejects_bad_input_too(client):
    with pytest.raises(Exception, match="temperature must be between"):
        call(client, **request(temperature=3), api_name="/generate_stream")


# --------------------------------------------------------------------------- bad input

BAD_INPUTS = [
    (dict(model="gpt-4"), "unknown model 'gpt-4': choose one of char, subword, word"),
    (dict(model=""), "unknown model"),
    (dict(temperature=-0.1), "temperature must be between 0.0 and 2.0, got -0.1"),
    (dict(temperature=2.5), "temperature must be between 0.0 and 2.0, got 2.5"),
    (dict(temperature="hot"), "temperature must be a number, not 'hot'"),
    (dict(length=0), "length must be between 1 and 1000, got 0"),
    (dict(length=1001), "length must be between 1 and 1000, got 1001"),
    (dict(length=3.5), "length must be a whole number"),
    (dict(top_k=-1), "top_k must be between 0 and 500, got -1"),
    (dict(top_k=501), "top_k must be between 0 and 500, got 501"),
    (dict(top_p=0), "top_p must be between 0.01 and 1.0, got 0"),
    (dict(top_p=1.5), "top_p must be between 0.01 and 1.0, got 1.5"),
    (dict(seed=-1), "seed must be between 0 and 2147483647, got -1"),
    (dict(seed=2**31), "seed must be between 0 and 2147483647"),
    (dict(prompt="x" * (MAX_PROMPT_CHARS + 1)), "prompt is 2,001 characters; the limit is 2,000"),
    (dict(model="subword", prompt="🙂" * 600), "prompt is 2,400 tokens for the subword model; the limit is 2,000"),
    (dict(allow_special="sometimes"), "allow_special must be true or false"),
    (dict(min_p=1.5), "min_p must be between 0.0 and 1.0, got 1.5"),
]


def test_min_p_reaches_both_models_through_the_api(client):
    """min_p (the engine's declared fallback: sampled through lstmgen.core.sampling on its logits) keeps only the
    tokens at least min_p times as likely as the top one: min_p 1 writes what greedy writes."""
    greedy = call(client, **request(temperature=0, length=12))
    kept_top = call(client, **request(temperature=1.5, length=12, seed=3), min_p=1.0)
    for side in ("float32", "int8"):
        assert kept_top[side]["text"] == greedy[side]["text"]


@pytest.mark.parametrize("bad, message", BAD_INPUTS, ids=[str(b)[:40] for b, _ in BAD_INPUTS])
def test_bad_input_gets_a_clear_error_and_the_server_keeps_answering(client, bad, message):
    with pytest.raises(Exception) as caught:
        call(client, **{**request(length=5), **bad})
    assert message in str(caught.value)
    assert call(client, **request(length=5))["float32"]["tokens"] == 5


def test_a_prompt_at_the_limit_is_accepted(client):
    result = call(client, **request("char", prompt="ROMEO " * (MAX_PROMPT_CHARS // 6), length=3))
    assert result["float32"]["tokens"] == 3


def test_nan_temperature_is_refused_in_process(server):
    # gradio_client cannot send NaN (JSON has none); the function refuses it all the same.
    import gradio as gr

    api = server[0].lstmgen_app
    with pytest.raises(gr.Error, match="temperature must be a finite number"):
        api.generate("char", "ROMEO:", float("nan"), 5, 0, 1.0, 1, False)
    with pytest.raises(gr.Error, match="top_p must be a finite number"):
        next(api.generate_stream("char", "ROMEO:", 0.8, 5, 0, math.inf, 1, False))


def test_nan_temperature_sent_as_raw_json_gets_a_clear_error(client, url):
    # Python's JSON reader accepts the NaN literal: the request reaches the validation and is refused.
    body = b'{"data": ["char", "ROMEO:", NaN, 5, 0, 1.0, 1, false]}'
    with httpx.Client(timeout=CALL_TIMEOUT_S) as http:
        posted = http.post(url + "gradio_api/call/generate", content=body,
                           headers={"content-type": "application/json"})
        assert posted.status_code == 200, posted.text
        events = http.get(url + f"gradio_api/call/generate/{posted.json()['event_id']}").text
    assert "event: error" in events and "temperature must be a finite number" in events
    assert call(client, **request(length=5))["float32"]["tokens"] == 5


# --------------------------------------------------------------------------- concurrent users


def test_concurrent_clients_get_independent_answers(client, url):
    from gradio_client import Client

    jobs = [request(("word", "subword", "char")[i % 3], prompt="the", temperature=1.0, length=80, seed=100 + i)
            for i in range(16)]
    sequential = [call(client, **job) for job in jobs]
    # Different seeds really give different texts, so a leaked seed or state would show.
    assert len({r["float32"]["text"] for r in sequential}) >= 12

    def one_user(i, job):  # sixteen visitors, each from an address of their own (the server trusts one proxy)
        own = Client(url, verbose=False, headers={"X-Forwarded-For": f"192.0.2.{i + 1}"})
        return own.submit(**job, api_name="/generate").result(timeout=CALL_TIMEOUT_S)

    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(one_user, i, job) for i, job in enumerate(jobs)]
        concurrent = [future.result(timeout=2 * CALL_TIMEOUT_S) for future in futures]
    for job, alone, together in zip(jobs, sequential, concurrent):
        assert together["seed"] == job["seed"] and together["model"] == job["model"]
        for side in ("float32", "int8"):
            assert together[side]["text"] == alone[side]["text"], f"seed {job['seed']} ({job['model']}, {side})"
        assert together["fidelity"] == alone["fidelity"]


# --------------------------------------------------------------------------- a model that failed to load


@pytest.fixture
def demo_with_a_failed_model(served, folders, tmp_path, server):
    """char and word load; subword's folder does not exist. Each demo has an App of its own, so the
    module's server keeps its three models meanwhile."""
    broken = service.load_one(replace(RECORDS["subword"], folder=tmp_path / "missing-folder"), use_hub=False)
    assert broken.loaded is None and broken.error
    mixed = {"char": served["char"], "subword": broken, "word": served["word"]}
    demo = build_demo(mixed)
    url = launch(demo)
    try:
        yield demo, url, broken
    finally:
        demo.close()


def test_a_model_that_failed_to_load_is_reported_and_the_others_work(demo_with_a_failed_model):
    from gradio_client import Client

    demo, url, broken = demo_with_a_failed_model
    assert "missing-folder" in broken.error
    # Its tab explains why; the other tabs have their controls.
    config = json.dumps(demo.config, default=str)
    # Its tab says so in plain words; the reason (it names a server path) is for the operator's console only.
    assert "This model could not be loaded" in config and json.dumps(broken.error)[1:-1] not in config
    elem_ids = {c.get("props", {}).get("elem_id") for c in demo.config["components"]}
    assert {"char-prompt", "char-generate", "word-prompt", "word-generate"} <= elem_ids
    assert "subword-prompt" not in elem_ids and "subword-generate" not in elem_ids

    client = Client(url, verbose=False)
    info = call(client, api_name="/models")
    assert info["subword"] == {"name": "subword", "preset": "subword-shakespeare", "title": "Shakespeare · word pieces",
                               "loaded": False, "error": "this model could not be loaded on the server"}
    assert info["char"]["loaded"] and info["word"]["loaded"]
    with pytest.raises(Exception, match="the subword model could not be loaded on the server: choose another"):
        call(client, **request("subword", length=5))
    for model in ("char", "word"):
        assert call(client, **request(model, length=5))["float32"]["tokens"] == 5


def test_the_module_app_serves_all_three_again(client):
    assert call(client, **request("subword", length=5))["float32"]["tokens"] == 5


# --------------------------------------------------------------------------- short REST calls


def rest_call(url, endpoint: str, data: list) -> str:
    """POST to Gradio's REST API (no client filling anything in); returns the event stream as text."""
    with httpx.Client(timeout=CALL_TIMEOUT_S) as http:
        posted = http.post(url + f"gradio_api/call/{endpoint}", json={"data": data})
        assert posted.status_code == 200, posted.text
        return http.get(url + f"gradio_api/call/{endpoint}/{posted.json()['event_id']}").text


def test_a_rest_call_that_leaves_out_arguments_gets_the_documented_defaults(url):
    events = rest_call(url, "generate", ["char", "ROMEO:"])
    assert "event: complete" in events, events
    result = json.loads(events.split("data: ", 1)[1].splitlines()[0])[0]
    assert result["float32"]["tokens"] == 200  # the default length
    assert result["prompt"] == "ROMEO:"


def test_a_rest_call_without_a_model_gets_a_clear_message(url):
    events = rest_call(url, "generate", [])
    assert "event: error" in events and "unknown model None" in events


# --------------------------------------------------------------------------- /next_tokens


@pytest.mark.parametrize("model", ["char", "subword", "word"])
def test_next_tokens_lists_k_candidates_of_both_models(client, model):
    result = call(client, model, "the castle", 5, 1.0, api_name="/next_tokens")
    assert set(result) == {"float32", "int8", "kl_nats", "same_top1"}
    for side in ("float32", "int8"):
        candidates = result[side]
        assert len(candidates) == 5
        probabilities = [c["probability"] for c in candidates]
        assert all(0 < p <= 1 for p in probabilities) and sum(probabilities) <= 1 + 1e-6
        assert probabilities == sorted(probabilities, reverse=True)
        assert all(isinstance(c["token"], str) and c["token"] for c in candidates)
        assert "<unk>" not in [c["token"] for c in candidates]  # special tokens are masked, as in generation
    assert result["kl_nats"] >= 0


@pytest.mark.parametrize("model, prompt", [("char", "ROMEO:\nBut soft"), ("subword", "ROMEO: But"),
                                           ("word", "Harry looked at the castle."), ("word", "Hermione said that")])
def test_each_candidate_is_shown_as_generation_would_write_it(client, model, prompt):
    """A candidate's "text" is what it adds after the prompt, cased and spaced as generation writes it: the most
    likely one is what greedy generation writes first (after a sentence's end on the words model, a capital)."""
    top = call(client, model, prompt, 3, 1.0, api_name="/next_tokens")["float32"][0]
    greedy = call(client, **request(model, prompt=prompt, temperature=0, length=1))
    assert top["text"] == greedy["float32"]["text"]
    if prompt.endswith("."):
        assert top["text"].strip()[:1].isupper() or not top["text"].strip()[:1].isalpha()


def test_next_tokens_of_the_fitted_char_model_agree_on_the_top_choice(client):
    result = call(client, "char", "ROMEO:\nBut soft, what light through yonder", 3, 1.0, api_name="/next_tokens")
    assert result["same_top1"] is True
    assert result["float32"][0]["token"] == result["int8"][0]["token"] == "␣"  # spaces are shown visibly


@pytest.mark.parametrize("args, message", [
    (("char", "ROMEO:", 0, 1.0), "k must be between 1 and 50, got 0"),
    (("char", "ROMEO:", 51, 1.0), "k must be between 1 and 50, got 51"),
    (("char", "ROMEO:", 2.5, 1.0), "k must be a whole number"),
    (("char", "ROMEO:", 5, 0), "temperature must be above 0"),
    (("char", "ROMEO:", 5, 2.5), "temperature must be between 0.0 and 2.0"),
    (("gpt-4", "ROMEO:", 5, 1.0), "unknown model 'gpt-4'"),
])
def test_next_tokens_refuses_bad_input_clearly(client, args, message):
    with pytest.raises(Exception, match=message):
        call(client, *args, api_name="/next_tokens")
    assert len(call(client, "char", "ROMEO:", 2, 1.0, api_name="/next_tokens")["float32"]) == 2


# --------------------------------------------------------------------------- a fourth model is one record


def test_a_fourth_model_record_gets_its_own_tab_and_endpoint(served, tmp_path, server):
    """Adding a model is one record plus its weights folder: here a tiny char model trained on a corpus the
    test writes, with no change to the app or the library."""
    from gradio_client import Client

    from lstmgen.core.data import Corpus, read_corpus
    from lstmgen.core.model import ModelConfig
    from lstmgen.core.records import ModelRecord, TokenizerSpec, prepare
    from lstmgen.training.trainer import TrainConfig, Trainer

    (tmp_path / "limericks.txt").write_text("There once was a cat from the bay, who slept in the sun every day.\n" * 60)
    record = ModelRecord(
        name="limerick", long_name="char-limericks", title="Char · Limericks",
        corpus=Corpus(name="limericks", files=("limericks.txt",), note="a made-up corpus of limericks"),
        tokenizer=TokenizerSpec("char"), model=ModelConfig(embed_size=8, hidden_size=16, num_layers=1),
        train=TrainConfig(epochs=2, batch_size=4, seq_len=32, progress=False, eval_batch_size=1),
        examples=("There once was",), length=30)
    data = prepare(record, read_corpus(record.corpus, tmp_path))
    run = tmp_path / "run"
    Trainer(record.model.build(data.tokenizer.vocab_size), data.train_ids, data.val_ids, run, record.train,
            tokenizer=data.tokenizer).fit()
    record = replace(record, folder=run / "best")

    fourth = service.load_one(record, use_hub=False)
    assert fourth.loaded is not None, fourth.error
    demo = build_demo({**served, "limerick": fourth})
    url = launch(demo)
    try:
        config = json.dumps(demo.config, ensure_ascii=False, default=str)
        assert "Char · Limericks" in config and "There once was" in config
        elem_ids = {c.get("props", {}).get("elem_id") for c in demo.config["components"]}
        assert {"tab-limerick", "limerick-prompt", "limerick-generate"} <= elem_ids
        client = Client(url, verbose=False)
        assert "limerick" in call(client, api_name="/models")
        result = call(client, **request("limerick", prompt="There once was", length=12))
        assert result["model"] == "limerick" and result["float32"]["tokens"] == 12
    finally:
        demo.close()


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT"])
def test_nothing_is_left_behind_when_the_app_stops(tmp_path, stop):
    """`python app.py` stopped as a Space restart (SIGTERM) or Ctrl-C (SIGINT) does: the visitors' folder goes."""
    import signal
    import subprocess
    import sys

    from app_support import free_port, wait_until_serving

    port = free_port()
    env = dict(os.environ, TMPDIR=str(tmp_path), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    server = subprocess.Popen([sys.executable, "app.py", "--no-hub", "--port", str(port)], cwd=PROJECT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/", server)
        assert list(tmp_path.glob("lstmgen-visitors-*"))  # made at start
        server.send_signal(getattr(signal, stop))
        server.wait(30)
    finally:
        if server.poll() is None:
            server.kill()
    assert not list(tmp_path.glob("lstmgen-visitors-*"))
    assert "Traceback" not in server.stderr.read()


# --------------------------------------------------------------------------- inside the LSTM: /cells, /cell_features, /score


def test_cells_are_the_torch_models_own_states(client, folders):
    from lstmgen.hub import resolve

    loaded = resolve(str(folders["char"]), use_hub=False)
    text = "ROMEO:\nBut soft"
    found = call(client, "char", text, 1, 5, api_name="/cells")
    ids = loaded.tokenizer.encode(text).ids
    assert found["pieces"] == list(text) and found["layer"] == 1 and found["cell"] == 5
    # nn.LSTM itself, one token at a time, keeping (h, c): independent of lstmgen's stepping.
    state, h_seen, c_seen = None, [], []
    with torch.inference_mode():
        for token in ids:
            _, state = loaded.model.lstm(loaded.model.embedding(torch.tensor([[token]])), state)
            h_seen.append(float(state[0][0, 0, 4]))
            c_seen.append(float(state[1][0, 0, 4]))
    assert found["float32"]["h"] == pytest.approx(h_seen, abs=1e-5)
    assert found["float32"]["c"] == pytest.approx(c_seen, abs=1e-5)
    assert found["int8"]["c"] == pytest.approx(c_seen, abs=0.15 * (1 + max(map(abs, c_seen))))


def test_cell_features_rank_cells_by_correlation(client):
    found = call(client, "char", api_name="/cell_features")
    assert found["rows"] and all(-1 <= row["r"] <= 1 for row in found["rows"])
    assert all(f"cell {row['cell']} of layer {row['layer']}" in row["sentence"] for row in found["rows"])


def test_score_equals_the_evaluators_loss(client, folders):
    from lstmgen.core.evaluate import evaluate
    from lstmgen.hub import resolve

    loaded = resolve(str(folders["char"]), use_hub=False)
    text = "ROMEO:\nBut soft, what light through yonder window breaks?\n"
    scored = call(client, "char", text, api_name="/score")
    direct = evaluate(loaded.model, loaded.tokenizer.encode(text).ids, batch_size=1, seq_len=256)
    assert scored["float32"]["total_nats"] == pytest.approx(direct.total_nats, abs=1e-4)
    assert scored["float32"]["tokens"] == direct.tokens == len(text) - 1
    probabilities = scored["float32"]["probabilities"]
    assert probabilities[0] is None  # the first character has nothing before it
    assert -sum(math.log(p) for p in probabilities[1:]) == pytest.approx(direct.total_nats, rel=1e-5)
    assert scored["float32"]["bits_per_char"] == pytest.approx(direct.total_nats / math.log(2) / len(text), abs=1e-4)


def test_the_score_panel_says_surprise_in_bits_per_piece_and_what_it_could_not_read(client, served):
    """The Score panel's sentence (words.score_verdict) from /score's answer: the full model's surprise in bits per
    character, recomputed from the probabilities it lists, beside the held-out figure of the model's metrics.json
    (in bits too: one unit across Score, About and Train), and the characters the vocabulary drops, counted."""
    from lstmgen.app import words

    text = "ROMEO:\nBut soft! Sales grew 23% year over year.\n"
    found = call(client, "char", text, api_name="/score")
    verdict = words.score_verdict(found, served["char"])
    probabilities = [p for p in found["float32"]["probabilities"] if p is not None]
    mine = float(re.search(r"Your text: ([\d.]+) bits per character", verdict).group(1))
    assert mine == pytest.approx(-sum(math.log2(p) for p in probabilities) / len(probabilities), abs=0.006)
    held = float(re.search(r"held-out part \(([\d.]+)\)", verdict).group(1))
    assert held == pytest.approx(2.9 / math.log(2), abs=0.006)  # app_support's metrics.json: loss 2.9 nats
    dropped = [c for c in text if c not in served["char"].loaded.tokenizer.chars]
    assert f"{len(dropped)} piece(s) of your text are not in this model's vocabulary" in verdict
    assert all(repr(c) in verdict for c in set(dropped))
    assert "vocabulary" not in words.score_verdict(call(client, "char", "ROMEO:\nBut", api_name="/score"),
                                                   served["char"])


def test_about_this_model_gives_surprise_in_bits_and_the_loss_in_nats(served):
    from lstmgen.app import words

    card = words.model_card(served["char"])
    for key, figure in served["char"].loaded.metrics["final"].items():  # app_support's metrics.json
        assert f"| {figure['loss'] / math.log(2):.3f} | {figure['perplexity']:.2f} |" in card, key
        assert f"{figure['loss']:.4f}" in card
    assert "bits per character" in card and "nats per character" in card


@pytest.mark.parametrize("args, message", [
    (("char", "abc", 2, 1), "layer must be between 1 and 1, got 2"),
    (("char", "abc", 1, 0), "cell must be between 1 and 32, got 0"),
    (("char", "x" * 10_001, 1, 1), "the text is 10,001 characters; the limit is 10,000"),
    (("char", "", 1, 1), "give some text"),
    (("nope", "abc", 1, 1), "unknown model 'nope'"),
])
def test_cells_refuses_bad_input_clearly(client, args, message):
    with pytest.raises(Exception, match=message):
        call(client, *args, api_name="/cells")
