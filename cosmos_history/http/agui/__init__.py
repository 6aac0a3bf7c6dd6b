"""The AG-UI protocol at ``/api/ag-ui/{agent}``: an agent's runs as AG-UI events over SSE, on the app's own sessions.

:mod:`.requests` reads a ``RunAgentInput`` into one turn's request (only what is new: the stored session is
the history); :mod:`.encoder` turns the turn's typed events into the ``ag-ui-protocol`` package's events;
:mod:`.snapshot` shows a stored session as AG-UI messages; :mod:`.route` is the one place that calls the
turn service. ``threadId`` is the session, a run is one turn.
"""
