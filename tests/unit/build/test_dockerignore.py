""".dockerignore matching as Docker does it: cleaning, parents, **, exceptions, last match wins."""
from __future__ import annotations

import pytest
from ctk_build.dockerignore import IgnoreMatcher, read_patterns


def m(text):
    return IgnoreMatcher.from_text(text)


def test_read_patterns_cleans_and_skips_comments():
    assert read_patterns("# c\n\n  ./a//b/  \n/root.txt\n! keep \n#!x\n") == ["a/b", "root.txt", "!keep"]


@pytest.mark.parametrize("patterns,path,excluded", [
    ("*.log", "a.log", True),
    ("*.log", "dir/a.log", False),  # * does not cross /
    ("*/*.log", "dir/a.log", True),
    ("**/*.log", "a/b/c.log", True),
    ("**/*.log", "c.log", True),
    ("dir", "dir/sub/file", True),  # a parent match excludes the children
    ("dir/**", "dir/sub/file", True),
    ("a/**/z", "a/z", True),
    ("a/**/z", "a/b/c/z", True),
    ("te?t", "test", True),
    ("te?t", "tet", False),
    ("[a-c]x", "bx", True),
    ("[!a-c]x", "bx", True),  # Go: "!" is an ordinary class character, "^" negates
    ("[^a-c]x", "bx", False),
    ("\\*star", "*star", True),
    ("secret\n!secret/keep", "secret/keep", False),
    ("secret\n!secret/keep", "secret/other", True),
    ("!a\na", "a", True),  # last match wins
    ("*.md\n!README.md\nREADME.md", "README.md", True),
    ("/abs.txt", "abs.txt", True),
])
def test_matching(patterns, path, excluded):
    assert m(patterns).excluded(path) is excluded


def test_walk_enters_excluded_dir_only_for_exceptions():
    assert m("secret\n!secret/keep").may_include_below("secret")
    assert not m("secret\n").may_include_below("secret")
