"""The statement lines a question's financial metric is computed from, to search for beside its words.

"Is 3M capital-intensive?" or "Has AMCOR's quick ratio improved?" is answered by a balance sheet or a
cash-flow statement, pages that never say "capital-intensive" or "quick ratio": they list "purchases of
property, plant and equipment" and "total current assets". Neither an embedder nor BM25 bridges that
gap, so a question naming a metric is also searched for the line items the metric is built from
(standard financial analysis, in English and Chinese; measured in bench/retrieval_eval.py, financebench).
"""

from __future__ import annotations

import re

# (what a question says, the line items and statement names that hold the figures)
_METRICS: list[tuple[str, str]] = [
    (r"gross (?:profit )?margin", "statements of income gross profit cost of sales net sales revenue"),
    (r"operating (?:profit |income )?margin", "statements of income operating income net sales revenue"),
    (r"net (?:profit )?margin|profit margin", "statements of income net income net sales revenue"),
    (r"ebitda", "statements of income cash flows operating income depreciation amortization"),
    (r"\bebit\b|interest coverage", "operating income interest expense"),
    (r"quick ratio|acid[- ]test|current ratio|working capital",
     "balance sheets total current assets total current liabilities inventories cash equivalents"),
    (r"capital[- ]intensive|capital intensity|capex|capital expenditure|fixed asset turnover",
     "statements of cash flows purchases of property plant equipment capital expenditures total assets"),
    (r"free cash flow", "statements of cash flows net cash provided by operating activities capital expenditures"),
    (r"cash flow|operating activities|investing activities|financing activities",
     "statements of cash flows net cash provided by used in operating investing financing activities"),
    (r"effective (?:income )?tax rate", "effective tax rate provision for income taxes"),
    (r"return on assets|\broa\b", "balance sheets net income total assets"),
    (r"return on equity|\broe\b", "net income total equity shareholders"),
    (r"debt[- ]to[- ]equity|leverage ratio", "balance sheets long-term debt total liabilities shareholders equity"),
    (r"inventory turnover|days inventory", "inventories cost of sales"),
    (r"days payable|\bdpo\b", "accounts payable cost of sales"),
    (r"days sales outstanding|\bdso\b|receivable turnover", "accounts receivable revenue"),
    (r"dividend payout", "dividends paid net income"),
    (r"balance sheet", "total liabilities total assets balance sheets"),
    (r"毛利率|毛利", "营业收入 营业成本 毛利"),
    (r"净利率|净利润率", "净利润 营业收入"),
    (r"资产负债率|负债率", "负债合计 资产总计"),
    (r"流动比率|速动比率|营运资金", "流动资产合计 流动负债合计 存货 货币资金"),
    (r"净资产收益率|股东权益回报", "净利润 所有者权益合计"),
    (r"赔付率", "赔付支出 已赚保费"),
    (r"实际税率|所得税率", "所得税费用 利润总额"),
    (r"资本开支|资本支出", "购建固定资产 无形资产 支付的现金"),
    (r"经营活动|现金流", "经营活动产生的现金流量净额 投资活动 筹资活动"),
]
_COMPILED = [(re.compile(pattern, re.IGNORECASE), terms) for pattern, terms in _METRICS]


def line_items(question: str) -> str:
    """The line items of every metric `question` names, space-separated ('' when it names none)."""
    seen: dict[str, None] = {}
    for pattern, terms in _COMPILED:
        if pattern.search(question):
            seen.update(dict.fromkeys(terms.split()))
    return " ".join(seen)
