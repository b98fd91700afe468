"""Where a step's wall time goes, from a py-spy raw profile of the worker.

    python -m benchmarks.profile_summary DIR/overhead.collapsed

The profile is what `python -m benchmarks.run --profile DIR` records
(``py-spy record --threads --idle --format raw``): every sample of every
thread, idle or not. Samples of threads inside a step are bucketed by the
phase of the step they are in; the shares are of the step threads' samples.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

# (marker frame, phase): the first marker found from the innermost frame outwards wins.
PHASES = [
    ("acquire_lease", "1 lease: acquire"),
    ("_load_turn", "2 load turn (agent, blocks, history, event)"),
    ("ContextBuilder.build", "3 compile context (incl. token counts)"),
    ("compile_context", "3 compile context (incl. token counts)"),
    ("Summarizer.summarize", "3 compile context (incl. token counts)"),
    ("LLMClient.complete", "4 LLM call (litellm)"),
    ("Toolset.execute", "5 tool"),
    ("TokenCounter", "6 commit: token counts of new messages"),
    ("_commit", "6 commit transaction"),
    ("release_lease", "7 release lease"),
    ("has_pending_work", "7 re-check for work"),
    ("CeleryDoorbell.ring", "7 ring the doorbell (publish)"),
    ("answer_doorbell", "other (in the step task)"),
]

LLM_DETAIL = [
    ("_ssl", "ssl"),
    ("httpcore", "http wait/IO (httpcore)"),
    ("httpx", "httpx"),
    ("logging", "logging"),
    ("Logging", "litellm logging objects"),
    ("pydantic", "pydantic"),
    ("token_counter", "token counting"),
    ("litellm", "litellm (other)"),
]


def _frames(stack: str) -> list[str]:
    return stack.split(";")


def summarize(path: Path) -> dict[str, object]:
    phases: Counter[str] = Counter()
    llm: Counter[str] = Counter()
    idle_frames: Counter[str] = Counter()
    other_threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = _frames(stack)
        if not any("answer_doorbell" in f for f in frames):
            name = frames[1] if len(frames) > 1 else frames[0]
            # Step threads waiting for a task are idle; everything else is "other threads".
            if any("_worker (concurrent/futures/thread.py" in f for f in frames) and not any(
                "apply_target" in f for f in frames
            ):
                continue
            other_threads[name.split(" (")[0]] += count
            continue
        total += count
        phase = "other (in the step task)"
        for marker, label in PHASES:
            if any(marker in f for f in frames):
                phase = label
                break
        phases[phase] += count
        if phase.startswith("4"):
            leaf = frames[-1]
            detail = next((lbl for m, lbl in LLM_DETAIL if any(m in f for f in frames[-6:])), leaf)
            llm[detail] += count
        idle_frames[frames[-1].split(" (")[0]] += count
    return {"samples": total, "phases": phases, "llm": llm, "leaf": idle_frames, "other": other_threads}


def main(argv: list[str]) -> int:
    for arg in argv:
        res = summarize(Path(arg))
        total = res["samples"] or 1
        print(f"{arg}: {res['samples']} samples in step threads")
        for label, n in sorted(res["phases"].items()):  # type: ignore[union-attr]
            print(f"  {label:48s} {100 * n / total:5.1f} %")
        print("  LLM call, innermost frames:")
        for label, n in res["llm"].most_common(8):  # type: ignore[union-attr]
            print(f"    {label:46s} {100 * n / total:5.1f} %")
        print("  leaf functions (all phases):")
        for label, n in res["leaf"].most_common(12):  # type: ignore[union-attr]
            print(f"    {label:46s} {100 * n / total:5.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
