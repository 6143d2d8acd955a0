"""Docker's environment replacement rules (the Dockerfile reference's examples and the shell lexer's edge cases)."""
from __future__ import annotations

import pytest
from ctk_build.dockerfile.shell import Lexer, ShellError

ENV = {"FOO": "foo", "EMPTY": "", "SP": "a b", "PATH": "/usr/local/bin:/usr/bin:/bin", "FILE": "archive.tar.gz"}


def word(text, env=ENV, escape="\\"):
    return Lexer(escape).process_word(text, env)


def words(text, env=ENV, escape="\\"):
    return Lexer(escape).process_words(text, env)


@pytest.mark.parametrize("text,expected", [
    ("$FOO", "foo"),
    ("${FOO}", "foo"),
    ("${FOO}bar", "foobar"),
    ("$FOO-bar", "foo-bar"),
    ("$UNSET", ""),
    ("${UNSET:-default}", "default"),
    ("${EMPTY:-default}", "default"),
    ("${FOO:-default}", "foo"),
    ("${UNSET-default}", "default"),
    ("${EMPTY-default}", ""),
    ("${FOO:+alt}", "alt"),
    ("${EMPTY:+alt}", ""),
    ("${UNSET:+alt}", ""),
    ("${EMPTY+alt}", "alt"),
    ("${UNSET:-$FOO}", "foo"),
    ("${UNSET:-${UNSET2:-deep}}", "deep"),
    ("'$FOO'", "$FOO"),
    ('"$FOO"', "foo"),
    ('"${FOO} x"', "foo x"),
    ("\\$FOO", "$FOO"),
    ("\\${FOO}", "${FOO}"),
    ('"\\$FOO"', "$FOO"),
    ('"a\\"b"', 'a"b'),
    ('"a\\nb"', "a\\nb"),  # other escapes stay as written inside double quotes
    ("a\\ b", "a b"),
    ("$", "$"),
    ("a$", "a$"),
    ("$1", ""),
    ("${FILE%.gz}", "archive.tar"),
    ("${FILE%%.*}", "archive"),
    ("${FILE#*.}", "tar.gz"),
    ("${FILE##*.}", "gz"),
    ("${PATH/bin/sbin}", "/usr/local/sbin:/usr/bin:/bin"),
    ("${PATH//bin/sbin}", "/usr/local/sbin:/usr/sbin:/sbin"),
])
def test_substitution(text, expected):
    assert word(text) == expected


def test_backtick_escape():
    assert word("C:\\path`$FOO", escape="`") == "C:\\path$FOO"
    assert word("`${FOO}", escape="`") == "${FOO}"


def test_words_split_on_unquoted_expansions_only():
    assert words("a $SP 'c d'") == ["a", "a", "b", "c d"]
    assert words('"$SP"') == ["a b"]
    assert words("x '' y") == ["x", "", "y"]


@pytest.mark.parametrize("text,message", [
    ("'open", "single-quote"),
    ('"open', "double-quote"),
    ("${FOO", "missing '}'"),
    ("${}", "bad substitution"),
    ("${:-x}", "bad substitution"),
    ("${FOO:=x}", "unsupported modifier (=)"),
    ("${UNSET:?must be set}", "UNSET: must be set"),
    ("${EMPTY:?}", "EMPTY: is not allowed to be empty"),
    ("${UNSET?}", "UNSET: is not allowed to be unset"),
])
def test_errors(text, message):
    with pytest.raises(ShellError, match=message.replace("(", r"\(").replace(")", r"\)")):
        word(text)


def test_question_mark_passes_when_set():
    assert word("${FOO:?x}") == "foo" and word("${EMPTY?x}") == ""


# -- bounds (issue 12): a word's size, ${...} nesting, and the work of pattern removal ------------------------

def test_doubling_args_stop_at_the_word_cap_quickly():
    import time

    from ctk_build.dockerfile.shell import MAX_WORD

    env = {"A0": "xx"}
    t0 = time.monotonic()
    with pytest.raises(ShellError, match=f"longer than {MAX_WORD} characters"):
        for i in range(1, 31):
            env[f"A{i}"] = word(f"${{A{i - 1}}}${{A{i - 1}}}", env)
    assert time.monotonic() - t0 < 5
    assert max(len(v) for v in env.values()) <= MAX_WORD  # 2**30 characters without the cap
    assert len(word("$A19", env)) == 1 << 20  # exactly at the cap is fine


@pytest.mark.parametrize("text", [
    "$A$A$A",  # several expansions in one word
    '"$A$A$A"',  # inside double quotes
    "${A:+$A$A$A}",  # inside an operator's word
    "${A//x/$A}",  # a replacement that multiplies: counted before the result is made
])
def test_word_cap_holds_on_every_path(text):
    with pytest.raises(ShellError, match="longer than"):
        word(text, {"A": "x" * 400_000})


def test_words_split_is_capped_too():
    with pytest.raises(ShellError, match="longer than"):
        words("$A $A $A", {"A": "x y " * 100_000})


def test_deep_nesting_is_an_error_not_a_recursion_error():
    from ctk_build.dockerfile.shell import MAX_DEPTH

    assert word("${Y:-" * MAX_DEPTH + "deep" + "}" * MAX_DEPTH, {}) == "deep"
    for n in (MAX_DEPTH + 1, 5000):
        with pytest.raises(ShellError, match=f"nested deeper than {MAX_DEPTH} levels"):
            word("${Y:-" * n + "x" + "}" * n, {})
    with pytest.raises(ShellError, match="nested deeper"):
        word('"${Y:-' * 3000 + "x" + '}"' * 3000, {})


def test_pattern_removal_on_long_values_is_bounded():
    import time

    v = "a" * (1 << 20)
    t0 = time.monotonic()
    assert word("${V%.*}", {"V": v}) == v  # no "." anywhere: nothing to try
    assert word("${V%%*x}", {"V": v}) == v  # the value does not end with x
    assert word("${V#*a}", {"V": v}) == v[1:]
    assert word("${V##*a}", {"V": v}) == ""
    assert word("${V#??}", {"V": v}) == v[2:]
    with pytest.raises(ShellError, match="takes too much work"):
        word("${V##*b*}", {"V": v})  # every cut is a candidate, each costs its length
    assert time.monotonic() - t0 < 10


def test_pattern_replacement_on_long_values_is_bounded():
    import time

    v = "a" * (1 << 20)
    t0 = time.monotonic()
    assert word("${V//*b*/x}", {"V": v}) == v  # no b: nothing can match
    assert word("${V//a/}", {"V": v}) == ""  # no *: linear
    with pytest.raises(ShellError, match="takes too much work"):
        word("${V//*a*/x}", {"V": v})  # a * tried from every position
    assert word("${V//*a*/x}", {"V": "a" * 1000}) == "x"
    assert word("${P/*b/X}", {"P": "/usr/bin"}) == "Xin"
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("text,expected", [
    ("${P#*/}", "usr/local/bin/tool.tar.gz"),
    ("${P##*/}", "tool.tar.gz"),
    ("${P%.*}", "/usr/local/bin/tool.tar"),
    ("${P%%.*}", "/usr/local/bin/tool"),
    ("${P##*[/.]}", "/usr/local/bin/tool.tar.gz"),  # BuildKit's patterns have no [...] class: [ is itself
    ("${P#u*}", "/usr/local/bin/tool.tar.gz"),
    ("${P%*g}", "/usr/local/bin/tool.tar.gz"),
    ("${P%*z}", "/usr/local/bin/tool.tar.g"),
    ("${P%o*}", "/usr/local/bin/to"),
    ("${P%%o*}", "/usr/l"),
    ("${P#?}", "usr/local/bin/tool.tar.gz"),
])
def test_pattern_removal_keeps_shell_semantics(text, expected):
    assert word(text, {"P": "/usr/local/bin/tool.tar.gz"}) == expected
