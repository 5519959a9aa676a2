"""The benchmark command: its JSON keys, consistent numbers, and the CLI's checks."""

import json
import math

from typer.testing import CliRunner

from flyvis_study.bench import format_benchmark, run_benchmark
from flyvis_study.cli import app


def test_benchmark_reports_every_number(tiny_dataset, dataset_root):
    r = run_benchmark("tiny", "cpu", fast_iters=3, naive_iters=1, sim_frames=50, cache=str(dataset_root))
    for key in ("sim_frames_per_s", "fast_ms_per_iter", "naive_ms_per_iter", "eval_s", "peak_rss_gb"):
        assert math.isfinite(r[key]) and r[key] > 0, key
    assert r["device"].endswith("threads)") and r["device_type"] == "cpu"
    assert r["provenance"]["torch_version"] == r["torch"] and r["provenance"]["device"] == "cpu"
    assert r["naive_ms_per_iter"] > r["fast_ms_per_iter"]  # the per-edge step does ~E/N x the MLP rows
    assert (r["n_neurons"], r["n_edges"]) == (tiny_dataset.connectome.n_neurons, tiny_dataset.connectome.n_edges)
    text = format_benchmark(r)
    assert f"{r['speedup_fast_vs_naive']:.1f}x fast vs naive" in text and f"{r['eval_s']:.1f} s" in text


def test_bench_cli_json_and_bad_options(tiny_dataset, dataset_root):
    runner = CliRunner()
    out = runner.invoke(app, ["bench", "--preset", "tiny", "--json", "--no-eval", "--fast-iters", "2",
                              "--naive-iters", "1", "--cache", str(dataset_root)])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output.strip().splitlines()[-1])
    assert {"device", "sim_frames_per_s", "fast_ms_per_iter", "naive_ms_per_iter", "peak_rss_gb"} <= set(result)
    assert "eval_s" not in result
    bad = runner.invoke(app, ["bench", "--preset", "huge"])
    assert bad.exit_code != 0 and "--preset 'huge'" in bad.output and "tiny" in bad.output
    bad = runner.invoke(app, ["bench", "--device", "tpu"])
    assert bad.exit_code != 0 and "allowed: cpu, cuda" in bad.output


def test_cpu_steps_are_timed_in_alternating_blocks():
    """fast and naive alternate (3 + 1 warm-up steps, then naive_iters rounds of
    ceil(fast_iters / naive_iters) fast steps and one naive step), so that the ratio is taken
    over the same stretch of machine time."""
    from flyvis_study.bench import _interleaved_cpu_ms

    calls = []
    fast_ms, naive_ms = _interleaved_cpu_ms(lambda b: calls.append(("fast", b)), lambda b: calls.append(("naive", b)),
                                            list(range(100)), fast_iters=5, naive_iters=2)
    kinds = "".join(k[0] for k, _ in calls)
    assert kinds == "fffn" + "fffn" + "fffn"
    assert [b for _, b in calls] == list(range(12))  # every step gets the next batch
    assert fast_ms < 1.0 and naive_ms < 1.0  # medians of the timed steps in ms (empty lambdas)


def test_bench_replicates_times_a_stack_against_one_run(tiny_dataset, dataset_root):
    runner = CliRunner()
    out = runner.invoke(app, ["bench", "--preset", "tiny", "--json", "--no-eval", "--fast-iters", "3",
                              "--naive-iters", "1", "--replicates", "3", "--cache", str(dataset_root)])
    assert out.exit_code == 0, out.output
    r = json.loads(out.output.strip().splitlines()[-1])
    assert r["replicates"] == 3
    for key in ("single_ms_per_iter", "stacked_ms_per_iter", "stacked_ms_per_run_iter", "stacked_vs_single"):
        assert math.isfinite(r[key]) and r[key] > 0, key
    assert r["stacked_ms_per_run_iter"] == r["stacked_ms_per_iter"] / 3
    assert r["stacked_vs_single"] == r["stacked_ms_per_run_iter"] / r["single_ms_per_iter"]
    text = format_benchmark({**r, "eval_s": 1.0})
    assert "stack of 3" in text and f"{r['stacked_vs_single']:.2f}x per run" in text
    bad = runner.invoke(app, ["bench", "--preset", "tiny", "--replicates", "0"])
    assert bad.exit_code != 0 and "--replicates 0: allowed: an integer >= 1" in bad.output
    assert "Traceback" not in bad.output


def test_single_and_stacked_steps_are_timed_in_alternating_blocks():
    """Blocks of 10 + 1 steps of each kind in turn; the first step of each block is not timed."""
    from flyvis_study.bench import _alternating_blocks_ms

    calls = []
    one, st = _alternating_blocks_ms(lambda b: calls.append("single"), lambda b: calls.append("stacked"),
                                     [0, 1], [[0], [1]], n_iters=15)
    assert calls == (["single"] * 11 + ["stacked"] * 11) * 2
    assert one > 0 and st > 0
