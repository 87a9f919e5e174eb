"""The task types the orchestrator may plan and the worker must handle.

This is the contract between the two services' registries: at start-up the
orchestrator checks that every stage of every job type uses a listed task
type, and the worker checks that it has a handler for each one. Neither
imports the other's code.
"""

from __future__ import annotations

TASK_TYPES: frozenset[str] = frozenset(
    {
        "hello_world_greeting",
        "hello_world_reply",
        "noop",
        "diamond_split",
        "diamond_square",
        "diamond_sum",
        "container_summary_task",
        "list_container_blobs",
        "analyze_single_blob",
        "summarize_blob_inventory",
    }
)
