"""Agents the HTTP tests start: a streaming one, a waiting one, one asking for approval."""

from __future__ import annotations

import asyncio
import re

from pydantic import BaseModel

from durable import ApprovalRequest, DurableContext, agent, publish_token, step


class Words(BaseModel):
    text: str
    pace: float = 0.05
    """Seconds between words, so a watcher sees them arrive one by one."""


class Go(BaseModel):
    n: int


@step()
async def spell(words: Words) -> str:
    for word in re.findall(r"\S+\s*", words.text):
        publish_token(word)
        await asyncio.sleep(words.pace)
    return words.text


@agent(name="http.speak")
async def speak(ctx: DurableContext, words: Words) -> dict[str, str]:
    """Streams its input's words as tokens, then returns them."""
    text = await ctx.step("say the words", spell, words)
    return {"text": text}


@agent(name="http.wait", events={"go": Go})
async def wait(ctx: DurableContext, words: Words) -> dict[str, int]:
    """Waits for the event ``go`` (a ``Go``), then streams its input's words."""
    go = await ctx.await_event("go", type=Go)
    await ctx.step("say the words", spell, words)
    return {"n": go.n}


@agent(name="http.ask")
async def ask(ctx: DurableContext, words: Words) -> dict[str, str]:
    """Asks for approval to say the words, then says them (or the rejection's reason)."""
    decision = await ctx.approval(
        ApprovalRequest(action="say", input={"text": words.text}, summary="say these words")
    )
    if not decision.approved:
        return {"said": "", "reason": decision.reason or ""}
    text = await ctx.step("say the words", spell, words)
    return {"said": text, "reason": ""}
