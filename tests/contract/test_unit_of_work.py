"""The turn lease and the unit of work (a turn's commit), held to one contract on every adapter.

A claim is the session's read; a refused claim changes nothing; an expired or released lease is free;
a commit writes the session, releases the lease and stores the replay entry and the response all
together, or none of them.
"""

from __future__ import annotations

import pytest

from cosmos_history import build_agents, load_settings
from cosmos_history.domain import result_codec
from cosmos_history.domain.errors import SessionConflictError, TurnInProgressError
from cosmos_history.domain.records import ReplayEntry, SessionRecord, TurnItems, key_digest
from cosmos_history.domain.results import TurnRequest
from cosmos_history.domain.service import Turns
from cosmos_history.domain.turn import TurnGuards

from ..fakes import RecordingChatClient
from ..faults import intercept


async def stored_session(ports, session_id: str) -> SessionRecord:
    record = SessionRecord.new(session_id, user_id=ports.repository.user_id, mode="local")
    return await ports.repository.save(record, etag=None)


# --- the lease ------------------------------------------------------------------------------------


async def test_a_claim_reads_the_session_it_claims(ports, session_id):
    saved = await stored_session(ports, session_id)

    claim = await ports.lease.claim(session_id, ports.repository.user_id)

    assert claim.record is not None and claim.record.etag == saved.etag and claim.record.id == session_id


async def test_a_claim_of_a_session_not_stored_yet_reads_none_and_holds_the_lease(ports, session_id):
    claim = await ports.lease.claim(session_id, ports.repository.user_id)

    assert claim.record is None and claim.etag
    with pytest.raises(TurnInProgressError):
        await ports.lease.claim(session_id, ports.repository.user_id)


async def test_a_refused_claim_says_when_to_retry_and_leaves_the_session_as_it_was(ports, session_id):
    saved = await stored_session(ports, session_id)
    await ports.lease.claim(session_id, ports.repository.user_id)

    with pytest.raises(TurnInProgressError) as refused:
        await ports.lease.claim(session_id, ports.repository.user_id)

    assert 1 <= (refused.value.retry_after or 0) <= 10
    assert (await ports.repository.load(session_id)).etag == saved.etag


async def test_an_expired_lease_is_claimed_again(ports, session_id):
    await stored_session(ports, session_id)
    await ports.lease.claim(session_id, ports.repository.user_id)  # then its holder "crashes"

    await ports.expire(session_id)

    assert (await ports.lease.claim(session_id, ports.repository.user_id)).record is not None


async def test_a_released_lease_is_free_at_once_and_its_stale_renewal_is_refused(ports, session_id):
    await stored_session(ports, session_id)
    user = ports.repository.user_id
    first = await ports.lease.claim(session_id, user)
    renewed = await ports.lease.renew(session_id, user, first.etag)
    assert renewed is not None

    await ports.lease.release(session_id, user, renewed)
    second = await ports.lease.claim(session_id, user)

    assert second.etag != renewed and await ports.lease.renew(session_id, user, renewed) is None


# --- the unit of work -----------------------------------------------------------------------------


def items_of(turn: int, lease_etag: str | None) -> TurnItems:
    entry = ReplayEntry("k" * 40, turn, {"reply": f"answer {turn}"}, 600)
    return TurnItems(lease_etag, entry, {"response": {"id": f"resp {turn}"}, "input": []})


async def test_a_commit_writes_the_session_releases_the_lease_and_keeps_replay_and_response(ports, session_id):
    user = ports.repository.user_id
    claim = await ports.lease.claim(session_id, user)
    record = SessionRecord.new(session_id, user_id=user, mode="local")
    record.turns = 1

    await ports.repository.save(record, etag=None, items=items_of(1, claim.etag))

    assert (await ports.repository.load(session_id)).turns == 1
    assert await ports.replays.find(session_id, user, "k" * 40, turn=1) == {"reply": "answer 1"}
    assert await ports.responses.find(session_id, user, 1) == {"response": {"id": "resp 1"}, "input": []}
    assert (await ports.lease.claim(session_id, user)).record is not None, "the commit released the lease"


async def test_a_commit_whose_lease_was_taken_over_writes_nothing_at_all(ports, session_id):
    user = ports.repository.user_id
    saved = await stored_session(ports, session_id)
    ours = await ports.lease.claim(session_id, user)
    await ports.expire(session_id)
    await ports.lease.claim(session_id, user)  # another turn takes the expired lease over
    saved.turns = 1

    with pytest.raises(SessionConflictError):
        await ports.repository.save(saved, etag=saved.etag, items=items_of(1, ours.etag))

    assert (await ports.repository.load(session_id)).etag == saved.etag
    assert await ports.replays.find(session_id, user, "k" * 40, turn=1) is None
    assert await ports.responses.find(session_id, user, 1) is None


async def test_a_commit_on_a_stale_session_writes_nothing_and_keeps_the_lease(ports, session_id):
    user = ports.repository.user_id
    saved = await stored_session(ports, session_id)
    claim = await ports.lease.claim(session_id, user)
    await ports.repository.save(saved, etag=saved.etag)  # someone else wrote meanwhile

    with pytest.raises(SessionConflictError):
        await ports.repository.save(saved, etag=saved.etag, items=items_of(1, claim.etag))

    assert await ports.responses.find(session_id, user, 1) is None
    with pytest.raises(TurnInProgressError):
        await ports.lease.claim(session_id, user)


# --- a turn's commit under an injected fault -----------------------------------------------------


@pytest.fixture
def agents():
    return build_agents(load_settings({}), RecordingChatClient())


def turns_of(ports, agents) -> Turns:
    return Turns(ports.repository, agents, TurnGuards(lease=ports.lease, replays=ports.replays))


async def test_a_turn_whose_commit_fails_leaves_neither_its_replay_item_nor_its_response(ports, agents, session_id):
    user = ports.repository.user_id

    def taken_over_first(save):
        async def save_after_a_takeover(record, **kwargs):
            await ports.expire(session_id)
            await ports.lease.claim(session_id, user)
            return await save(record, **kwargs)

        return save_after_a_takeover

    async def keep(result):
        return {"response": {"id": f"turn {result.turn}"}, "input": []}

    request = TurnRequest(session_id, "hello", idempotency_key="key-1")
    with intercept(ports.repository, "save", taken_over_first), pytest.raises(SessionConflictError):
        await turns_of(ports, agents).run(request, caller=user, keep=keep)

    assert await ports.repository.load(session_id) is None
    assert await ports.responses.find(session_id, user, 1) is None
    assert await ports.replays.find(session_id, user, key_digest("key-1"), turn=1) is None


async def test_a_turn_whose_commit_succeeds_has_its_replay_item_and_its_response(ports, agents, session_id):
    user = ports.repository.user_id

    async def keep(result):
        return {"response": {"id": f"turn {result.turn}"}, "input": []}

    request = TurnRequest(session_id, "hello", idempotency_key="key-1")

    result = await turns_of(ports, agents).run(request, caller=user, keep=keep)

    assert await ports.responses.find(session_id, user, 1) == {"response": {"id": "turn 1"}, "input": []}
    assert await ports.replays.find(session_id, user, key_digest("key-1"), turn=1) == result_codec.encode(result)
