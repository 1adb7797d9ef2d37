"""A customer run's key names one claim, and reads back as the attempt it was made for."""

from __future__ import annotations

import pytest

from render_assets.domain.run_keys import RunKey
from render_assets.orchestration.run_identity import RUN_KEY_TAG, RunIdentity


def test_a_run_key_reads_back_as_the_claim_it_names() -> None:
    first = RunKey("render-1", "42", attempts_made=0)
    redelivered = RunKey("render-1", "42", attempts_made=1, redeliveries=2)

    assert (str(first), str(redelivered)) == ("render-1:42:0", "render-1:42:1.r2")
    assert RunKey.parse(str(first)) == first and RunKey.parse(str(redelivered)) == redelivered
    assert (first.attempt, redelivered.attempt) == (1, 2)


def test_a_job_id_with_colons_still_parses_from_the_right() -> None:
    key = RunKey("render-1", "render:render-1", attempts_made=3)

    assert RunKey.parse(str(key)) == key


@pytest.mark.parametrize("text", ["", "render-1", "render-1:42", "render-1:42:x", "render-1:42:1.r", ":42:0", "r::0"])
def test_text_that_is_no_run_key_parses_to_none(text: str) -> None:
    assert RunKey.parse(text) is None


def test_a_customer_runs_attempt_comes_from_its_run_key() -> None:
    customer = RunIdentity.of_tags({"dagster/partition": "render-1", RUN_KEY_TAG: "render-1:42:1.r1"})
    odd = RunIdentity.of_tags({"dagster/partition": "render-1", RUN_KEY_TAG: "not-a-key"})

    assert (customer.is_operator_run, customer.attempt) == (False, 2)
    assert (odd.is_operator_run, odd.attempt) == (False, None)
