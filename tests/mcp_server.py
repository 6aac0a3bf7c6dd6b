"""A real MCP server for tests: the ``mcp`` SDK's streamable-HTTP server on a free local port, in a thread.

It records every tool call and the headers of every request, so tests can prove what ran and how often.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from mcp.server.mcpserver import MCPServer

from .threaded_server import serve


@dataclass
class RecordingMCP:
    """What the server saw: ``calls`` as ``(tool, arguments)``, and each request's headers."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    def server(self) -> MCPServer:
        server = MCPServer("test-tools")

        @server.tool()
        def word_count(text: str) -> int:
            """Count the words of a text."""
            self.calls.append(("word_count", {"text": text}))
            return len(text.split())

        @server.tool()
        def archive_record(record_id: str) -> str:
            """Archive a record (a change someone must approve)."""
            self.calls.append(("archive_record", {"record_id": record_id}))
            return f"record {record_id} archived"

        return server

    def app(self) -> Any:
        inner = self.server().streamable_http_app(stateless_http=True, json_response=True)

        async def recording(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
            await inner(scope, receive, send)

        return recording


@contextmanager
def mcp_server() -> Iterator[RecordingMCP]:
    """Serve the recording MCP server on 127.0.0.1 until the block ends; ``url`` is its endpoint."""
    recorder = RecordingMCP()
    with serve(recorder.app()) as port:
        recorder.url = f"http://127.0.0.1:{port}/mcp"
        yield recorder
