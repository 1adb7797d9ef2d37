"""The credit audit: checks the ledger rule over every render.

Per render: at most one charge and at most one refund; a refund only of a charge, for the same
amount; and the net charge equals the cost if and only if a customer's job delivered the render
(an operator's re-render delivers for free); a cancelled render keeps its charge only when its
image had been made. Renders still in flight are checked once settled.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass

from render_assets.persistence import ledger, renders
from render_assets.persistence.database import Session
from render_assets.persistence.models import CreditTransaction, Render, RenderStatus


@dataclass(frozen=True)
class Mismatch:
    render_id: str
    status: str | None
    problem: str
    charges: int
    refunds: int
    net: int  # credits taken from the organization for this render, after refunds
    cost: int | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def audit(session: Session) -> list[Mismatch]:
    entries: dict[str, list[CreditTransaction]] = defaultdict(list)
    for row in ledger.render_moves(session):
        entries[str(row.render_id)].append(row)
    rows = {render.id: render for render in renders.every_render(session)}
    mismatches = []
    for render_id in sorted(set(entries) | set(rows)):
        render = rows.get(render_id)
        problem = _problem(render, entries.get(render_id, []))
        if problem:
            moves = entries.get(render_id, [])
            mismatches.append(
                Mismatch(
                    render_id=render_id,
                    status=render.status if render else None,
                    problem=problem,
                    charges=sum(1 for move in moves if move.kind == "charge"),
                    refunds=sum(1 for move in moves if move.kind == "refund"),
                    net=-sum(move.amount for move in moves),
                    cost=render.credit_cost if render else None,
                )
            )
    return mismatches


def _problem(render: Render | None, moves: list[CreditTransaction]) -> str | None:
    charges = [move for move in moves if move.kind == "charge"]
    refunds = [move for move in moves if move.kind == "refund"]
    net = -sum(move.amount for move in moves)
    if len(charges) > 1 or len(refunds) > 1:
        return "more than one charge or refund"
    if refunds and not charges:
        return "refund without a charge"
    if charges and refunds and refunds[0].amount != -charges[0].amount:
        return "refund differs from the charge"
    if render is None:
        return "ledger entries for an unknown render" if moves else None
    if render.status in (*RenderStatus.IN_FLIGHT, RenderStatus.IN_REVIEW):
        return None  # not settled yet: the reconciler or a reviewer sees to it
    if render.status == RenderStatus.CANCELLED:
        # Cancelled after its image was made: the provider was paid, so the charge stands
        # (unless the deployment refunds those too); before: refunded in full.
        expected = render.credit_cost if render.cancel_charged else 0
        if net != expected:
            return f"cancelled ({'charge stands' if render.cancel_charged else 'refunded'}) but charged {net}"
        return None
    delivered = render.status == RenderStatus.COMPLETED and render.delivered_via == "bullmq"
    if delivered and net != render.credit_cost:
        return f"delivered to the customer but charged {net} instead of {render.credit_cost}"
    if not delivered and net != 0:
        return f"not delivered to the customer but charged {net}"
    return None
