"""The Dockerfile language: parser (lines, directives, heredocs), word processing, typed instructions."""
from __future__ import annotations

from .instructions import BuildPlan, Stage, plan
from .parser import Dockerfile, DockerfileError, parse

__all__ = ["BuildPlan", "Dockerfile", "DockerfileError", "Stage", "parse", "plan"]
