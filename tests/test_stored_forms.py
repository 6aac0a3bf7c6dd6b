"""A save writes loaded, unchanged history messages in the form they were read in, and everything else afresh:
a message changed in place (by a context provider, say) is never written back stale."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agent_framework import AgentSession, Content, ContextProvider, Message, SessionContext

from cosmos_history import build_agents, load_settings, run_turn
from cosmos_history.adapters.cosmos import items
from cosmos_history.domain.archive import BYTES_PER_TOKEN
from cosmos_history.domain.budget import _clearly_within_budget
from cosmos_history.domain.stored_forms import StoredForms, history_forms, session_dict


def every_kind_of_message() -> list[Message]:
    """The contents a turn stores: text, a tool call and its result (with items), an approval, usage, data."""
    call = Content.from_function_call(call_id="c1", name="lookup", arguments={"q": "Lisbon", "n": 2})
    approval = Content.from_function_approval_request(id="a1", function_call=call)
    return [
        Message(role="user", contents=["Où est Lisbonne ? 🇵🇹"], message_id="m1"),
        Message(role="assistant", contents=[call], author_name="assistant", additional_properties={"k": [1, 2.5]}),
        Message(role="tool", contents=[Content.from_function_result(call_id="c1", result={"ok": True, "n": None})]),
        Message(role="assistant", contents=[approval]),
        Message(role="user", contents=[approval.to_function_approval_response(approved=True)]),
        Message(
            role="assistant",
            contents=[
                Content.from_text("done"),
                Content.from_usage({"input_token_count": 10, "output_token_count": 3}),
                Content.from_data(data=b"\x00\x01", media_type="application/octet-stream"),
            ],
        ),
    ]


def stored(messages: list[Message]) -> dict[str, Any]:
    """A session holding ``messages`` as Cosmos DB returns it: serialized, then through JSON."""
    session = AgentSession(session_id="s")
    session.state["in_memory"] = {"messages": messages}
    session.state["other"] = {"n": 1}
    return json.loads(json.dumps(session.to_dict()))


def loaded(data: dict[str, Any]) -> tuple[AgentSession, StoredForms]:
    session = AgentSession.from_dict(data)
    return session, StoredForms.of(session.state["in_memory"]["messages"], history_forms(data))


def test_an_unchanged_session_is_written_exactly_as_the_framework_serializes_it():
    session, forms = loaded(stored(every_kind_of_message()))

    reused = session_dict(session, forms)

    assert len(forms) == len(every_kind_of_message())
    assert json.dumps(reused) == json.dumps(session.to_dict())


def test_the_unchanged_messages_are_the_stored_forms_and_only_new_ones_are_serialized():
    data = stored(every_kind_of_message())
    session, forms = loaded(data)
    session.state["in_memory"]["messages"].append(Message(role="user", contents=["new"]))

    written = session_dict(session, forms)["state"]["in_memory"]["messages"]

    assert all(w is form for w, form in zip(written, history_forms(data), strict=False))
    assert written[-1] == Message(role="user", contents=["new"]).to_dict() | {"type": "message"}
    assert json.dumps(written) == json.dumps(session.to_dict()["state"]["in_memory"]["messages"])


@pytest.mark.parametrize(
    "change",
    [
        lambda m: setattr(m[0].contents[0], "text", "changed in place"),
        lambda m: m[1].contents[0].arguments.update(q="Porto"),
        lambda m: m[1].additional_properties["k"].append(3),
        lambda m: m[2].contents[0].items.append(Content.from_text("more")),
        lambda m: m[5].contents.pop(),
        lambda m: setattr(m[3], "author_name", "someone"),
    ],
    ids=["text", "call arguments", "message properties", "result items", "contents list", "message field"],
)
def test_a_message_changed_in_place_is_serialized_afresh(change):
    session, forms = loaded(stored(every_kind_of_message()))
    change(session.state["in_memory"]["messages"])

    assert json.dumps(session_dict(session, forms)) == json.dumps(session.to_dict())


def test_identity_alone_is_not_trusted_a_replaced_message_is_serialized():
    session, forms = loaded(stored(every_kind_of_message()))
    messages = session.state["in_memory"]["messages"]
    messages[0] = Message(role="user", contents=["another"], message_id="m1")

    assert session_dict(session, forms)["state"]["in_memory"]["messages"][0]["contents"][0]["text"] == "another"


class RedactFirstMessage(ContextProvider):
    """A context provider that changes the first loaded history message in place, before the model runs."""

    def __init__(self) -> None:
        super().__init__("redact")

    async def before_run(
        self, *, agent: Any, session: AgentSession, context: SessionContext, state: dict[str, Any]
    ) -> None:
        history = session.state.get("in_memory", {}).get("messages", [])
        if history:
            history[0].contents[0].text = "[redacted]"


@pytest.mark.integration
async def test_a_loaded_message_a_provider_changes_in_place_is_saved_changed(
    cosmos_env, store, session_id, offline_model
):
    agents = build_agents(load_settings(cosmos_env), offline_model)
    await run_turn(store, agents, session_id=session_id, message="my card is 4111 1111 1111 1111")
    agents["assistant"].by_mode["local"].context_providers.append(RedactFirstMessage())

    await run_turn(store, agents, session_id=session_id, message="second")

    record = await store.load(session_id)
    texts = [message.text for message in record.session.state["in_memory"]["messages"]]
    assert texts[0] == "[redacted]"
    assert texts[2] == "second"
    assert len(record.stored_forms) == 4  # loaded with its stored forms, for the next save


@pytest.mark.integration
async def test_a_session_read_from_cosmos_is_written_back_as_the_framework_would_write_it(
    cosmos_env, store, session_id, offline_model
):
    agents = build_agents(load_settings(cosmos_env), offline_model)
    for message in ("one", "two", "three"):
        await run_turn(store, agents, session_id=session_id, message=message)
    record = await store.load(session_id)

    document = items.session_document(record, None)

    assert len(record.stored_forms) == 6
    assert json.dumps(document["session"]) == json.dumps(record.session.to_dict())


@pytest.mark.integration
async def test_a_save_skips_measuring_the_document_only_when_its_history_fits_the_token_budget(
    cosmos_env, store, session_id, offline_model
):
    agents = build_agents(load_settings(cosmos_env), offline_model)
    for message in ("one", "two " * 40, "three " * 80):
        await run_turn(store, agents, session_id=session_id, message=message)
    record = await store.load(session_id)
    record.session.state["in_memory"]["messages"].append(Message(role="user", contents=["a new message " * 20]))
    history = sum(store.measure(record).messages)  # each message's bytes in the document the save would write

    for tokens in range(history // BYTES_PER_TOKEN - 30, history // BYTES_PER_TOKEN + 30):
        assert _clearly_within_budget(record, 1_000_000, 200, tokens) == (history <= tokens * BYTES_PER_TOKEN)


def test_a_save_checks_its_history_once_but_a_history_changed_since_is_checked_anew():
    session, forms = loaded(stored(every_kind_of_message()))
    messages = session.state["in_memory"]["messages"]
    messages.append(Message(role="user", contents=["new"]))
    forms.sizes(messages)  # the budget's check
    messages[0] = Message(role="user", contents=["replaced after the check"])  # a history that changed (archived, say)

    assert json.dumps(session_dict(session, forms)) == json.dumps(session.to_dict())


def test_a_new_message_changed_after_its_form_was_made_is_serialized_again():
    session, forms = loaded(stored(every_kind_of_message()))
    messages = session.state["in_memory"]["messages"]
    messages.append(Message(role="user", contents=["new"]))
    sizes = forms.sizes(messages)
    messages[-1].contents[0].text = "changed after it was measured"

    assert json.dumps(session_dict(session, forms)) == json.dumps(session.to_dict())
    assert sizes[:-1] == [
        len(json.dumps(form).encode()) for form in session.to_dict()["state"]["in_memory"]["messages"][:-1]
    ]


def test_an_unchanged_message_stays_unchanged_when_something_else_holds_its_values():
    """The framework's per-turn copies of the window share the loaded messages' values: a fingerprint depends on
    the values alone, not on how many objects hold them (else an unchanged message would be written afresh)."""
    session, forms = loaded(stored(every_kind_of_message()))
    messages = session.state["in_memory"]["messages"]

    holders = [dict(vars(content)) for message in messages for content in message.contents]

    assert holders and all(forms.form_of(message) is not None for message in messages)
