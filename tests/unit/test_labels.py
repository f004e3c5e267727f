import pytest

from streams.labels import OTHER, activity_of, admit, fold_pairs, fold_single, outside


@pytest.mark.parametrize(
    ("members", "activity", "cap", "admitted"),
    [
        (set(), {"a": 5, "b": 9, "c": 1}, 2, ["b", "a"]),
        ({"c"}, {"a": 5, "b": 9, "c": 1}, 2, ["b"]),  # sticky: c keeps its place though least active
        ({"a", "b"}, {"a": 5, "b": 9, "c": 100}, 2, []),
        (set(), {"x": 1, "w": 1}, 5, ["w", "x"]),  # ties break by name, so replicas agree
        (set(), {}, 3, []),
    ],
)
def test_admit(members: set[str], activity: dict[str, int], cap: int, admitted: list[str]) -> None:
    assert admit(members, activity, cap) == admitted


def test_folding_keeps_sums_exact() -> None:
    values = {("a", "openai"): 3, ("b", "openai"): 4, ("c", "google"): 5, ("c", "openai"): 1}
    folded = fold_pairs(values, {"a"}, {"openai"})
    assert folded == {("a", "openai"): 3, (OTHER, "openai"): 5, (OTHER, OTHER): 5}
    assert sum(folded.values()) == sum(values.values())
    assert activity_of(values, 0) == {"a": 3, "b": 4, "c": 6}
    assert activity_of(values, 1) == {"openai": 8, "google": 5}
    assert fold_single({"a": 0.5, "b": 0.25, "c": 0.25}, {"a"}) == {"a": 0.5, OTHER: 0.5}
    assert outside(["a", "b", "c", "b"], {"a"}) == 2
