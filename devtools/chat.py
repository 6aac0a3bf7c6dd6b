"""A terminal chat with the HTTP API (the local host or a deployed app), printing replies as they stream.

    python -m devtools.chat [--url http://127.0.0.1:7071] [--session ID] [--key FUNCTION_KEY] [--user USER_ID]

Type a message and press Enter. Commands: ``/new`` (a new session), ``/history`` (the stored
messages), ``/quit`` (or end of input). Without ``--session`` the server chooses a new session id.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any, TextIO

import httpx

HELP = "Commands: /new, /history, /quit"


class ChatClient:
    """The few calls the terminal needs, on one HTTP connection pool."""

    def __init__(self, url: str, *, key: str | None = None, user: str | None = None) -> None:
        headers = {"x-functions-key": key} if key else {}
        if user:
            headers["x-user-id"] = user
        base = url.rstrip("/")
        base = base if base.endswith("/api") else base + "/api"
        # Replies may take a while between deltas: no read timeout while a stream is open.
        self.http = httpx.Client(base_url=base, headers=headers, timeout=httpx.Timeout(30.0, read=None))

    def close(self) -> None:
        self.http.close()

    def new_session(self) -> str:
        response = self.http.post("/sessions", json={})
        _raise_for_problem(response)
        return str(response.json()["id"])

    def session(self, session_id: str) -> dict[str, Any] | None:
        """The session with its messages, or None while it does not exist yet."""
        response = self.http.get(f"/sessions/{session_id}")
        if response.status_code == 404:
            return None
        _raise_for_problem(response)
        return dict(response.json())

    def send(self, session_id: str, message: str) -> Iterator[tuple[str, Any]]:
        """The reply's SSE events as ``(event, data)`` pairs, as they arrive."""
        with self.http.stream(
            "POST",
            f"/sessions/{session_id}/messages",
            json={"message": message},
            headers={"accept": "text/event-stream"},
        ) as response:
            if response.status_code != 200:
                response.read()
                _raise_for_problem(response)
            yield from read_events(response.iter_lines())


class ProblemAnswer(Exception):
    """The API answered with an error (problem+json)."""


def _raise_for_problem(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        problem = response.json()
        text = f"{problem.get('status', response.status_code)} {problem.get('title', '')}: {problem.get('detail', '')}"
    except ValueError:
        text = f"{response.status_code} {response.reason_phrase}"
    raise ProblemAnswer(text)


def read_events(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """Parse Server-Sent Events: ``event:`` names the event, ``data:`` lines carry its JSON."""
    event, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    if data:
        yield event, json.loads("\n".join(data))


def chat(client: ChatClient, session_id: str | None, stdin: TextIO, out: TextIO) -> None:
    """The read-send-print loop; returns at ``/quit`` or end of input."""
    session_id = session_id or client.new_session()
    interactive = stdin.isatty()
    print(f"Session {session_id}. {HELP}", file=out, flush=True)
    while True:
        if interactive:
            print("you> ", end="", file=out, flush=True)
        line = stdin.readline()
        if not line:
            break
        text = line.strip()
        try:
            if not text:
                continue
            if text == "/quit":
                break
            if text == "/new":
                session_id = client.new_session()
                print(f"Session {session_id}.", file=out, flush=True)
            elif text == "/history":
                print_history(client.session(session_id), out)
            elif text.startswith("/"):
                print(f"Unknown command {text}. {HELP}", file=out, flush=True)
            else:
                print_reply(client.send(session_id, text), out)
        except ProblemAnswer as problem:
            print(f"[error] {problem}", file=out, flush=True)
        except httpx.HTTPError as error:
            print(f"[error] {type(error).__name__}: {error}", file=out, flush=True)


def print_reply(events: Iterator[tuple[str, Any]], out: TextIO) -> None:
    print("assistant> ", end="", file=out, flush=True)
    for event, data in events:
        if event == "delta":
            print(data["text"], end="", file=out, flush=True)
        elif event == "done":
            print(f"\n(turn {data['turn']})", file=out, flush=True)
        elif event == "error":
            print(f"\n[error] {data['status']} {data['title']}: {data['detail']}", file=out, flush=True)


def print_history(session: dict[str, Any] | None, out: TextIO) -> None:
    if session is None or not session["turns"]:
        print("(no messages yet)", file=out, flush=True)
    elif session["mode"] == "service":
        print("(no messages stored here: the model service keeps this thread)", file=out, flush=True)
    for message in session["messages"] if session else []:
        print(f"{message['role']}: {message['text']}", file=out, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:7071", help="the app's address (default %(default)s)")
    parser.add_argument("--session", help="continue this session id (created on the first message if missing)")
    parser.add_argument("--key", help="function key, sent as x-functions-key")
    parser.add_argument("--user", help="user id, sent as X-User-Id")
    args = parser.parse_args(argv)
    client = ChatClient(args.url, key=args.key, user=args.user)
    try:
        chat(client, args.session, sys.stdin, sys.stdout)
    except ProblemAnswer as problem:
        sys.exit(f"[error] {problem}")
    except httpx.HTTPError as error:
        sys.exit(f"[error] cannot reach {args.url}: {error}")
    except KeyboardInterrupt:
        print(file=sys.stdout)
    finally:
        client.close()


if __name__ == "__main__":
    main()
