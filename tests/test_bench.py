"""The benchmark runs on a tiny model and writes a well-formed report (no timing is asserted)."""

import json

import bench.__main__ as bench
from lstmgen.engine.generate import generate_ids
from lstmgen.core.model import LSTMLanguageModel
from lstmgen.core.records import RECORDS
from lstmgen.core.sampling import SamplingConfig
from lstmgen.core.tokenizers import CharTokenizer


def test_benchmark_writes_json_markdown_and_chart(tmp_path):
    folder = tmp_path / "tiny"
    tokenizer = CharTokenizer.build(bench.long_prompt(RECORDS["char"]))
    LSTMLanguageModel(tokenizer.vocab_size, embed_size=8, hidden_size=16, num_layers=2).save_pretrained(folder)
    tokenizer.save(folder)

    out = tmp_path / "report"
    assert bench.main(["--models", "char", "--source", f"char={folder}", "--tokens", "20", "--repeats", "2",
                       "--threads", "1", "--val-limit", "0", "--no-app", "--no-training", "--out", str(out)]) == 0

    report = json.loads((out / "results.json").read_text())
    (model,) = report["models"]
    row = model["by_threads"]["1"]
    for path in ("float_default", "float_torch", "int8_torch", "float", "int8", "naive_refeed"):
        assert row[path]["n"] >= 1 and row[path]["min"] <= row[path]["median"] <= row[path]["max"]
        assert row[path]["median"] > 0
    assert set(row["ratios"]) == {"int8_over_float", "float_over_torch_float", "int8_over_torch_int8",
                                  "int8_over_torch_float", "stateful_over_naive"}
    assert 0 <= row["step_int8"]["outside_network_share"] < 1 and row["step_int8"]["network_us"] > 0
    assert row["side_by_side"]["plain_us"] > 0 and row["side_by_side"]["coupled_with_probabilities_us"] > 0
    floor = model["floor_1_thread"]["int8"]
    assert floor["bytes_per_step"] > 0 and floor["floor_us"] > 0 and floor["step_over_floor"] > 0
    assert 0 < model["size"]["int8_memory_mb"] < model["size"]["float32_memory_mb"]

    table = (out / "results.md").read_text()
    assert "| char | 1 |" in table and "int8 ÷ float" in table and "sampling + Python ÷ int8 step" in table
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_naive_generator_matches_stateful_generation():
    """The baseline is a fair one: same samples, only without carrying the state."""
    tokenizer = CharTokenizer.build("abcdef")
    model = LSTMLanguageModel(tokenizer.vocab_size, embed_size=8, hidden_size=16, num_layers=1).eval()
    config = SamplingConfig(temperature=1.0, length=15, seed=5)
    stateful = list(generate_ids(model, [0, 1], config))
    assert bench.naive_generate(model, [0, 1], config) == stateful


def test_ab_times_two_revisions_taking_turns(capsys):
    """bench.ab against this checkout's own HEAD: one row per part, both sides timed (no timing asserted)."""
    import bench.ab as ab

    assert ab.main(["--base", "HEAD", "--models", "char", "--threads", "1", "--rounds", "2", "--tokens", "5"]) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith("| char")]
    assert [row[2].strip() for row in rows] == list(ab.PARTS)
    for row in rows:
        base, this, ratio = (float(cell.split()[0]) for cell in row[3:])
        assert base > 0 and this > 0 and ratio > 0


def test_flood_measures_another_visitor_under_a_flood_and_writes_its_table(tmp_path):
    import bench.flood as flood
    from app_support import free_port

    out = tmp_path / "flood.md"
    flood.main(["--seconds", "3", "--requests", "4", "--rounds", "2", "--only", "cells", "--port", str(free_port()),
                "--out", str(out)])
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0] for row in rows] == ["| none (idle)", "| cells"]
    idle, cells = ([cell.strip() for cell in row.strip("|").split("|")] for row in rows)
    assert idle[3] == "1.00" and idle[4] == "0 of 2"  # the idle row is the baseline: its ratio is 1
    taken, refused = map(int, cells[5].split(" / "))
    assert taken + refused == 4 and taken >= 1  # one client holds its share (one at a time), the rest are refused
