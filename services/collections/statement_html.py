"""The statement of account as one printable HTML page (plain HTML, inline CSS, every
value escaped)."""

from __future__ import annotations

from html import escape
from typing import Any

from domain.money import format_minor

_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2rem;color:#222}h1{font-size:1.4rem;margin:0}"
    "table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}th,td{border-bottom:1px solid #ccc;padding:.3rem .5rem;text-align:left}"
    "td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}tfoot td{font-weight:bold}.meta{color:#555;margin-bottom:1.5rem}"
    "@media print{body{margin:0}}"
)


def _money(minor: int, currency: str) -> str:
    return escape(format_minor(minor, currency))


def _table(headers: list[str], rows: list[list[str]], numeric: set[int], foot: list[str] | None = None) -> str:
    head = "".join(f'<th{" class=n" if i in numeric else ""}>{escape(h)}</th>' for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td{" class=n" if i in numeric else ""}>{c}</td>' for i, c in enumerate(r)) + "</tr>" for r in rows)
    tail = ("<tfoot><tr>" + "".join(f'<td{" class=n" if i in numeric else ""}>{c}</td>' for i, c in enumerate(foot)) + "</tr></tfoot>") if foot else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>{tail}</table>"


def render(s: dict[str, Any]) -> str:
    cur = s["currency"]
    items = [[escape(i["invoice_number"]), str(i["installment"]), escape(i["issue_date"]), escape(i["due_date"]),
              str(i["days_past_due"]), escape(i["bucket"]), _money(i["open_minor"], i["currency"])] for i in s["open_items"]]
    docs = [[escape(d["date"]), escape(d["document"]), escape(d["kind"].replace("_", " ")), _money(d["amount_minor"], cur)]
            for d in s["payments"] + s["reversals"] + s["credits"]]
    aging = [[escape(a["bucket"]), _money(a["amount_minor"], cur)] for a in s["aging"]]
    return (
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>Statement of account {escape(s['customer_id'])} {escape(s['as_of'])}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>Statement of account - {escape(s['name'])}</h1>"
        f"<div class=meta>Customer {escape(s['customer_id'])} &middot; as of {escape(s['as_of'])} &middot; terms {s['payment_terms_days']} days</div>"
        "<h2>Open items</h2>"
        + _table(["Invoice", "Inst.", "Issued", "Due", "Days past due", "Bucket", "Open"], items, {4, 6},
                 ["Total", "", "", "", "", "", _money(s["total_open_minor"], cur)])
        + "<h2>Payments and credits</h2>" + _table(["Date", "Document", "Kind", "Amount"], docs, {3})
        + "<h2>Aging</h2>" + _table(["Bucket", "Amount"], aging, {1})
        + _table(["", "Amount"], [["Total open", _money(s["total_open_minor"], cur)], ["Unapplied cash", _money(s["unapplied_cash_minor"], cur)],
                                  ["Open credits", _money(s["open_credits_minor"], cur)]], {1}, ["Balance", _money(s["balance_minor"], cur)])
        + "</body></html>\n"
    )
