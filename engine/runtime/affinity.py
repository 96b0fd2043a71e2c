"""Run affinity: which worker process owns a run, so that the steps of one run go to the process
that already holds it in its run cache.

The owner of a run is chosen by rendezvous (highest-random-weight) hashing over the live members
of the registry: every process computes, for each member, a weight from the run id and the
member's instance id, and the member with the highest weight owns the run. Every process that
sees the same members picks the same owner, with no coordination; when a member leaves, only its
own runs move (each to the member with its next-highest weight), and a member that joins takes
about ``1/n`` of the runs, from every other member alike.

``rendezvous_owner`` is the rule; ``RunAffinity`` holds the members from a ``RegistryView`` (live
processes serving the workflow that take hand-offs for a step) and answers the log's question for
each first delivery (``RunAffinity.router``, an ``engine.ports.log.RunRouter``): handle here, or
hand it to the owner. The log does the hand-off (on JetStream, ``engine.jetstream.pull``).
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import blake2b

from engine.ports.registry import RegistryView

__all__ = ["RunAffinity", "StepRouter", "rendezvous_owner", "rendezvous_weight"]

_MASK = (1 << 64) - 1


def _key(text: str) -> int:
    """64 bits of BLAKE2b of ``text`` (UTF-8): the same in every process, whatever the hash seed."""
    return int.from_bytes(blake2b(text.encode(), digest_size=8).digest(), "little")


def _mix(x: int) -> int:
    """SplitMix64's finaliser: every input bit flips about half of the output bits."""
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK
    return x ^ (x >> 31)


def rendezvous_weight(run_id: str, member: str) -> int:
    """The weight (an unsigned 64-bit int) of ``member`` for ``run_id``; the highest weight owns
    the run."""
    return _mix(_key(run_id) ^ _key(member))


def rendezvous_owner(run_id: str, members: Sequence[str]) -> str | None:
    """The member that owns ``run_id`` among ``members`` (instance ids, any order, duplicates
    harmless): the one of highest ``rendezvous_weight``, the greater id on a tie. ``None`` when
    ``members`` is empty. Deterministic across processes and Python hash seeds."""
    if not members:
        return None
    run = _key(run_id)
    return max(members, key=lambda m: (_mix(run ^ _key(m)), m))


class StepRouter:
    """The ``engine.ports.log.RunRouter`` of one step's consumers in one process: ``route`` gives
    the owner of a delivery's run when that is another live member, ``None`` to handle it here.

    Attributes:
        instance: this process's instance id (its hand-off inbox).
        step: the step whose deliveries it routes.
    """

    __slots__ = ("affinity", "instance", "step")

    def __init__(self, affinity: RunAffinity, step: str) -> None:
        self.affinity = affinity
        self.instance = affinity.instance
        self.step = step

    def route(self, run_id: str, subject: str) -> str | None:
        owner = self.affinity.owner(run_id, self.step)
        return None if owner is None or owner == self.instance else owner


class RunAffinity:
    """The members of one workflow's step consumers, and the owner of a run among them.

    Members of a step are the live processes of ``view`` serving ``workflow`` whose entry lists
    the step in ``handoff_steps``. They are recomputed when ``view.generation`` changes (a
    process joined or left, or changed the steps it takes hand-offs for), not on every heartbeat.

    Args:
        view: a started registry view (kept current by its implementation).
        workflow: the workflow name.
        instance: this process's instance id (``ServiceEntry.instance``).
    """

    def __init__(self, view: RegistryView, workflow: str, instance: str) -> None:
        self.view = view
        self.workflow = workflow
        self.instance = instance
        self._generation = -1
        self._members: dict[str, tuple[str, ...]] = {}
        self._keys: dict[str, int] = {}  # instance id -> _key(instance id)

    def members(self, step: str) -> tuple[str, ...]:
        """Instance ids of the live processes that take hand-offs for ``step``, sorted."""
        if self.view.generation != self._generation:
            self._generation = self.view.generation
            self._members.clear()
        members = self._members.get(step)
        if members is None:
            members = self._members[step] = tuple(
                sorted(e.instance for e in self.view.serving(self.workflow) if step in e.handoff_steps)
            )
            for m in members:
                if m not in self._keys:
                    self._keys[m] = _key(m)
        return members

    def owner(self, run_id: str, step: str) -> str | None:
        """The instance id that owns ``run_id`` for ``step``'s deliveries, or ``None`` when no
        live process takes hand-offs for it."""
        members = self.members(step)
        if not members:
            return None
        if len(members) == 1:
            return members[0]
        run = _key(run_id)
        keys = self._keys
        return max(members, key=lambda m: (_mix(run ^ keys[m]), m))

    def is_mine(self, run_id: str, step: str) -> bool:
        """Whether this process owns ``run_id`` for ``step`` (also when nobody does: handled
        wherever it lands)."""
        owner = self.owner(run_id, step)
        return owner is None or owner == self.instance

    def router(self, step: str) -> StepRouter:
        """The ``RunRouter`` of ``step``'s consumers in this process."""
        return StepRouter(self, step)
