// One conversation with the official AG-UI client (@ag-ui/client's HttpAgent), printed as JSON lines for
// tests/test_agui.py: a message, a tool that needs approval (the run's interrupt), the resume that approves
// it, and a second client joining the thread. Usage: node client.mjs <endpoint> <threadId> <userId>
import { HttpAgent } from "@ag-ui/client";

const [url, threadId, userId] = process.argv.slice(2);
const headers = { "X-User-Id": userId };

async function run(agent, parameters = {}) {
  const events = [];
  await agent.runAgent(parameters, { onEvent: ({ event }) => { events.push(event); } });
  const finished = events.find((e) => e.type === "RUN_FINISHED");
  return {
    types: events.map((e) => e.type),
    outcome: finished?.outcome ?? null,
    result: finished?.result ?? null,
    messages: agent.messages.map((m) => ({ role: m.role, content: m.content ?? null, toolCalls: m.toolCalls ?? [] })),
  };
}

const agent = new HttpAgent({ url, headers, threadId });
agent.addMessage({ id: "u1", role: "user", content: "Hello from TypeScript" });
console.log(JSON.stringify(await run(agent)));

agent.addMessage({ id: "u2", role: "user", content: '/schedule_reminder {"text": "call Ada", "at": "2026-12-01T09:00"}' });
const waiting = await run(agent);
console.log(JSON.stringify(waiting));

const [interrupt] = waiting.outcome.interrupts;
const resume = [{ interruptId: interrupt.id, status: "resolved", payload: { approved: true } }];
console.log(JSON.stringify(await run(agent, { resume })));

const joining = new HttpAgent({ url, headers, threadId });
console.log(JSON.stringify(await run(joining)));
