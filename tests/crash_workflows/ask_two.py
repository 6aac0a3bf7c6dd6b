"""One step that asks a person two questions at once (two pending requests) and yields both answers."""

from collections.abc import Mapping
from typing import Any

from agent_framework import Executor, Workflow, WorkflowBuilder, WorkflowContext, handler, response_handler


class AskTwo(Executor):
    def __init__(self) -> None:
        super().__init__(id="ask_two")
        self.answers: dict[str, str] = {}

    @handler
    async def ask(self, text: str, ctx: WorkflowContext[str, str]) -> None:
        await ctx.request_info(f"first about {text}", str)
        await ctx.request_info(f"second about {text}", str)

    @response_handler
    async def answered(self, question: str, answer: str, ctx: WorkflowContext[str, str]) -> None:
        self.answers[question.split()[0]] = answer
        if len(self.answers) == 2:
            await ctx.yield_output(f"{self.answers['first']} and {self.answers['second']}")

    async def on_checkpoint_save(self) -> dict[str, Any]:
        return {"answers": dict(self.answers)}

    async def on_checkpoint_restore(self, state: dict[str, Any]) -> None:
        self.answers = dict(state.get("answers") or {})


def create_workflow(agents: Mapping[str, Any]) -> Workflow:
    return WorkflowBuilder(name="ask_two", start_executor=AskTwo()).build()
