"""A request shaped like a coding agent's first turn (Claude Code 2.1's, as measured).

``first_turn()`` returns an Anthropic Messages body of about 76 KB: a billing line as the
first system block (its suffix varies per conversation), a ~6 KB system prompt, 24 tool
definitions with long descriptions and JSON schemas, ``max_tokens`` 32000, one short
user message. The prose is English written for this file, cut from a bank of sentences
in a fixed pseudo-random order, so the same arguments give the same bytes.

Used by benchmarks/agent_prefill.py (and any benchmark that replays agent sessions).
"""

from __future__ import annotations

import json
import random
from typing import Any

TARGET_BYTES = 76_000
SYSTEM_BYTES = 6_000

SENTENCES = [
    "You are an interactive command line tool that helps users with software engineering tasks.",
    "Use the instructions below and the tools available to you to assist the user.",
    "Only make changes that the user asked for, and keep each change as small as it can be.",
    "Before editing a file, read it, so that the edit matches the code that is already there.",
    "When you run a command that changes the system, explain what it does and why it is needed.",
    "Prefer the dedicated search tools over running grep or find in a shell.",
    "If a command fails, read the error output carefully before trying something else.",
    "Never commit changes unless the user explicitly asks you to do so.",
    "Keep your answers short: a few lines of text, unless the user asks for more detail.",
    "Reference code with the pattern file_path:line_number so the user can jump to it.",
    "The working directory is kept between calls, but shell variables are not.",
    "Quote any path that contains spaces with double quotes.",
    "Long running commands may time out after two minutes unless a longer timeout is given.",
    "Results longer than thirty thousand characters are truncated before they are returned.",
    "Use absolute paths for every file argument; relative paths are rejected.",
    "When several independent calls are needed, make them in parallel in a single message.",
    "The pattern supports full regular expression syntax, including character classes.",
    "Filter files with the glob parameter, for example *.js or **/*.tsx.",
    "Output modes are content, files_with_matches and count; the default lists file paths.",
    "Track progress with the todo list and mark each item done as soon as it is finished.",
    "Do not create documentation files unless the user asked for them by name.",
    "Tests should be run after a change, using the command the project itself documents.",
    "If you are unsure about the intent of a request, ask a short clarifying question.",
    "Respect the existing code style: naming, formatting, imports and error handling.",
    "A subagent can search a large code base on its own and report back a summary.",
    "Fetched web pages are converted to markdown and may be summarised if they are large.",
    "The notebook cell is replaced in place; use the insert mode to add a new cell.",
    "Edits fail when the old string is not unique in the file; give more context then.",
    "Line numbers in the output start at one and are followed by a tab character.",
    "Images and PDF files can be read too; their content is shown to you visually.",
    "Return an error to the user when a required argument is missing or malformed.",
    "Leave the repository in a clean state, with no temporary files left behind.",
]

TOOL_NAMES = [
    "Bash", "Read", "Write", "Edit", "MultiEdit", "Glob", "Grep", "LS", "Task", "TodoWrite",
    "WebFetch", "WebSearch", "NotebookRead", "NotebookEdit", "ExitPlanMode", "BashOutput",
    "KillShell", "SlashCommand", "AskUserQuestion", "Skill", "ListMcpResources",
    "ReadMcpResource", "EnterPlanMode", "TaskOutput",
]

PROPERTIES = [
    ("command", "string", "The command to execute"),
    ("file_path", "string", "The absolute path to the file to work on"),
    ("pattern", "string", "The regular expression pattern to search for in file contents"),
    ("path", "string", "The directory to search in; defaults to the working directory"),
    ("timeout", "number", "Optional timeout in milliseconds (at most 600000)"),
    ("description", "string", "A clear, concise description of what this call does, in 5-10 words"),
    ("old_string", "string", "The text to replace"),
    ("new_string", "string", "The text to replace it with (must differ from old_string)"),
    ("limit", "integer", "The number of lines to read; only give it for very large files"),
    ("offset", "integer", "The line number to start reading from"),
    ("url", "string", "The URL to fetch content from"),
    ("prompt", "string", "The prompt to run on the fetched content"),
]


def _prose(rng: random.Random, size: int) -> str:
    out: list[str] = []
    n = 0
    while n < size:
        s = rng.choice(SENTENCES)
        out.append(s)
        n += len(s) + 1
    return " ".join(out)


def _tool(rng: random.Random, name: str, size: int) -> dict[str, Any]:
    props = rng.sample(PROPERTIES, 4)
    return {
        "name": name,
        "description": _prose(rng, size),
        "input_schema": {
            "type": "object",
            "properties": {p: {"type": t, "description": d} for p, t, d in props},
            "required": [props[0][0]],
            "additionalProperties": False,
            "$schema": "http://json-schema.org/draft-07/schema#",
        },
    }


def first_turn(conversation: str = "123", *, seed: int = 0, user: str = "What does this repository do?",
               target_bytes: int = TARGET_BYTES) -> dict[str, Any]:
    """The body of an agent's first request; ``conversation`` varies the billing line only."""
    rng = random.Random(seed)
    system = [
        {"type": "text", "text": f"x-anthropic-billing-header: cc_version=2.1.197.{conversation}; "
                                 "cc_entrypoint=sdk-cli;"},
        {"type": "text", "text": _prose(rng, SYSTEM_BYTES)},
    ]
    body: dict[str, Any] = {
        "model": "standard", "max_tokens": 32000, "stream": True, "system": system,
        "messages": [{"role": "user", "content": [{"type": "text", "text": user}]}],
        "tools": [],
    }
    schemas = [_tool(random.Random(seed), name, 0) for name in TOOL_NAMES]
    left = target_bytes - len(json.dumps(body)) - len(json.dumps(schemas))
    body["tools"] = [_tool(rng, name, left // len(TOOL_NAMES)) for name in TOOL_NAMES]
    return body
