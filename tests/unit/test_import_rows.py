"""CSV rows -> commands: exact decimal amounts, cell formats, header checks (no store)."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import RuleViolation
from domain.registry import uuid5
from services.importer.rows import AUTO_ALLOCATION, SPECS, read_file


def invoice_row(**cells):
    row = {"customer_id": "C1", "invoice_number": "INV-1", "currency": "EUR", "issue_date": "2026-01-15"}
    row.update(cells)
    return row


def parse(kind, row):
    from services.importer.rows import parse_row

    return parse_row(SPECS[kind], {k: v for k, v in row.items() if v}, 2)


@pytest.mark.parametrize(("currency", "text", "minor"), [("EUR", "55.94", 5594), ("EUR", "0.1", 10), ("EUR", "1000000.00", 100_000_000),
                                                          ("JPY", "12000", 12000), ("KWD", "1.234", 1234), ("EUR", "19.99", 1999)])
def test_decimal_amounts_convert_exactly_to_minor_units(currency, text, minor):
    assert parse("invoices", invoice_row(currency=currency, amount=text)).command.amount_minor == minor


@pytest.mark.parametrize(("currency", "text", "rule"), [("EUR", "55.945", "minor_unit_precision"), ("JPY", "10.5", "minor_unit_precision"),
                                                         ("EUR", "1,000.00", "decimal_amount"), ("EUR", "-5.00", "positive"), ("EUR", "0", "positive"),
                                                         ("EUR", "NaN", "decimal_amount")])
def test_bad_amounts_name_the_amount_column_and_rule(currency, text, rule):
    with pytest.raises(RuleViolation) as err:
        parse("invoices", invoice_row(currency=currency, amount=text))
    assert (err.value.field, err.value.rule) == ("amount", rule)


def test_amount_minor_column_and_not_both():
    assert parse("invoices", invoice_row(amount_minor="5594")).command.amount_minor == 5594
    with pytest.raises(RuleViolation) as err:
        parse("invoices", invoice_row(amount="55.94", amount_minor="5594"))
    assert err.value.rule == "one_amount"
    with pytest.raises(RuleViolation) as err:
        parse("invoices", invoice_row(amount_minor="55.94"))
    assert (err.value.field, err.value.rule) == ("amount_minor", "integer_minor_units")


def test_installments_and_allocations_cells():
    row = parse("invoices", invoice_row(amount="900.00", installments="2026-02-15:300.00|2026-03-15:600.00"))
    assert [(i.due_date, i.amount_minor) for i in row.command.installments] == [(date(2026, 2, 15), 30000), (date(2026, 3, 15), 60000)]
    pay = {"customer_id": "C1", "payment_id": "P1", "currency": "EUR", "amount": "15.00", "value_date": "2026-02-01"}
    assert parse("payments", {**pay, "allocations": "INV:2026:1:10.00|INV-2:5.00"}).allocations == [("INV:2026:1", 1000), ("INV-2", 500)]
    assert parse("payments", {**pay, "allocations": "auto"}).allocations == AUTO_ALLOCATION
    assert parse("payments", {**pay, "allocations": ""}).allocations is None
    with pytest.raises(RuleViolation) as err:
        parse("payments", {**pay, "allocations": "INV-1:1.005"})
    assert (err.value.field, err.value.rule) == ("allocations", "minor_unit_precision")


def test_a_file_reports_every_bad_row_with_line_and_column(tmp_path):
    path = tmp_path / "invoices.csv"
    path.write_text(
        "customer_id,invoice_number,currency,amount,issue_date\n"
        "C1,INV-1,EUR,55.94,2026-01-15\n"
        "C1,INV-2,EUR,55.945,2026-01-15\n"
        "\n"
        "C1,INV-3,XXX,1.00,2026-01-15\n"
        "C1,INV-4,EUR,1.00,15.01.2026\n"
    )
    parsed = read_file("invoices", path)
    assert [r.command.amount_minor for r in parsed.rows] == [5594]
    assert [(e.line, e.column, e.rule) for e in parsed.errors] == [(3, "amount", "minor_unit_precision"), (5, "currency", "iso4217"), (6, "issue_date", "format")]
    assert str(parsed.errors[0]).startswith("invoices.csv:3: column amount: rule minor_unit_precision: ")


def test_header_must_name_known_columns(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text("customer_id,nmae,currency\nC1,Acme,EUR\n")
    errors = read_file("customers", path).errors
    assert {(e.line, e.column, e.rule) for e in errors} == {(1, "name", "required_column"), (1, "nmae", "unknown_column")}


@given(st.uuids(), st.text(max_size=40))
def test_fast_uuid5_equals_the_standard_library(namespace, name):
    fast, standard = uuid5(namespace, name), uuid.uuid5(namespace, name)
    assert fast == standard and str(fast) == str(standard) and hash(fast) == hash(standard) and fast.version == 5
    assert fast.is_safe == standard.is_safe


@given(st.uuids(), st.integers(min_value=0, max_value=10**7), st.text(max_size=40))
def test_fast_ids_equal_the_standard_library(originator_id, version, reference):
    """Ids are stored: the fast paths must give exactly the uuid5 values they always had."""
    from domain.registry import NAMESPACE, account_id, event_id, event_id_of, reference_id

    standard = uuid.uuid5(originator_id, str(version))
    assert event_id(originator_id, version) == standard == event_id_of(originator_id.bytes, version)
    assert str(event_id(originator_id, version)) == str(standard) and event_id(originator_id, version).is_safe == standard.is_safe
    assert account_id(reference) == uuid.uuid5(NAMESPACE, f"customer:{reference}")
    assert reference_id("invoice", reference) == uuid.uuid5(NAMESPACE, f"invoice:{reference}")


@given(st.decimals(min_value=0, max_value=10**12, allow_nan=False, allow_infinity=False),
       st.sampled_from(["EUR", "JPY", "KWD"]))
def test_fast_decimal_path_agrees_with_decimal_arithmetic(value, currency):
    from decimal import Decimal

    from domain.money import minor_unit_exponent, parse_decimal_amount

    text = f"{value:f}"
    scaled = Decimal(text).scaleb(minor_unit_exponent(currency))
    try:
        got = parse_decimal_amount(text, currency)
    except RuleViolation as exc:
        assert scaled != scaled.to_integral_value() or scaled <= 0, (text, exc.rule)
        return
    assert got == int(scaled)


def test_a_file_that_is_not_utf8_is_reported_not_crashed_on(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_bytes("customer_id,name,currency\nC1,Müller GmbH,EUR\n".encode("latin-1"))
    errors = read_file("customers", path).errors
    assert [(e.column, e.rule) for e in errors] == [("*", "utf8")]


@pytest.mark.parametrize("size", [1, 2, 3, 100])
def test_pieces_of_a_file_hold_what_the_whole_file_does(tmp_path, size):
    """The import parses files piece by piece: the same rows, errors, lines and counts."""
    from services.importer.rows import read_chunks

    path = tmp_path / "invoices.csv"
    path.write_text(
        "customer_id,invoice_number,currency,amount,issue_date\n"
        "C1,INV-1,EUR,55.94,2026-01-15\n"
        "C1,INV-2,EUR,55.945,2026-01-15\n"
        "\n"
        "C1,INV-3,EUR,1.00\n"
        "C1,INV-4,EUR,1.00,2026-01-16\n"
        'C1,"INV-5\nB",EUR,2.00,2026-01-17\n'
        'C1,INV-6,EUR,3.00,2026-01-18\n'
        'C1,"INV-7"x,EUR,3.00,2026-01-18\n'
    )
    whole = read_file("invoices", path)
    pieces = list(read_chunks("invoices", path, size))
    assert [(r.line, r.command) for p in pieces for r in p.rows] == [(r.line, r.command) for r in whole.rows]
    assert [e for p in pieces for e in p.errors] == whole.errors
    assert sum(p.total_rows for p in pieces) == whole.total_rows == 7
    assert all(len(p.rows) + len(p.errors) <= size for p in pieces[:-1])
    assert [(e.line, e.rule) for e in whole.errors] == [(3, "minor_unit_precision"), (5, "column_count"), (7, "type")]
    assert [r.line for r in whole.rows] == [2, 6, 9, 10]
