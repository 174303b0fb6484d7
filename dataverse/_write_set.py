"""Many writes in few requests: one `$batch` change set (all or nothing), CreateMultiple, UpdateMultiple or
UpsertMultiple (all or nothing, one table), or `$batch` with `Prefer: odata.continue-on-error` (each on its own).

What is sent, following "Execute batch operations using the Web API" and "Use bulk operation messages":
- atomic, every write the same create, update (by id, no etag) or upsert on one table, none binding to a row
  created in the set: `<entity set>/Microsoft.Dynamics.CRM.<Create|Update|Upsert>Multiple`, each target carrying
  its `@odata.type`. Not every table supports these messages: a refusal that says so is remembered per table, and
  any failure falls back to the change set, which writes, or names the write that fails;
- atomic otherwise: one change set of at most 1,000 requests (the `$batch` limit); a write that binds to, or
  changes, a row created earlier in the set refers to it as `$<Content-ID>`, as the page documents;
- not atomic: `$batch` requests of `CHUNK` writes each, one after the other, with continue-on-error.

Retry-safe like single writes: every create carries its id. A 429 on the whole request waits `Retry-After` and
resends (the transport does it: nothing ran); a throttled request inside a batch is resent the same way. A lost
answer (dropped connection, timeout, 5xx) is resolved by reading back what landed, one query per table and 250
ids: a create whose row exists landed, a delete whose row is gone landed (the rule single writes follow). A
change set lands whole or not at all, so one piece of evidence decides it; what did not land, and writes that
repeat safely (upserts, updates and deletes without an etag), are sent again; anything else is `unknown`.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

from ._batch import (
    MAX_BATCH_REQUESTS,
    MULTIPLE,
    PlannedWrite,
    RowWrite,
    batch_requests,
    binds,
    bound_path,
    bulk_target,
    created_paths,
    entity_id,
    is_unsupported,
    plan_write,
    response_error,
    response_ids,
    send_batch,
)
from ._errors import NOTHING_WRITTEN, DataverseError, DuplicateRecord, NotFound, ServiceError, Throttled
from ._metadata import TableSummary
from ._multipart import BatchResponse
from ._odata import ODataQuery, identifier, key_segment

if TYPE_CHECKING:
    from ._client import DataverseClient

RowOutcomeKind = Literal["written", "not written", "unknown"]
Progress = Callable[[int, int], Awaitable[None]]  # (writes settled, writes in all)

CHUNK: Final = 100  # writes per $batch when each stands alone: short requests, progress, a small lost answer
READ_BACK_IDS: Final = 250  # ids per read-back query: its URL stays far below the service's limit


@dataclass
class RowOutcome:
    """What became of one write: its row's id when known, and its own error when it failed."""

    outcome: RowOutcomeKind
    id: str | None = None
    error: DataverseError | None = None


@dataclass
class WriteSetResult:
    """The outcome of each write, in order; `sent` says what was sent; `error` what stopped an atomic set (its
    other writes were rolled back) or left it unknown."""

    outcomes: list[RowOutcome]
    sent: list[str] = field(default_factory=list)
    error: DataverseError | None = None


class WriteSet:
    """Runs one set of writes through one client; `run` sends them and says what became of each."""

    def __init__(
        self, client: DataverseClient, writes: Sequence[RowWrite], *, atomic: bool, progress: Progress | None
    ) -> None:
        self.client = client
        self.transport = client.transport
        self.writes = writes
        self.atomic = atomic
        self.progress = progress
        self.sent: list[str] = []
        self.lost = False  # a bulk message's answer was lost: the change set after it may meet its rows

    async def run(self) -> WriteSetResult:
        if self.atomic and len(self.writes) > MAX_BATCH_REQUESTS:
            raise DataverseError(
                f"An all-or-nothing set holds at most {MAX_BATCH_REQUESTS} writes (one $batch change set), not "
                f"{len(self.writes)}. {NOTHING_WRITTEN}",
                hint="Split the writes into sets that may each succeed or fail alone, or send them not atomically.",
            )
        tables = {write.table: await self.client.resolve_table(write.table) for write in self.writes}
        planned = [plan_write(index, write, tables[write.table]) for index, write in enumerate(self.writes)]
        if not planned:
            return WriteSetResult([], self.sent)
        if not self.atomic:
            outcomes: list[RowOutcome] = []
            for start in range(0, len(planned), CHUNK):
                outcomes += await self._each_alone(planned[start : start + CHUNK])
                await self._report(len(outcomes))
            return WriteSetResult(outcomes, self.sent)
        message = self._multiple_message(planned)
        result = await self._multiple(planned, message) if message else None
        if result is None:
            result = await self._change_set(planned)
        await self._report(len(planned))
        return result

    async def _report(self, settled: int) -> None:
        if self.progress is not None:
            await self.progress(settled, len(self.writes))

    # -- CreateMultiple, UpdateMultiple, UpsertMultiple ---------------------------------------------------------

    def _multiple_message(self, planned: list[PlannedWrite]) -> str | None:
        """The bulk message that can carry every write, if one can: same action, same table, nothing bound to a
        row created in the set (the service may write the targets in any order), no etag, updates by id."""
        first = planned[0]
        message = MULTIPLE.get(first.write.action)
        if message is None or len(planned) < 2:
            return None
        if (message, first.table.logical_name) in self.client.unsupported_messages:
            return None
        created = created_paths(planned)
        for item in planned:
            if item.write.action != first.write.action or item.table.logical_name != first.table.logical_name:
                return None
            if item.write.etag is not None or (item.write.action == "update" and item.id is None):
                return None
            if any(bound_path(value) in created for value in binds(item.write.values)):
                return None
        return message

    async def _multiple(self, planned: list[PlannedWrite], message: str) -> WriteSetResult | None:
        """The writes through one bulk message; None when the change set must write them instead."""
        table = planned[0].table
        targets = [bulk_target(item, message) for item in planned]
        path = f"{identifier(table.entity_set_name, 'entity set')}/Microsoft.Dynamics.CRM.{message}"
        self.sent.append(f"{message} of {len(planned)} {table.logical_name} rows")
        try:
            await self.transport.send(
                "POST", self.transport.url(path), repeatability="unsafe", json={"Targets": targets}
            )
        except DataverseError as error:
            if error.may_have_written:
                self.lost = True
                if await self._landed_together(planned):
                    return _all(planned, "written", self.sent)
                return None  # nothing landed, or updates and upserts that repeat safely: the change set sends them
            if is_unsupported(error, message):
                self.client.unsupported_messages.add((message, table.logical_name))
            return None  # nothing was written; the change set writes, or names the write that fails
        return _all(planned, "written", self.sent)

    # -- one change set: all or nothing ------------------------------------------------------------------------

    async def _change_set(self, planned: list[PlannedWrite]) -> WriteSetResult:
        requests = batch_requests(self.transport, planned, change_set=True)
        by_content_id = {request.content_id: item for request, item in zip(requests, planned, strict=True)}
        attempt, lost = 0, self.lost
        while True:
            attempt += 1
            self.sent.append(f"$batch with one change set of {len(planned)} writes")
            try:
                responses = await send_batch(self.transport, [requests], continue_on_error=False)
            except DataverseError as error:
                if not error.may_have_written and not lost:
                    return _all(planned, "not written", self.sent, _nothing_written(error))
                lost = lost or error.may_have_written
                landed = await self._landed_together(planned)
                if landed:
                    return _all(planned, "written", self.sent)
                repeatable = landed is False or all(item.repeats_safely for item in planned)
                delay = self._delay(attempt, None) if error.may_have_written and repeatable else None
                if delay is None:
                    kind: RowOutcomeKind = "not written" if landed is False else "unknown"
                    return _all(planned, kind, self.sent, _set_unclear(error, len(planned), kind))
                await self.transport.retry.sleep(delay)
                continue
            failed = next((response for response in responses if not response.is_success), None)
            if failed is None:
                return _all(planned, "written", self.sent, ids=response_ids(planned, responses))
            failure = response_error(failed)
            if isinstance(failure, Throttled):
                delay = self._delay(attempt, failure.retry_after)
                if delay is not None:  # a throttled change set was not run
                    await self.transport.retry.sleep(delay)
                    continue
            landed = await self._landed_together(planned) if lost else False
            if landed:
                return _all(planned, "written", self.sent)  # the earlier attempt landed: the repeat collided
            culprit = by_content_id.get(failed.content_id) or (planned[0] if len(planned) == 1 else None)
            kind = "not written" if landed is False else "unknown"
            result = _all(planned, kind, self.sent)
            result.error = _rolled_back(failure, culprit, len(planned), kind)
            if culprit is not None:
                result.outcomes[culprit.index - planned[0].index].error = failure
            return result

    async def _landed_together(self, planned: list[PlannedWrite]) -> bool | None:
        """Whether writes that land together did: their creates' rows exist, else their deletes' rows are gone;
        None when nothing can tell (or reading back failed). One table's rows tell it all: one query."""
        creates = [item for item in planned if item.write.action == "create"]
        deletes = [item for item in planned if item.write.action == "delete" and item.id is not None]
        creates = [item for item in creates if item.table == creates[0].table][:READ_BACK_IDS]
        deletes = [item for item in deletes if item.table == deletes[0].table][:READ_BACK_IDS]
        try:
            if creates:
                return bool(await self._existing(creates))
            if deletes:
                return len(await self._existing(deletes)) < len(deletes)
        except DataverseError:
            return None
        return None

    # -- each write alone: $batch with continue-on-error --------------------------------------------------------

    async def _each_alone(self, planned: list[PlannedWrite]) -> list[RowOutcome]:
        first = planned[0].index
        outcomes: dict[int, RowOutcome] = {}
        pending = planned
        attempt, delay = 0, 0.0
        while pending:
            attempt += 1
            if delay:
                await self.transport.retry.sleep(delay)
            retry_after: float | None = None
            again: list[PlannedWrite] = []
            self.sent.append(f"$batch of {len(pending)} writes, continue-on-error")
            try:
                responses = await send_batch(
                    self.transport, batch_requests(self.transport, pending, change_set=False), continue_on_error=True
                )
            except DataverseError as error:
                if not error.may_have_written:
                    outcomes |= await self._settle_unanswered(pending, error)
                    break
                again = await self._after_lost_answer(pending, outcomes, error)
            else:
                for position, item in enumerate(pending):
                    response = responses[position] if position < len(responses) else None
                    outcome = _alone_outcome(item, response)
                    if isinstance(outcome.error, Throttled):
                        item.error = outcome.error
                        again.append(item)  # not run: sent again after Retry-After
                        retry_after = max(retry_after or 0.0, outcome.error.retry_after or 1.0)
                    else:
                        outcomes[item.index] = outcome
            next_delay = self._delay(attempt, retry_after) if again else None
            if again and next_delay is None:
                outcomes |= await self._settle_unanswered(again, None)
                break
            pending, delay = again, next_delay or 0.0
        return [outcomes[index] for index in range(first, first + len(planned))]

    async def _after_lost_answer(
        self, pending: list[PlannedWrite], outcomes: dict[int, RowOutcome], error: DataverseError
    ) -> list[PlannedWrite]:
        """Settle what the read-back tells; the writes to send again (they did not land, or repeat safely)."""
        landed = await self._landed_each(pending)
        again = []
        for item in pending:
            item.lost = True
            known = landed.get(item.index)
            if known:
                outcomes[item.index] = RowOutcome("written", item.id)
            elif known is False or item.repeats_safely:
                item.error = error
                again.append(item)
            else:
                outcomes[item.index] = RowOutcome("unknown", item.id, _write_unclear(error, item))
        return again

    async def _settle_unanswered(
        self, items: list[PlannedWrite], error: DataverseError | None
    ) -> dict[int, RowOutcome]:
        """Writes whose last attempt certainly did not run, because of `error` (None: each one's own); one that
        an earlier, lost attempt may have written is read back."""
        landed = await self._landed_each([item for item in items if item.lost])
        outcomes = {}
        for item in items:
            cause = error or item.error or _no_answer()
            if item.lost and landed.get(item.index):
                outcomes[item.index] = RowOutcome("written", item.id)
            elif item.lost and landed.get(item.index) is None:
                outcomes[item.index] = RowOutcome("unknown", item.id, _write_unclear(cause, item))
            else:
                outcomes[item.index] = RowOutcome("not written", item.id, _nothing_written(cause))
        return outcomes

    async def _landed_each(self, planned: list[PlannedWrite]) -> dict[int, bool | None]:
        """For each create and delete by id: whether it landed (None: reading back failed)."""
        readable = [item for item in planned if item.id is not None and item.write.action in ("create", "delete")]
        try:
            existing = await self._existing(readable)
        except DataverseError:
            return dict.fromkeys((item.index for item in readable), None)
        return {item.index: (item.id in existing) == (item.write.action == "create") for item in readable if item.id}

    def _delay(self, attempt: int, retry_after: float | None) -> float | None:
        """How long to wait before sending again, or None when the retry policy says stop."""
        policy = self.transport.retry
        if attempt >= policy.max_attempts:
            return None
        if retry_after is None:
            return policy.backoff(attempt)
        return retry_after if retry_after <= policy.max_retry_after else None

    async def _existing(self, planned: list[PlannedWrite]) -> set[str]:
        """The ids of `planned` that name a row now: one query per table and `READ_BACK_IDS` ids."""
        by_table: dict[str, tuple[TableSummary, list[str]]] = {}
        for item in planned:
            if item.id is not None:
                by_table.setdefault(item.table.logical_name, (item.table, []))[1].append(item.id)
        found: set[str] = set()
        for table, ids in by_table.values():
            key = identifier(table.primary_id)
            for start in range(0, len(ids), READ_BACK_IDS):
                values = ",".join(f"'{row_id}'" for row_id in ids[start : start + READ_BACK_IDS])
                query = ODataQuery(
                    select=[key], filter=f"Microsoft.Dynamics.CRM.In(PropertyName='{key}',PropertyValues=[{values}])"
                )
                async for page in self.client.query(table.logical_name, query, annotations=False):
                    found.update(str(row[key]).lower() for row in page.rows if row.get(key))
        return found


def _all(
    planned: list[PlannedWrite],
    kind: RowOutcomeKind,
    sent: list[str],
    error: DataverseError | None = None,
    *,
    ids: list[str | None] | None = None,
) -> WriteSetResult:
    return WriteSetResult(
        [RowOutcome(kind, (ids[number] if ids else None) or item.id) for number, item in enumerate(planned)],
        sent,
        error,
    )


def _alone_outcome(item: PlannedWrite, response: BatchResponse | None) -> RowOutcome:
    if response is None:
        # With continue-on-error the service answers every request it ran; one it did not answer did not run.
        return RowOutcome("not written", item.id, _nothing_written(_no_answer()))
    if response.is_success:
        return RowOutcome("written", item.id or entity_id(response))
    error = response_error(response)
    if item.lost and (
        (item.write.action == "create" and isinstance(error, DuplicateRecord))
        or (item.write.action == "delete" and isinstance(error, NotFound))
    ):
        return RowOutcome("written", item.id)  # the earlier attempt, whose answer was lost, did it
    if item.lost:
        return RowOutcome("unknown", item.id, _write_unclear(error, item))
    return RowOutcome("not written", item.id, _nothing_written(error))


def _no_answer() -> DataverseError:
    return DataverseError("The service did not answer for this write.")


def _nothing_written(error: DataverseError) -> DataverseError:
    error.written = NOTHING_WRITTEN
    return error


def _write_unclear(error: DataverseError, item: PlannedWrite) -> DataverseError:
    error = copy.copy(error)  # one lost answer, a sentence for each write it leaves unknown
    row = f"{item.table.logical_name} row {item.id or key_segment(item.write.key or '')}"
    error.written = f"The {item.write.action} of the {row} may or may not have been applied: read the row to check."
    return error


def _set_unclear(error: DataverseError, count: int, kind: RowOutcomeKind) -> DataverseError:
    if kind == "not written":
        error.written = f"Reading back showed that none of the {count} writes was applied. {NOTHING_WRITTEN}"
    else:
        error.written = (
            f"The {count} writes may or may not have been applied, all together or none (one change set): "
            "read the rows to check."
        )
    return error


def _rolled_back(error: ServiceError, culprit: PlannedWrite | None, count: int, kind: RowOutcomeKind) -> DataverseError:
    which = (
        f"writes[{culprit.index}] ({culprit.write.action} of {culprit.table.logical_name})" if culprit else "a write"
    )
    code = f" ({error.code_text})" if error.code is not None else ""
    rolled = DataverseError(
        f"The change set of {count} writes failed at {which}: Dataverse answered {error.status}{code}: {error.message}",
        hint=error.hint,
    )
    if kind == "not written":
        rolled.written = f"{NOTHING_WRITTEN} The change set was rolled back."
        return rolled
    return _set_unclear(rolled, count, kind)
