"""small_inputs_cache: what a stranger sends is remembered only when it is small."""

from __future__ import annotations

from jitaku.memo import small_inputs_cache


def test_small_inputs_are_remembered_and_large_ones_computed_each_time() -> None:
    calls: list[str] = []

    @small_inputs_cache(maxsize=8, max_chars=10)
    def upper(text: str, more: tuple[bytes, ...] = ()) -> str:
        calls.append(text)
        return text.upper()

    assert [upper("from"), upper("from")] == ["FROM", "FROM"]
    assert calls == ["from"]
    large = "x" * 11
    assert [upper(large), upper(large)] == [large.upper()] * 2
    assert calls == ["from", large, large]
    upper("ab", (b"x" * 9,))  # tuples count too
    upper("ab", (b"x" * 9,))
    assert calls[-2:] == ["ab", "ab"]
