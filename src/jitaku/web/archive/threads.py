"""Posts as threads: each reply under the post it answers (its parent_number, found once when it was archived
from In-Reply-To and References), a thread's replies in the order they came. A month's page lists its threads
in the order their first post of the month came, oldest first, as Mailman's thread index does; a reply whose
parent is in another month starts a thread of its own there."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from jitaku.store.archive import Archived

MAX_DEPTH = 12  # levels indented; a longer chain of replies goes on at the last level


@dataclass
class Node:
    post: Archived
    children: list[Node] = field(default_factory=list)


def threaded(posts: Sequence[Archived]) -> list[Node]:
    """POSTS as trees, the first posts of threads in order; no level deeper than MAX_DEPTH."""
    depth: dict[int, int] = {}
    holder: dict[int, Node] = {}  # where a post's replies hang: itself, or beside it once it is MAX_DEPTH deep
    roots: list[Node] = []
    for post in sorted(posts, key=lambda p: p.number):
        node = Node(post)
        container = holder.get(post.parent_number) if post.parent_number is not None else None
        if container is None:
            roots.append(node)
            depth[post.number] = 0
        else:
            container.children.append(node)
            depth[post.number] = depth[container.post.number] + 1
        holder[post.number] = node if depth[post.number] < MAX_DEPTH or container is None else container
    return roots
