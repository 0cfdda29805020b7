"""Who may do what: THE role x endpoint table.

One row per endpoint of ``/v1`` (keyed by its OpenAPI operation id), listing the roles
allowed to call it. The authorization guard reads it, ``docs/api.md``'s matrix is
generated from it (``python -m services.api.docs``), and the tests check every
cell against the running app. An endpoint missing here is refused to everyone.

Segregation of duties: whoever records cash (finance) does not approve write-offs
(credit_manager); the auditor reads everything and changes nothing; admin manages keys
and nothing in the ledger. A write-off approval by its own requester is refused by the
domain (rule ``four_eyes``) whatever the roles.
"""

from __future__ import annotations

from services.apikeys import ROLES

READERS = frozenset({"sales", "credit_manager", "collector", "finance", "auditor"})

PERMISSIONS: dict[str, frozenset[str]] = {
    # customers
    "registerCustomer": frozenset({"sales"}),
    "updateCustomer": frozenset({"sales", "credit_manager"}),
    "setPaymentTerms": frozenset({"credit_manager"}),
    "listCustomers": READERS,
    "getCustomer": READERS,
    # invoices
    "issueInvoice": frozenset({"sales"}),
    "getInvoice": READERS,
    "disputeInvoice": frozenset({"collector"}),
    "resolveDispute": frozenset({"collector"}),
    "recordRecovery": frozenset({"finance"}),
    # cash and credits
    "receivePayment": frozenset({"finance"}),
    "allocatePayment": frozenset({"finance"}),
    "reversePayment": frozenset({"finance"}),
    "issueCreditNote": frozenset({"finance"}),
    # write-offs: requested by finance, decided by a credit manager
    "requestWriteOff": frozenset({"finance"}),
    "approveWriteOff": frozenset({"credit_manager"}),
    "rejectWriteOff": frozenset({"credit_manager"}),
    # credit: decided by credit managers; a large limit increase needs a second one
    "assessCredit": frozenset({"credit_manager"}),
    "setCreditLimit": frozenset({"credit_manager"}),
    "approveCreditLimitIncrease": frozenset({"credit_manager"}),
    "rejectCreditLimitIncrease": frozenset({"credit_manager"}),
    "recordCreditInsurance": frozenset({"credit_manager"}),
    "recordGuarantee": frozenset({"credit_manager"}),
    "placeCreditHold": frozenset({"credit_manager"}),
    "releaseCreditHold": frozenset({"credit_manager"}),
    # sales orders: sales places, cancels and invoices; held orders are a credit decision
    "placeSalesOrder": frozenset({"sales"}),
    "checkOrderCredit": frozenset({"sales", "credit_manager"}),
    "releaseHeldOrder": frozenset({"credit_manager"}),
    "rejectHeldOrder": frozenset({"credit_manager"}),
    "cancelSalesOrder": frozenset({"sales"}),
    "invoiceSalesOrder": frozenset({"sales"}),
    # access
    "listKeys": frozenset({"admin"}),
    "createKey": frozenset({"admin"}),
    "revokeKey": frozenset({"admin"}),
}


def allowed(operation_id: str, role: str) -> bool:
    return role in PERMISSIONS.get(operation_id, frozenset())


def markdown_matrix(routes: dict[str, str] | None = None) -> str:
    """The matrix as a Markdown table; ``routes`` maps operation id -> "METHOD /path"."""
    routes = routes or {}
    head = "| endpoint | " + " | ".join(ROLES) + " |"
    rule = "|---|" + "---|" * len(ROLES)
    rows = [
        f"| `{routes.get(op, op)}` ({op}) | " + " | ".join("yes" if r in roles else "" for r in ROLES) + " |"
        for op, roles in PERMISSIONS.items()
    ]
    return "\n".join([head, rule, *rows])
