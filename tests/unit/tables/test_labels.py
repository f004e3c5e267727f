import pytest

from tables.labels import OTHER, cap_amounts, cap_pairs


def test_capped_pairs_keep_the_family_total_exact() -> None:
    # Orgs a and b are labelled, c is not; provider openai is labelled, google is not.
    per_org = {"a": {"openai": 3, "google": 2}, "b": {"openai": 4}}
    totals = {"openai": 10}  # 3 from a, 4 from b, 3 from c
    folded = cap_pairs(per_org, totals, grand_total=16, allowed_second={"openai"})
    assert folded == {("a", "openai"): 3, ("a", OTHER): 2, ("b", "openai"): 4, (OTHER, "openai"): 3, (OTHER, OTHER): 4}
    assert sum(folded.values()) == 16


def test_capped_pairs_with_everything_labelled_have_no_other() -> None:
    per_org = {"a": {"openai": 3}, "b": {"google": 1}}
    folded = cap_pairs(per_org, {"openai": 3, "google": 1}, 4, {"openai", "google"})
    assert folded == {("a", "openai"): 3, ("b", "google"): 1}


@pytest.mark.parametrize(
    ("labelled", "total", "expected"),
    [
        ({"a": 5}, 5, {"a": 5, OTHER: 0}),
        ({"a": 5}, 8, {"a": 5, OTHER: 3}),
        ({}, 2, {OTHER: 2}),
        # Right after midnight: no labelled value yet, and "__other__" is there at 0, so sum() reads 0.
        ({}, 0, {OTHER: 0}),
    ],
)
def test_capped_amounts(labelled: dict[str, int], total: int, expected: dict[str, int]) -> None:
    assert cap_amounts(labelled, total) == expected
