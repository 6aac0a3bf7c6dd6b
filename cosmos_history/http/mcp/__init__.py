"""The MCP server at ``/api/mcp``: every agent as an MCP tool, over the app's own durable sessions.

:mod:`.transport` runs the ``mcp`` SDK's Streamable HTTP transport (stateless, JSON responses) for one
HTTP request; :mod:`.tools` declares the tools and turns their calls into turns; :mod:`.turns` is the
one place that calls the domain's turn functions.
"""
