"""The README's self-test learns its toy task: generation and captioning reproduce what was trained."""

from __future__ import annotations

from unif2ace.cli.main import main
from unif2ace.training.selftest import run_selftest


def test_selftest_learns_and_repeats_exactly():
    a = run_selftest(steps=150, seed=0)
    assert a.loss_last < 0.2 * a.loss_first
    assert a.t2i_token_accuracy >= 0.9
    assert a.caption_token_accuracy >= 0.9
    b = run_selftest(steps=150, seed=0)
    assert (a.loss_last, a.t2i_token_accuracy) == (b.loss_last, b.t2i_token_accuracy)  # seeded: repeats exactly


def test_selftest_cli_json(capsys):
    assert main(["selftest", "--steps", "150", "--json"]) == 0
    assert '"t2i_token_accuracy"' in capsys.readouterr().out
