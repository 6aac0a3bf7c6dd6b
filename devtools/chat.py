"""A terminal chat with the HTTP API (the local host or a deployed app), printing replies as they stream.

    python -m devtools.chat [--url http://127.0.0.1:7071] [--session ID] [--agent NAME] [--key FUNCTION_KEY]
                            [--user USER_ID]

Type a message and press Enter. Commands: ``/new`` (a new session), ``/history`` (the stored
messages), ``/quit`` (or end of input); any other line goes to the agent (the offline model calls a tool
for ``/<tool> {"arg": "value"}``). When the agent asks to run a tool that needs approval, answer y or n.
A reply whose stream breaks (a dropped connection) is resumed where it stopped: the turn goes on on the
server, and its missing events are read from ``GET /api/sessions/{id}/turns/{turn}/events``.
Without ``--session`` the server chooses a new session id. ``--agent`` names the agent new sessions talk to
(``GET /api/agents`` lists them; without it, the app's default agent).
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

    def __init__(self, url: str, *, key: str | None = None, user: str | None = None, agent: str | None = None) -> None:
        self.agent = agent
        """The agent new sessions are created for (``None``: the app's default)."""
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
        response = self.http.post("/sessions", json={"agent": self.agent} if self.agent else {})
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
        body = {"message": message} | ({"agent": self.agent} if self.agent else {})
        return self._turn(f"/sessions/{session_id}/messages", body)

    def answer(self, session_id: str, answers: list[dict[str, Any]]) -> Iterator[tuple[str, Any]]:
        """Answer the approvals the session waits on; the continued turn's SSE events."""
        return self._turn(f"/sessions/{session_id}/approvals", {"approvals": answers})

    def _turn(self, path: str, body: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        """The turn's events; a stream that breaks before its ``done`` or ``error`` is resumed where it stopped
        (``GET .../turns/{turn}/events`` with ``Last-Event-ID``: the turn goes on on the server meanwhile)."""
        last = Resume()
        with self.http.stream("POST", path, json=body, headers={"accept": "text/event-stream"}) as response:
            if response.status_code != 200:
                response.read()
                _raise_for_problem(response)
            last.location = response.headers.get("content-location")
            try:
                yield from last.track(response.iter_lines())
            except httpx.TransportError:
                if last.location is None or last.finished:
                    raise
        yield from self._resume(last)

    def _resume(self, last: Resume) -> Iterator[tuple[str, Any]]:
        for _ in range(RESUME_ATTEMPTS):
            if last.finished or last.location is None:
                return
            url = last.location.removeprefix("/api") + "/events"
            try:
                with self.http.stream("GET", url, headers={"last-event-id": last.event_id or "0"}) as response:
                    if response.status_code != 200:
                        response.read()
                        _raise_for_problem(response)
                    yield from last.track(response.iter_lines())
            except httpx.TransportError:
                continue
        if not last.finished:
            raise ProblemAnswer(f"The stream broke {RESUME_ATTEMPTS} times; the turn goes on at {last.location}.")


RESUME_ATTEMPTS = 5
"""Reconnections of one turn's stream before the client gives up (the turn itself goes on)."""


class Resume:
    """Where a turn's stream got to: its address, the id of the last event read, and whether it ended."""

    def __init__(self) -> None:
        self.location: str | None = None
        self.event_id: str | None = None
        self.finished = False

    def track(self, lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
        for event_id, event, data in read_sse(lines):
            self.event_id = event_id or self.event_id
            self.finished = event in ("done", "error")
            yield event, data


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
    for _, event, data in read_sse(lines):
        yield event, data


def read_sse(lines: Iterator[str]) -> Iterator[tuple[str | None, str, Any]]:
    """Server-Sent Events as ``(id, event, data)``: ``id:`` (``None`` when absent), ``event:``, JSON ``data:``."""
    event_id, event, data = None, "message", []
    for line in lines:
        if not line:
            if data:
                yield event_id, event, json.loads("\n".join(data))
            event_id, event, data = None, "message", []
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    if data:
        yield event_id, event, json.loads("\n".join(data))


def chat(client: ChatClient, session_id: str | None, stdin: TextIO, out: TextIO) -> None:
    """The read-send-print loop; returns at ``/quit`` or end of input."""
    session_id = session_id or client.new_session()
    interactive = stdin.isatty()
    agent = f", agent {client.agent}" if client.agent else ""
    shown: set[str] = set()  # the tool calls printed already: a turn continued after approval repeats them
    print(f"Session {session_id}{agent}. {HELP}", file=out, flush=True)
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
                print(f"Session {session_id}{agent}.", file=out, flush=True)
            elif text == "/history":
                print_history(client.session(session_id), out)
            else:
                done = print_reply(client.send(session_id, text), out, shown)
                while done is not None and done.get("status") == "awaiting_approval":
                    answers = ask_approvals(done["approvals"], stdin, out)
                    if answers is None:
                        break
                    done = print_reply(client.answer(session_id, answers), out, shown)
        except ProblemAnswer as problem:
            print(f"[error] {problem}", file=out, flush=True)
        except httpx.HTTPError as error:
            print(f"[error] {type(error).__name__}: {error}", file=out, flush=True)


def print_reply(events: Iterator[tuple[str, Any]], out: TextIO, shown: set[str] | None = None) -> dict[str, Any] | None:
    """Print a turn as it streams; returns its result (``None`` when it failed). A tool call whose id is in
    ``shown`` is not printed again (a turn continued after approval streams its approved calls again)."""
    shown = set() if shown is None else shown
    print("assistant> ", end="", file=out, flush=True)
    done = None
    for event, data in events:
        if event == "delta":
            print(data["text"], end="", file=out, flush=True)
        elif event == "tool_call" and data["id"] not in shown:
            shown.add(data["id"])
            print(f"[tool] {data['name']}({json.dumps(data['arguments'])})", file=out, flush=True)
        elif event == "tool_result":
            shown.add(data["id"])
            print(f"{tool_result_label(data.get('status'))} {data['result']}", file=out, flush=True)
        elif event == "done":
            done = data
            for call in data.get("toolCalls", []):  # calls a crashed attempt started that this turn did not run
                if call["id"] not in shown:
                    print(f"{tool_result_label(call.get('status'))} {call['name']}: {call['result']}", file=out)
            print(f"\n(turn {data['turn']}, {data['status'].replace('_', ' ')})", file=out, flush=True)
        elif event == "error":
            print(f"\n[error] {data['status']} {data['title']}: {data['detail']}", file=out, flush=True)
    return done


def tool_result_label(status: str | None) -> str:
    """How a tool's result is introduced: an unknown outcome (not run again after a crash) says so."""
    return "[tool outcome unknown, not run again]" if status == "unknown" else "[tool result]"


def ask_approvals(approvals: list[dict[str, Any]], stdin: TextIO, out: TextIO) -> list[dict[str, Any]] | None:
    """Ask y/n for each tool call waiting for approval; ``None`` at end of input (the session keeps waiting)."""
    answers = []
    for approval in approvals:
        while True:
            print(
                f"Allow {approval['name']}({json.dumps(approval['arguments'])})? [y/n] ", end="", file=out, flush=True
            )
            line = stdin.readline()
            if not line:
                return None
            reply = line.strip().lower()
            if reply in ("y", "yes", "n", "no"):
                answers.append({"id": approval["id"], "approved": reply.startswith("y")})
                break
    return answers


def print_history(session: dict[str, Any] | None, out: TextIO) -> None:
    if session is None or not session["turns"]:
        print("(no messages yet)", file=out, flush=True)
    elif session["mode"] == "service":
        print("(no messages stored here: the model service keeps this thread)", file=out, flush=True)
    for entry in session["messages"] if session else []:
        text = entry["text"] if "text" in entry else json.dumps({k: v for k, v in entry.items() if k != "role"})
        unknown = " [outcome unknown, not run again]" if entry.get("status") == "unknown" else ""
        print(f"{entry['role']}: {text}{unknown}", file=out, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:7071", help="the app's address (default %(default)s)")
    parser.add_argument("--session", help="continue this session id (created on the first message if missing)")
    parser.add_argument("--key", help="function key, sent as x-functions-key")
    parser.add_argument("--user", help="user id, sent as X-User-Id")
    parser.add_argument("--agent", help="the agent new sessions talk to (GET /api/agents lists them)")
    args = parser.parse_args(argv)
    client = ChatClient(args.url, key=args.key, user=args.user, agent=args.agent)
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
