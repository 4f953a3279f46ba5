"""The command line: defaults, --quick, --full, and what is refused."""

from __future__ import annotations

import pytest

from bench.options import parse_args


def test_the_defaults_are_the_headline_runs() -> None:
    options = parse_args(["--gateway-workers", "2"])

    assert (options.duration, options.warmup, options.soak) == (15, 3, 0)
    assert (options.threads, options.gateway_workers, options.quick) == (2, 2, False)


def test_quick_shortens_the_runs_and_full_adds_the_soak() -> None:
    quick = parse_args(["--quick"])
    full = parse_args(["--full", "--duration", "30"])

    assert (quick.duration, quick.warmup, quick.soak, quick.quick) == (3, 1, 0, True)
    assert (full.duration, full.soak) == (30, 120)


def test_only_selects_the_fair_use_runs() -> None:
    assert parse_args([]).only is None
    assert parse_args(["--only", "fair-use"]).only == "fair-use"


def test_only_refuses_an_unknown_part(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse_args(["--only", "soak"])

    assert stopped.value.code == 2
    assert "invalid choice: 'soak'" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--duration", "0"], ["--soak", "-1"], ["--threads", "0"]])
def test_impossible_values_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv)

    assert stopped.value.code == 2
    assert "at least 1" in capsys.readouterr().err
