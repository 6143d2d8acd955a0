"""Dockerfile parsing: directives, continuations, comments, heredocs, forms, errors with file:line."""
from __future__ import annotations

import pytest
from ctk_build.dockerfile import DockerfileError, parse, plan
from ctk_build.dockerfile.instructions import Command, Copy, From, KeyValues, Words

SEED = """\
# Copyright 2020 The KubeSphere Authors. All rights reserved.
# Use of this source code is governed by an Apache license
# that can be found in the LICENSE file.
FROM alpine:3.11
ARG HELM_VERSION=v3.5.2
RUN apk add --no-cache ca-certificates
# install helm
RUN wget https://get.helm.sh/helm-${HELM_VERSION}-linux-amd64.tar.gz && \\
tar xvf helm-${HELM_VERSION}-linux-amd64.tar.gz && \\
rm helm-${HELM_VERSION}-linux-amd64.tar.gz && \\
mv linux-amd64/helm /usr/bin/ && \\
rm -rf linux-amd64
# To speed up building process, we copy binary directly from make
#
COPY ks-apiserver /usr/local/bin/
EXPOSE 9090
CMD ["sh"]
"""


def test_seed_dockerfile():
    df = parse(SEED)
    assert [n.keyword for n in df.nodes] == ["from", "arg", "run", "run", "copy", "expose", "cmd"]
    run = df.nodes[3]
    assert run.line == 8 and run.end_line == 12
    assert run.rest == ("wget https://get.helm.sh/helm-${HELM_VERSION}-linux-amd64.tar.gz && "
                        "tar xvf helm-${HELM_VERSION}-linux-amd64.tar.gz && "
                        "rm helm-${HELM_VERSION}-linux-amd64.tar.gz && mv linux-amd64/helm /usr/bin/ && "
                        "rm -rf linux-amd64")
    p = plan(df)
    assert len(p.stages) == 1 and p.stages[0].from_.image == "alpine:3.11"
    cmd = p.stages[0].instructions[-1]
    assert isinstance(cmd, Command) and cmd.exec_form == ("sh",)
    copy = p.stages[0].instructions[3]
    assert isinstance(copy, Copy) and copy.sources == ("ks-apiserver",) and copy.dest == "/usr/local/bin/"


def test_continuation_skips_comments_and_blank_lines_and_keeps_spacing():
    df = parse("RUN echo a \\\n# a comment\n\n    && echo b \\  \n  c\n")
    assert len(df.nodes) == 1
    assert df.nodes[0].rest == "echo a     && echo b   c"


def test_escape_directive_backtick():
    df = parse("# escape=`\nFROM x\nRUN dir c:\\ `\n  /w\n")
    assert df.escape == "`" and df.directives == {"escape": "`"}
    assert df.nodes[1].rest == "dir c:\\   /w"


def test_directives_only_at_top():
    df = parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM x\n")
    assert df.directives == {"syntax": "docker/dockerfile:1", "escape": "`"}
    # after a comment, an unknown directive or a blank line, directives are plain comments
    assert parse("# hello\n# escape=`\nFROM x\n").escape == "\\"
    assert parse("# unknown=1\n# escape=`\nFROM x\n").escape == "\\"
    assert parse("\n# escape=`\nFROM x\n").escape == "\\"
    assert parse("FROM x\n# escape=`\nRUN a\n").escape == "\\"


def test_directive_errors():
    with pytest.raises(DockerfileError, match=r"Dockerfile:2: only one escape parser directive"):
        parse("# escape=`\n# escape=\\\nFROM x\n")
    with pytest.raises(DockerfileError, match=r"Dockerfile:1: invalid escape token"):
        parse("# escape=x\nFROM x\n")


def test_heredocs():
    df = parse("FROM x\nRUN <<EOF\necho hi\n  echo there\nEOF\nCOPY <<-A <<'B' /dst/\n\tone\n\tA\ntwo $X\nB\n"
               "RUN cat <<EOF > /f\nEOF\n")
    run, copy, last = df.nodes[1], df.nodes[2], df.nodes[3]
    assert run.heredocs[0].name == "EOF" and run.heredocs[0].content == "echo hi\n  echo there\n"
    assert run.heredocs[0].expand and run.end_line == 5
    a, b = copy.heredocs
    assert (a.name, a.chomp, a.body) == ("A", True, "one\n")
    assert (b.name, b.expand, b.content) == ("B", False, "two $X\n")
    assert last.heredocs[0].content == "" and last.line == 11


def test_unterminated_heredoc():
    with pytest.raises(DockerfileError, match=r"Dockerfile:2: unterminated heredoc 'EOF'"):
        parse("FROM x\nRUN <<EOF\necho\n")


def test_heredoc_marker_in_quotes_is_text():
    df = parse("FROM x\nRUN echo '<<EOF'\nRUN true\n")
    assert df.nodes[1].heredocs == () and len(df.nodes) == 3


def test_json_and_shell_forms():
    p = plan(parse('FROM x\nRUN ["echo", "a b"]\nRUN [not json\nCMD echo $HOME\n'))
    ins = p.stages[0].instructions
    assert ins[0].exec_form == ("echo", "a b")
    assert ins[1].exec_form is None and ins[1].shell_form == "[not json"
    assert ins[2].shell_form == "echo $HOME"


def test_flags():
    p = plan(parse("FROM --platform=linux/amd64 x AS Build\nCOPY --from=build --chown=1:2 --chmod=755 a b\n"
                   "COPY --link a b\n"))
    st = p.stages[0]
    assert st.name == "build" and st.from_.flags == {"platform": "linux/amd64"}
    assert st.instructions[0].flags == {"from": "build", "chown": "1:2", "chmod": "755"}
    assert st.instructions[1].flags == {"link": True}


@pytest.mark.parametrize("text,message", [
    ("FROM x\nFOOBAR baz\n", r"Dockerfile:2: unknown instruction: FOOBAR: FOOBAR baz"),
    ("RUN x\nFROM y\n", r"Dockerfile:1: RUN before the first FROM"),
    ("FROM a b\n", r"Dockerfile:1: FROM requires either one or three arguments"),
    ("FROM a AS 1x\n", r"invalid name for build stage"),
    ("FROM a AS x\nFROM b AS x\n", r"Dockerfile:2: duplicate stage name"),
    ("FROM x\nCOPY a\n", r"Dockerfile:2: COPY requires at least two arguments"),
    ("FROM x\nCOPY --bogus=1 a b\n", r"unknown flag: --bogus"),
    ("FROM x\nCOPY --from a b c\n", r"missing a value on flag --from"),
    ("FROM x\nENV A=1 B\n", r"can't find = in 'B'"),
    ("FROM x\nENV A\n", r"ENV must have two arguments"),
    ("FROM x\nENV =1\n", r"ENV names can not be blank"),
    ("FROM x\nSHELL sh -c\n", r"SHELL requires the arguments to be in JSON form"),
    ("FROM x\nUSER a b\n", r"USER requires exactly one argument"),
    ("FROM x\nONBUILD FROM y\n", r"isn't allowed as an ONBUILD trigger"),
    ("# only a comment\n", r"no instructions"),
    ("FROM x\nRUN\n", r"Dockerfile:2: RUN requires at least one argument"),
])
def test_errors_name_file_line_and_text(text, message):
    with pytest.raises(DockerfileError, match=message):
        plan(parse(text))


def test_env_forms():
    p = plan(parse('FROM x\nENV A=1 B="two words" C=\\$x\nENV OLD value with  spaces\nLABEL "a b"=c\n'))
    env1, env2, label = p.stages[0].instructions
    assert isinstance(env1, KeyValues)
    assert env1.pairs == (("A", "1"), ("B", '"two words"'), ("C", "\\$x"))
    assert env2.pairs == (("OLD", "value with  spaces"),)
    assert label.pairs == (('"a b"', "c"),)


def test_meta_args_and_stages():
    p = plan(parse("ARG BASE=alpine\nARG V\nFROM ${BASE} AS one\nRUN a\nFROM one\nWORKDIR /x\n"))
    assert [a.pairs for a in p.meta_args] == [(("BASE", "alpine"),), (("V", None),)]
    assert [s.label() for s in p.stages] == ["one", "stage-1"]
    assert p.stage("one") is p.stages[0] and p.stage("1") is p.stages[1]
    assert isinstance(p.stages[1].instructions[0], Words)
    assert isinstance(p.stages[0].from_, From)


def test_bom_and_crlf():
    df = parse("\ufeffFROM x\r\nRUN a \\\r\n  b\r\n")
    assert [n.keyword for n in df.nodes] == ["from", "run"] and df.nodes[1].rest == "a   b"
