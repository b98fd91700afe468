"""Human (rich) rendering of agents, runs, memory and transcripts."""

from __future__ import annotations

import json
from typing import Any

from rich import box
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from memq.cli.output import console

_ROLE_STYLE = {"user_message": "bold cyan", "heartbeat": "dim", "system_alert": "yellow"}


def agent_created(agent: Any) -> None:
    console().print(Text.assemble("created agent ", (agent.name, "bold"), " ", (agent.id, "cyan")))


def agent_table(agents: list[Any]) -> None:
    if not agents:
        console().print(Text("no agents yet: memq agent create --name NAME", style="dim"))
        return
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("id", no_wrap=True, min_width=36, style="cyan")  # whole, so it can be pasted back
    table.add_column("name", no_wrap=True)
    table.add_column("model")
    table.add_column("msgs", justify="right")
    table.add_column("state")
    for a in agents:
        state = Text("busy" if a.busy else ("working" if a.active_run_id else "idle"))
        if a.state == "failing":  # its last step raised: `memq agent show` gives the error
            state = Text(f"failing ({a.attempts} attempt{'s' if a.attempts != 1 else ''})", style="bold red")
        elif a.state == "waiting_provider":  # its step's request is in (or on its way to) a provider batch
            state = Text("waiting for provider", style="yellow")
        table.add_row(a.id, a.name, a.model or "(default)", str(a.messages), state)
    console().print(table)


def agent_details(agent: Any) -> None:
    table = Table.grid(padding=(0, 2))
    for key, value in agent.model_dump(exclude={"context"}).items():
        table.add_row(Text(key, style="bold"), Text("" if value is None else str(value)))
    ctx = agent.context
    if ctx is not None:
        window = f"{ctx.tokens}/{ctx.window} tokens ({ctx.percent}%)" if ctx.window else "no step yet"
        table.add_row(Text("context", style="bold"), Text(window))
        table.add_row(Text("in context", style="bold"), Text(f"{ctx.messages_in_context} messages"))
        table.add_row(Text("in recall", style="bold"), Text(f"{ctx.messages_in_recall} messages"))
        table.add_row(Text("summary", style="bold"), Text(f"{ctx.summary_chars} characters"))
    console().print(table)


def blocks(items: list[Any]) -> None:
    for b in items:
        title = f"{b.label}  [{len(b.value)}/{b.limit} chars]"
        console().print(Panel(Text(b.value or "(empty)"), title=title, title_align="left"))


def run_result(run: Any, *, waited: bool, timed_out: bool = False) -> None:
    """The replies of a run, then a dim status line."""
    for reply in run.replies:
        console().print(Text.assemble(("agent: ", "bold green"), reply))
    parts = [run.status, f"{run.steps} step{'s' if run.steps != 1 else ''}", f"run {run.run_id}"]
    if timed_out:
        parts.append("still going: see `memq messages` later")
    elif not waited and run.status == "queued":
        parts.append("add --wait to see the replies")
    console().print(Text(" · ".join(parts), style="dim"))


def _args_text(raw: str | None) -> str:
    """``k=v, ...`` for well-formed arguments; malformed ones as received."""
    try:
        args = json.loads(raw or "{}")
    except ValueError:
        return raw or ""
    if not isinstance(args, dict):
        return raw or ""
    shown = {k: v for k, v in args.items() if k != "request_heartbeat"}
    text = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in shown.items())
    if args.get("request_heartbeat"):
        text += ", request_heartbeat=true" if text else "request_heartbeat=true"
    return text


def _user_line(content: str | None) -> Text:
    try:
        event = json.loads(content or "")
    except ValueError:
        event = None
    if not isinstance(event, dict) or "type" not in event:
        return Text.assemble(("user: ", "bold cyan"), content or "")
    kind = str(event["type"])
    body = str(event.get("message", event.get("reason", "")))
    if kind == "user_message":
        return Text.assemble(("user: ", "bold cyan"), body)
    label = {"heartbeat": "[heartbeat] ", "system_alert": "[system alert] "}.get(kind, f"[{kind}] ")
    return Text(label + body, style=_ROLE_STYLE.get(kind, "dim"))


def _tool_line(content: str | None) -> Text:
    try:
        result = json.loads(content or "")
    except ValueError:
        result = None
    if not isinstance(result, dict):
        return Text("  ↳ " + (content or ""), style="dim")
    failed = result.get("status") != "OK"
    text = f"  ↳ {result.get('status', '?')}: {result.get('message', '')}"
    return Text(text, style="red" if failed else "dim")


def _call_text(call: dict[str, Any]) -> Text:
    fn = call.get("function") or {}
    line = Text.assemble(("→ ", "magenta"), (fn.get("name") or "?", "bold magenta"))
    line.append(f"({_args_text(fn.get('arguments'))})")
    return line


def _reply_text(call: dict[str, Any]) -> Text | None:
    """A well-formed send_message call as the reply the user sees; None for any other call."""
    fn = call.get("function") or {}
    if fn.get("name") != "send_message":
        return None
    try:
        message = json.loads(fn.get("arguments") or "").get("message")
    except (ValueError, AttributeError):
        return None
    return Text.assemble(("agent: ", "bold green"), message) if isinstance(message, str) else None


def step_lines(messages: list[Any], *, own_run_id: str | None = None) -> list[Text]:
    """What the agent did, for `memq chat` and `memq demo` as steps commit: inner thought
    (dim), each tool call with its result on one line, a reply as ``agent: ...``, heartbeats
    and alerts. The user_message event of ``own_run_id`` is left out (the user just typed it)."""
    lines: list[Text] = []
    results = {m.tool_call_id: m for m in messages if m.role == "tool" and m.tool_call_id}
    shown: set[str] = set()
    for m in messages:
        if m.role == "user":
            line = _user_line(m.content)
            if not (own_run_id and m.run_id == own_run_id and line.plain.startswith("user: ")):
                lines.append(line)
        elif m.role == "assistant":
            if m.content:
                lines.append(Text(f"(thinking) {m.content}", style="dim italic"))
            for call in m.tool_calls or []:
                result = results.get(call.get("id"))
                reply = _reply_text(call)
                ok = result is not None and _tool_line(result.content).style == "dim"
                if reply is not None and ok:
                    lines.append(reply)
                else:
                    line = _call_text(call)
                    if result is not None:
                        line.append_text(_tool_line(result.content))
                    lines.append(line)
                if result is not None:
                    shown.add(result.tool_call_id)
        elif m.role == "tool" and m.tool_call_id not in shown:
            lines.append(_tool_line(m.content))
    return lines


def transcript(messages: list[Any]) -> None:
    """A readable transcript: events, inner monologue (dim), tool calls and results."""
    out = console()
    if not messages:
        out.print(Text("no messages yet", style="dim"))
    for m in messages:
        stamp = Text(m.created_at[11:19] + " ", style="dim") if m.created_at else Text("")
        if m.role == "user":
            out.print(stamp + _user_line(m.content))
        elif m.role == "assistant":
            if m.content:
                out.print(stamp + Text(f"(thinking) {m.content}", style="dim italic"))
            for call in m.tool_calls or []:
                out.print(stamp + _call_text(call))
        elif m.role == "tool":
            out.print(_tool_line(m.content))
        else:
            out.print(stamp + Text(f"[{m.role}] {m.content or ''}", style="dim"))
