"""A2A at ``/api/a2a/{agent}``: each agent as an A2A agent, over the app's own durable sessions.

:mod:`.transport` serves the agent card (:mod:`.card`) and runs the ``a2a-sdk`` JSON-RPC dispatcher for one
request; :mod:`.handler` is its request handler, which turns messages into turns of the one turn service
(:mod:`.inputs` reads them) and reads tasks back from the caller's sessions (:mod:`.tasks`); :mod:`.stream`
encodes a streamed turn as A2A events.
"""
