"""Dockerfile reading where BuildKit's parser and lexer define the behaviour (tables built from its documented
behaviour and its parser's tests): continuations, heredoc spellings, JSON arrays, ``${V/p/r}`` and escaped
pattern characters, and ``.dockerignore`` patterns Go's ``filepath.Match`` rejects."""
from __future__ import annotations

import pytest
from ctk_build.dockerfile import DockerfileError, parse, plan
from ctk_build.dockerfile.shell import Lexer, ShellError
from ctk_build.dockerignore import IgnoreMatcher
from ctk_shared.errors import InvalidArgument


def test_doubled_escape_at_line_end_ends_the_instruction():
    df = parse("FROM x\nENV C trailing\\\\backslash\\\\\nRUN echo hi\n")
    assert [n.keyword for n in df.nodes] == ["from", "env", "run"]
    assert df.nodes[1].rest == "C trailing\\\\backslash\\\\"


def test_single_escape_still_continues_and_backtick_doubles_too():
    df = parse("FROM x\nRUN a \\\n  b\n")
    assert df.nodes[1].rest == "a   b"
    df = parse("# escape=`\nFROM x\nRUN a ``\nRUN b `\n c\n")
    assert [n.rest for n in df.nodes[1:]] == ["a ``", "b  c"]


@pytest.mark.parametrize("line,name,chomp,expand", [
    ("RUN <<EOF", "EOF", False, True),
    ("RUN << EOF", "EOF", False, True),
    ("RUN <<  EOF  > /out", "EOF", False, True),
    ("RUN <<-EOF", "EOF", True, True),
    ("RUN <<- EOF", "EOF", True, True),
    ("RUN << -EOF", "-EOF", False, True),
    ('RUN <<"EOF"', "EOF", False, False),
    ("RUN <<'EOF'", "EOF", False, False),
    ("RUN <<$EOF", "$EOF", False, True),
    ("RUN 3<<EOF cat", "EOF", False, True),
    ("COPY << EOF /dst", "EOF", False, True),
])
def test_heredoc_spellings(line, name, chomp, expand):
    body = "\techo $HOME\n"
    df = parse(f"FROM x\n{line}\n{body}{chr(9) if chomp else ''}{name}\nRUN after\n")
    node = df.nodes[1]
    assert [(d.name, d.chomp, d.expand) for d in node.heredocs] == [(name, chomp, expand)]
    assert node.heredocs[0].content == body
    assert [n.keyword for n in df.nodes] == ["from", node.keyword, "run"]


def test_several_heredocs_and_marker_not_expanded():
    df = parse("ARG EOF=x\nFROM x\nRUN <<A << B cat\n1\nA\n2\nB\nRUN <<$EOF\n$EOF\n")
    assert [d.name for d in df.nodes[2].heredocs] == ["A", "B"]
    assert [d.content for d in df.nodes[2].heredocs] == ["1\n", "2\n"]
    assert df.nodes[3].heredocs[0].name == "$EOF"


def test_single_spaced_heredoc_runs_as_its_body():
    from ctk_build.runsteps import _run_args

    class _SC:
        shell = ["/bin/sh", "-c"]

    ins = plan(parse("FROM x\nRUN << EOF\necho hi\nEOF\n")).stages[0].instructions[0]
    assert _run_args(_SC(), ins) == (["/bin/sh", "-c", "echo hi\n"], {})


def test_heredoc_in_json_form_is_text():
    df = parse('FROM x\nRUN ["sh", "-c", "cat <<EOF"]\nRUN true\n')
    assert df.nodes[1].heredocs == () and len(df.nodes) == 3


@pytest.mark.parametrize("line", [
    'CMD ["a", 42]', 'RUN ["a", null]', 'ENTRYPOINT [["a"]]', 'SHELL ["sh", true]', 'COPY ["a", 1, "/b"]',
    'VOLUME [1]', 'HEALTHCHECK --interval=5s CMD ["a", 1]', 'ONBUILD RUN ["a", {}]',
])
def test_json_array_with_a_non_string_is_an_error(line):
    with pytest.raises(DockerfileError, match=r"Dockerfile:2: when using JSON array syntax, arrays must be "
                       r"comprised of strings only"):
        parse(f"FROM x\n{line}\n")


def test_json_like_text_that_is_not_json_stays_shell_form():
    ins = plan(parse('FROM x\nRUN [ -f a ] && b\nLABEL a=[1]\n')).stages[0].instructions
    assert ins[0].exec_form is None and ins[0].shell_form == "[ -f a ] && b"


ENV = {"FOO": "/tmp/foo.txt", "NEEDLE": "\\*/", "STARS": "/foo*/*/*.txt", "R": "/", "EMPTY": "",
       "XX": "xx**", "A": "a***yy*", "Q": "???y"}


@pytest.mark.parametrize("text,expected", [
    ("${STARS/$NEEDLE/.}", "/foo.*/*.txt"),  # a variable in the pattern; its \* is a literal star
    ("${STARS//$NEEDLE/.}", "/foo..*.txt"),
    ("${FOO/\\/tmp/$R}", "//foo.txt"),  # a variable in the replacement, \/ in the pattern
    ("${FOO//\\//\\/}", "\\/tmp\\/foo.txt"),  # BuildKit keeps the replacement's escapes as written
    ("${FOO/$EMPTY/x}", "x/tmp/foo.txt"),  # an empty pattern matches at the start
    ("${FOO/*./}", "txt"),
    ("${FOO/'*'/x}", "x"),  # quotes are removed before matching (BuildKit): the star is a wildcard
    ("${XX%%\\**}", "xx"),  # \* is a literal star, the second * the wildcard
    ("${A%%\\**\\*}", "a"),
    ("${Q#?\\?}", "?y"),
    ("${XX%\\*}", "xx*"),
    ("${XX#x*}", "x**"),
    ("${FOO%[.]txt}", "/tmp/foo.txt"),  # no bracket classes: [ is itself
])
def test_patterns_and_replacements(text, expected):
    assert Lexer().process_word(text, ENV) == expected


@pytest.mark.parametrize("text,message", [
    ("${FOO//x}", "missing '/'"),
    ("${FOO/x}", "missing '/'"),
    ("${FOO%\\x}", "invalid escape"),
    ("${FOO/\\q/x}", "invalid escape"),
])
def test_pattern_errors(text, message):
    with pytest.raises(ShellError, match=message):
        Lexer().process_word(text, ENV)


@pytest.mark.parametrize("pattern", ["[", "a[", "\\", "[a-b-c]", "!", "[]", "[^]", "x/[a", "[a-]"])
def test_dockerignore_patterns_go_rejects_are_errors(pattern):
    with pytest.raises(InvalidArgument, match=r"^\.dockerignore:2: "):
        IgnoreMatcher.from_text(f"ok\n{pattern}\n")


@pytest.mark.parametrize("pattern,path,excluded", [
    ("[\\]]x", "]x", True),  # an escaped ] inside a class
    ("[\\*]x", "*x", True),
    ("[\\*]x", "ax", False),  # not a wildcard
    ("[a\\-z]", "-", True),  # an escaped - is a character, not a range
    ("[a\\-z]", "b", False),
    ("[\\d]", "d", True),  # \d is d, not a digit class
    ("[\\d]", "1", False),
    ("[!a]x", "!x", True),  # ! is an ordinary character in Go
    ("[^a]x", "bx", True),
    ("[z-a]", "b", False),  # a reversed range matches nothing (and is no error)
])
def test_dockerignore_classes_as_go(pattern, path, excluded):
    assert IgnoreMatcher.from_text(pattern).excluded(path) is excluded


def test_copy_heredoc_with_a_blank_after_the_operator_is_one_source():
    c = plan(parse("FROM x\nCOPY << EOF <<- E2 /dst/\nhello\nEOF\n\tx\n\tE2\n")).stages[0].instructions[0]
    assert c.sources == ("<<EOF", "<<-E2") and c.dest == "/dst/"
    assert [d.name for d in c.heredocs] == ["EOF", "E2"]
