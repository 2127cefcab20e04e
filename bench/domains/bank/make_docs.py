"""Writes docs/credit_approval_procedure.docx (Northgate Savings Bank, CAP-03) with python-docx.

The .docx is committed beside this script; rerun only to change it (the questions that cite it are frozen):

    python bench/domains/bank/make_docs.py
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from docx import Document

OUT = Path(__file__).resolve().parent / "docs" / "credit_approval_procedure.docx"

SECTIONS: list[tuple[str, list[object]]] = [
    ("1. Purpose", [
        "1.1 This procedure sets who may approve retail lending, how exceptions to the Retail Lending Policy "
        "(RLP-07) and the Personal Lending Standards (PLS-04) are approved and recorded, which documents an "
        "application needs and how long they stay valid, and how decisions, appeals and complaints are handled.",
    ]),
    ("2. Approval authority", [
        "2.1 Approval authority depends on the total exposure: the new loan plus all existing Northgate lending "
        "to the applicant and to any connected party.",
        "2.2 Secured lending (residential and buy-to-let mortgages):",
        [("Total exposure", "Approver"),
         ("Up to £250,000", "Mortgage Underwriter"),
         ("£250,001 to £500,000", "Senior Underwriter"),
         ("£500,001 to £1,000,000", "Head of Retail Credit"),
         ("Above £1,000,000", "Retail Credit Committee")],
        "2.3 Unsecured lending (personal loans, arranged overdrafts and credit cards):",
        [("Total exposure", "Approver"),
         ("Up to £10,000", "Branch Lending Officer"),
         ("£10,001 to £25,000", "Lending Underwriter"),
         ("Above £25,000", "Personal Lending Manager")],
        "2.4 Arranged overdraft limits above £2,500 always need a Lending Underwriter (PLS-04, section 3.1). "
        "Applications approved automatically by the decision engine under PLS-04, section 2.3, need no "
        "mandate holder.",
        "2.5 No one may approve an application they originated, or an application from a relative or a "
        "connected person.",
        "2.6 The Retail Credit Committee meets every Tuesday. Its quorum is three members, one of whom must be "
        "the Chief Risk Officer or their deputy.",
    ]),
    ("3. Policy exceptions", [
        "3.1 An exception is any approval outside the limits of RLP-07 or PLS-04. Only the following exceptions "
        "may be approved:",
        [("Exception", "Limit", "Approver"),
         ("Loan-to-value above the band maximum", "Up to 5 percentage points above the band; not for "
          "buy-to-let or interest-only", "Head of Retail Credit"),
         ("Mortgage debt-to-income above 45%", "Up to 50%, Gold and Platinum customers only",
          "Senior Underwriter"),
         ("UK residency below 3 years", "At least 12 months' residency and a UK employment contract",
          "Senior Underwriter")],
        "3.2 Credit score overrides below 550 are not permitted.",
        "3.3 Every exception is recorded in the exceptions register within 2 working days of the decision, "
        "with the reason and the mitigating factors.",
        "3.4 Exceptions may not exceed 5% of the number of mortgage completions in any calendar month. Retail "
        "Credit Risk reports the rate to the Board Risk Committee every quarter.",
    ]),
    ("4. Documents and validity", [
        "4.1 Applications need the following documents:",
        [("Document", "Requirement"),
         ("Decision in principle", "Valid for 90 days from issue"),
         ("Proof of identity", "Current, not expired"),
         ("Proof of address", "Dated within the last 3 months"),
         ("Payslips", "The latest 3 monthly payslips, the most recent dated within 35 days of the application"),
         ("Bank statements", "The latest 3 months"),
         ("Mortgage offer", "Valid for 6 months from issue; may be extended once by up to 3 months if the "
          "valuation is re-confirmed")],
        "4.2 Application records, including declined and withdrawn applications, are retained in line with the "
        "Group Records Retention Schedule.",
    ]),
    ("5. Decisions, appeals and complaints", [
        "5.1 A decision is given within 10 working days of a complete mortgage application, and within 2 "
        "working days of a complete application for unsecured lending.",
        "5.2 A declined applicant is told the main reason for the decision, unless the law prevents it, and the "
        "name of the credit reference agency used.",
        "5.3 A declined applicant may appeal within 30 days of the decision. The appeal is reviewed by an "
        "approver one level above the original approver who took no part in the original decision, and is "
        "answered within 15 working days.",
        "5.4 Complaints are acknowledged within 3 working days and receive a final response within 8 weeks. "
        "The customer may then refer the complaint to the Financial Ombudsman Service within 6 months of the "
        "final response.",
    ]),
]


def build(out: Path = OUT) -> Path:
    doc = Document()
    props = doc.core_properties
    props.title = "Credit Approval Authority and Exceptions Procedure (CAP-03)"
    props.author = "Retail Credit Risk, Northgate Savings Bank"
    props.created = props.modified = dt.datetime(2025, 2, 20, 9, 0, 0)
    doc.add_heading("Credit Approval Authority and Exceptions Procedure", level=0)
    doc.add_paragraph("Northgate Savings Bank · Procedure CAP-03 · Version 3.0 · Effective 1 March 2025 · "
                      "Owner: Retail Credit Risk")
    for heading, body in SECTIONS:
        doc.add_heading(heading, level=1)
        for item in body:
            if isinstance(item, str):
                doc.add_paragraph(item)
                continue
            rows = list(item)  # a table: header row first
            table = doc.add_table(rows=len(rows), cols=len(rows[0]))
            table.style = "Table Grid"
            for r, row in enumerate(rows):
                for c, text in enumerate(row):
                    table.cell(r, c).text = text
                    if r == 0:
                        for run in table.cell(r, c).paragraphs[0].runs:
                            run.bold = True
    out.parent.mkdir(parents=True, exist_ok=True)
    doc.save(str(out))
    return out


if __name__ == "__main__":
    print(build())
