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
