"""The durability part of ``make bench`` (tests/bench/durability.py): its table and section, from fake results
(no processes, no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench import durability
from tests.bench import sizing as sizing_bench
from tests.bench.__main__ import parse_args

DEFAULT = durability.Result(None, p50=10.0, p99=20.0, fills_per_s=400.0, cpu_ms=4.0, sync_always=False)
ALWAYS = durability.Result("always", p50=12.5, p99=30.0, fills_per_s=300.0, cpu_ms=5.0, sync_always=True)
INFO = {
    "cpus": "2",
    "cpu": "Test CPU",
    "os": "Linux-test",
    "python": "3.11.7",
    "nats-py": "2.16.0",
    "nats-server": "v2.15.1",
    "load": "1.50 1.60 1.70",
}


def test_the_ratios_are_always_over_the_default() -> None:
    assert durability.ratios(ALWAYS, DEFAULT) == pytest.approx({"p50": 1.25, "p99": 1.5, "fills/s": 0.75, "CPU": 1.25})
    assert durability.ratios(DEFAULT, DEFAULT) == pytest.approx({"p50": 1, "p99": 1, "fills/s": 1, "CPU": 1})


def test_the_table_has_a_row_per_setting_with_its_figures_and_ratios() -> None:
    table = durability.markdown_table([DEFAULT, ALWAYS]).splitlines()
    assert table[0] == (
        "| setting | sequential p50 / p99 ms | throughput fills/s | CPU per order ms | ratio to default |"
    )
    assert len(table) == 4
    assert table[2].startswith("| default (nats-server's: fsync every 2 minutes) | 10.00 / 20.00 | 400 | 4.00 | 1 ")
    assert table[3] == "| `always` | 12.50 / 30.00 | 300 | 5.00 | p50 1.25x, p99 1.50x, fills/s 0.75x, CPU 1.25x |"
    text = durability.text_table([DEFAULT, ALWAYS])
    assert "12.50 / 30.00" in text and "fills/s 0.75x" in text


def test_the_section_names_the_machine_the_load_and_what_each_setting_can_lose() -> None:
    options = durability.Options(sequential=300, warmup=30, count=2000, concurrency=256)
    text = durability.section([DEFAULT, ALWAYS], options, INFO, "ext4 /dev/vda")
    assert text.startswith(durability.SECTION + "\n")
    assert "load average before the run 1.50 1.60 1.70" in text
    assert "2 CPUs (Test CPU)" in text and "nats-server v2.15.1" in text and "ext4 /dev/vda" in text
    assert "300 intents one at a time after 30" in text and "2000 intents, 256 publishes in flight" in text
    assert "sequential p50 1.25x and p99 1.50x the default's, 0.75x its fills/s, 1.25x its CPU" in text
    assert durability.markdown_table([DEFAULT, ALWAYS]) in text
    assert "every 2 minutes" in text and "fsyncs before every acknowledgement" in text and "replicas 3" in text


def test_the_section_replaces_its_own_in_benchmarks_md() -> None:
    options = durability.Options()
    old = durability.section([DEFAULT, ALWAYS], options, INFO, "ext4 /dev/vda")
    faster = durability.Result("always", p50=11.0, p99=22.0, fills_per_s=380.0, cpu_ms=4.4)
    new = durability.section([DEFAULT, faster], options, INFO, "ext4 /dev/vda")
    existing = "# Benchmarks\n\n## Sizing cost\n\nsizing\n\n" + old + "\n## Soak\n\nsoak\n"
    merged = sizing_bench.merge(existing, new)
    assert "11.00 / 22.00" in merged and "12.50 / 30.00" not in merged
    assert merged.count(durability.SECTION) == 1
    assert "## Sizing cost\n\nsizing" in merged and merged.endswith("## Soak\n\nsoak\n")


def test_the_store_filesystem_is_named(tmp_path: Path) -> None:
    fstype, device = durability.filesystem(tmp_path).split()  # "ext4 /dev/vda"; "unknown" has one word
    assert fstype and device


def test_make_bench_can_skip_it_and_size_it() -> None:
    args = parse_args(["--skip", "durability,sweep", "--durability-sequential", "50", "--durability-count", "100"])
    assert args.skip == {"durability", "sweep"}
    assert (args.durability_sequential, args.durability_count) == (50, 100)
    defaults = parse_args([])
    assert (defaults.durability_sequential, defaults.durability_count) == (300, 2000)
