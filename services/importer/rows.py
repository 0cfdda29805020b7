"""CSV rows -> ledger commands, with errors that name file, line, column and rule.

Each file kind has a fixed set of columns (documented in the README). A row becomes the
same command Struct the CLI and the HTTP API decode (:mod:`domain.commands`), through the
same validation, so an imported invoice obeys exactly the rules of a typed-in one.
Amounts are written as decimals (``55.94``) and converted exactly to minor units by
:func:`domain.money.parse_decimal_amount`, or given as integers in an ``amount_minor``
column. Empty cells mean "not given" (the command's default applies).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from domain import commands as c
from domain.errors import RuleViolation
from domain.money import parse_decimal_amount
from services.validation import validation_to_rule

#: A payment's ``allocations`` cell with this value applies the cash oldest due first.
AUTO_ALLOCATION = "auto"


@dataclass(frozen=True, slots=True)
class RowError:
    file: str
    line: int
    column: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: column {self.column}: rule {self.rule}: {self.message}"


@dataclass(frozen=True, slots=True)
class Spec:
    """The columns of one file kind and the command a row becomes."""

    kind: str
    command: type[c.Command]
    required: tuple[str, ...]
    optional: tuple[str, ...]
    has_amount: bool = True

    @property
    def columns(self) -> set[str]:
        amount = {"amount", "amount_minor"} if self.has_amount else set()
        return {*self.required, *self.optional, *amount}


SPECS: dict[str, Spec] = {
    "customers": Spec("customers", c.RegisterCustomer, ("customer_id", "name", "currency"),
                      ("payment_terms_days", "region", "industry", "salesperson", "country", "email"), has_amount=False),
    "invoices": Spec("invoices", c.IssueInvoice, ("customer_id", "invoice_number", "currency", "issue_date"),
                     ("due_date", "installments", "description", "sales_order_id")),
    "credit_notes": Spec("credit_notes", c.IssueCreditNote, ("customer_id", "credit_note_number", "currency", "issue_date"),
                         ("invoice_number", "reason")),
    "payments": Spec("payments", c.ReceivePayment, ("customer_id", "payment_id", "currency", "value_date"),
                     ("method", "reference", "allocations")),
}


@dataclass(slots=True)
class ParsedRow:
    line: int
    command: Any
    amount_column: str = "amount"
    #: payments only: None (leave unallocated), AUTO_ALLOCATION, or [(invoice_number, minor)]
    allocations: Any = None


@dataclass(slots=True)
class ParsedFile:
    kind: str
    name: str
    rows: list[ParsedRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    total_rows: int = 0


def column_of(field_name: str, amount_column: str) -> str:
    """Map a command field (``installments[0].amount_minor``) to the CSV column."""
    base = field_name.split("[", 1)[0].split(".", 1)[0]
    return amount_column if base == "amount_minor" else base


def _amount(raw: dict[str, str], currency: str) -> int:
    decimal_text, minor_text = raw.pop("amount", ""), raw.pop("amount_minor", "")
    if decimal_text and minor_text:
        raise RuleViolation("amount", "one_amount", "give either amount or amount_minor, not both")
    if minor_text:
        if not minor_text.isdigit():
            raise RuleViolation("amount_minor", "integer_minor_units", f"{minor_text!r} is not a whole number of minor units")
        return int(minor_text)
    if not decimal_text:
        raise RuleViolation("amount", "required", "an amount (or amount_minor) is required")
    return parse_decimal_amount(decimal_text, currency, "amount")


def _pairs(text: str, column: str) -> Iterator[tuple[str, str]]:
    """``a:1.00|b:2.00`` -> (a, 1.00), (b, 2.00); the key may itself contain ``:``."""
    for n, part in enumerate(text.split("|"), start=1):
        key, sep, value = part.strip().rpartition(":")
        if not sep or not key or not value:
            raise RuleViolation(column, "format", f"entry {n} {part!r} is not KEY:AMOUNT (entries separated by '|')")
        yield key, value


def parse_installments(text: str, currency: str) -> list[dict[str, Any]]:
    return [{"due_date": due, "amount_minor": parse_decimal_amount(amount, currency, "installments")} for due, amount in _pairs(text, "installments")]


def parse_allocations(text: str, currency: str) -> Any:
    if not text:
        return None
    if text.strip().lower() == AUTO_ALLOCATION:
        return AUTO_ALLOCATION
    return [(number, parse_decimal_amount(amount, currency, "allocations")) for number, amount in _pairs(text, "allocations")]


def parse_row(spec: Spec, raw: dict[str, str], line: int) -> ParsedRow:
    """One row (column -> non-empty cell) -> a :class:`ParsedRow`; raises RuleViolation
    whose field is a column."""
    amount_column = "amount_minor" if "amount_minor" in raw and "amount" not in raw else "amount"
    allocations = None
    currency = raw.get("currency", "")
    try:
        if spec.has_amount:
            if not currency:
                raise RuleViolation("currency", "required", "a currency is required")
            raw["amount_minor"] = _amount(raw, currency)
        if "installments" in raw:
            raw["installments"] = parse_installments(raw["installments"], currency)
        if spec.kind == "payments":
            allocations = parse_allocations(raw.pop("allocations", ""), currency)
        command = msgspec.convert(raw, spec.command, strict=False)
    except msgspec.ValidationError as exc:  # what services.validation.convert does, one call less per row
        rule = validation_to_rule(exc)
        raise RuleViolation(column_of(rule.field, amount_column), rule.rule, rule.message) from None
    except RuleViolation as exc:
        raise RuleViolation(column_of(exc.field, amount_column), exc.rule, exc.message) from None
    return ParsedRow(line, command, amount_column, allocations)


def read_file(kind: str, path: Path) -> ParsedFile:
    """Parse every row of one CSV file, collecting every bad row (not only the first).
    A file that is not UTF-8 or not CSV at some line is reported there and read no further."""
    return next(read_chunks(kind, path))


def read_chunks(kind: str, path: Path, size: int | None = None) -> Iterator[ParsedFile]:
    """:func:`read_file` in consecutive pieces of ``size`` rows (the whole file when
    None), each read only when asked for: an import checks, and its writer inserts,
    the first rows of a file while the rest is still to be parsed. Header errors and a
    file that stops being UTF-8 or CSV are reported in the piece where they are found,
    which is then the last."""
    spec, name = SPECS[kind], path.name
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header: list[str] | None = None
        more = True
        while more:
            parsed = ParsedFile(kind=kind, name=name)
            try:
                if header is None:
                    header = [h.strip() for h in next(reader, [])]
                    bad_header = _check_header(spec, header, name)
                    if bad_header:
                        parsed.errors.extend(bad_header)
                        more = False
                if more:
                    more = _read_rows(spec, header, reader, parsed, size)
            except UnicodeDecodeError as exc:
                parsed.errors.append(RowError(name, reader.line_num + 1, "*", "utf8", f"the file is not UTF-8 text ({exc.reason})"))
                more = False
            except csv.Error as exc:
                parsed.errors.append(RowError(name, reader.line_num, "*", "csv", str(exc)))
                more = False
            yield parsed


def _read_rows(spec: Spec, header: list[str], reader: Any, parsed: ParsedFile, size: int | None) -> bool:
    """Parse rows into ``parsed`` until ``size`` rows were counted (True: there may be
    more) or the file ends (False)."""
    line, width, name = reader.line_num, len(header), parsed.name
    keep, report = parsed.rows.append, parsed.errors.append
    counted = 0
    try:
        for cells in reader:
            start, line = line + 1, reader.line_num
            if not "".join(cells).strip():  # a blank line (every cell empty or spaces)
                continue
            counted += 1
            if len(cells) != width:
                report(RowError(name, start, "*", "column_count", f"{len(cells)} cells, the header has {width}"))
            else:
                try:
                    keep(parse_row(spec, {column: cell for column, cell in zip(header, cells) if cell}, start))
                except RuleViolation as exc:
                    report(RowError(name, start, exc.field, exc.rule, exc.message))
            if counted == size:
                return True
        return False
    finally:  # also when the file turns out not to be UTF-8 or CSV at some line
        parsed.total_rows += counted


def _check_header(spec: Spec, header: list[str], name: str) -> list[RowError]:
    errors = [RowError(name, 1, col, "required_column", "the header lacks this column") for col in spec.required if col not in header]
    if spec.has_amount and not {"amount", "amount_minor"} & set(header):
        errors.append(RowError(name, 1, "amount", "required_column", "the header needs amount or amount_minor"))
    errors += [RowError(name, 1, col, "unknown_column", f"expected only {', '.join(sorted(spec.columns))}") for col in header if col not in spec.columns]
    duplicates = {col for col in header if header.count(col) > 1}
    errors += [RowError(name, 1, col, "duplicate_column", "the header names this column twice") for col in sorted(duplicates)]
    return errors
