"""How PostgreSQL's search sizes its id windows (``storage.search_pg.next_span``): a pure function of what the
windows so far saw, so it is checked here without a server; the answers it leads to are checked against the
rule on both backends by tests/test_search_matching.py."""

from __future__ import annotations

from storage.search_pg import WINDOW_GROWTH, WINDOW_MATCH_BUDGET, next_span


def test_no_match_yet_reads_up_to_the_budget_at_once() -> None:
    # 2,000 ids, no match: the smoothed density is one per 2,000 ids, so the budget spans 4,000,000 ids
    # (the rest of any table here): a rare keyword is read to the end in one more window.
    assert next_span(2000, 2000, 0, 0, 20) == WINDOW_MATCH_BUDGET * 2000


def test_a_common_term_gets_the_span_its_density_and_share_ask_for() -> None:
    # 60 matches in 2,000 ids, 6 of them the user's (a tenth), 14 answers still wanted: about
    # 4 * 14 / (7/62) = 496 matches, at 2000/61 ids each: ~16,000 ids, not the whole table.
    span = next_span(2000, 2000, 60, 6, 14)
    assert 15_000 < span < 17_000


def test_never_narrower_than_the_last_window() -> None:
    assert next_span(50_000, 60_000, 600, 19, 1) == 50_000


def test_a_user_holding_few_of_a_common_terms_matches_still_grows_the_windows() -> None:
    # 1,500 matches in 5,000 ids, none the user's: reading enough to expect the page would be far over the
    # budget, so the window reads about the budget but still grows 4 times.
    assert next_span(5000, 5000, 1500, 0, 20) == 5000 * WINDOW_GROWTH
