"""Seed records of the demo insurer (长青人寿 / Evergreen Life), consistent with `corpus/`.

One source for the demo business database (the chain's tools) and for the tool-call examples of the
domain training set, so the adapter learns the same identifiers the tools answer for.
"""

from __future__ import annotations

CUSTOMERS: list[dict[str, str]] = [
    {"customer_id": "CUS-1001", "name": "张伟", "phone": "138-0000-1001", "email": "zhang.wei@example.com"},
    {"customer_id": "CUS-1002", "name": "李娜", "phone": "138-0000-1002", "email": "li.na@example.com"},
    {"customer_id": "CUS-1003", "name": "王芳", "phone": "138-0000-1003", "email": "wang.fang@example.com"},
    {"customer_id": "CUS-1004", "name": "Chen Jie", "phone": "138-0000-1004", "email": "chen.jie@example.com"},
    {"customer_id": "CUS-1005", "name": "刘洋", "phone": "138-0000-1005", "email": "liu.yang@example.com"},
    {"customer_id": "CUS-1006", "name": "Sarah Lin", "phone": "138-0000-1006", "email": "sarah.lin@example.com"},
]

# status: active | lapsed | cancelled (犹豫期退保) | expired
POLICIES: list[dict[str, object]] = [
    {"policy_id": "POL-2024-0001", "customer_id": "CUS-1001", "product": "安心意外伤害保险", "status": "active",
     "sum_insured": 500000, "premium": 680, "start_date": "2024-03-01", "end_date": "2025-02-28"},
    {"policy_id": "POL-2024-0002", "customer_id": "CUS-1001", "product": "团体意外险", "status": "active",
     "sum_insured": 200000, "premium": 160, "start_date": "2024-06-15", "end_date": "2025-06-14"},
    {"policy_id": "POL-2024-0003", "customer_id": "CUS-1002", "product": "安心意外伤害保险", "status": "lapsed",
     "sum_insured": 300000, "premium": 420, "start_date": "2024-01-10", "end_date": "2025-01-09"},
    {"policy_id": "POL-2024-0004", "customer_id": "CUS-1003", "product": "安心意外伤害保险", "status": "cancelled",
     "sum_insured": 100000, "premium": 150, "start_date": "2024-05-20", "end_date": "2025-05-19"},
    {"policy_id": "POL-2024-0005", "customer_id": "CUS-1004", "product": "安心意外伤害保险", "status": "active",
     "sum_insured": 1000000, "premium": 1350, "start_date": "2024-08-01", "end_date": "2025-07-31"},
    {"policy_id": "POL-2024-0006", "customer_id": "CUS-1005", "product": "团体意外险", "status": "expired",
     "sum_insured": 150000, "premium": 120, "start_date": "2023-04-01", "end_date": "2024-03-31"},
    {"policy_id": "POL-2024-0007", "customer_id": "CUS-1006", "product": "安心意外伤害保险", "status": "active",
     "sum_insured": 800000, "premium": 1080, "start_date": "2024-09-12", "end_date": "2025-09-11"},
    {"policy_id": "POL-2024-0008", "customer_id": "CUS-1002", "product": "团体意外险", "status": "active",
     "sum_insured": 250000, "premium": 200, "start_date": "2024-07-01", "end_date": "2025-06-30"},
]

# status: registered | under_review | investigating | approved | paid | declined
CLAIMS: list[dict[str, object]] = [
    {"claim_id": "CLM-2024-0001", "policy_id": "POL-2024-0001", "type": "medical", "status": "paid",
     "amount_claimed": 3200, "amount_paid": 2790, "reported": "2024-05-08", "updated": "2024-05-15"},
    {"claim_id": "CLM-2024-0002", "policy_id": "POL-2024-0005", "type": "disability", "status": "investigating",
     "amount_claimed": 350000, "amount_paid": 0, "reported": "2024-09-02", "updated": "2024-09-20"},
    {"claim_id": "CLM-2024-0003", "policy_id": "POL-2024-0002", "type": "medical", "status": "under_review",
     "amount_claimed": 4800, "amount_paid": 0, "reported": "2024-10-11", "updated": "2024-10-12"},
    {"claim_id": "CLM-2024-0004", "policy_id": "POL-2024-0003", "type": "medical", "status": "declined",
     "amount_claimed": 1500, "amount_paid": 0, "reported": "2024-03-18", "updated": "2024-03-25"},
    {"claim_id": "CLM-2024-0005", "policy_id": "POL-2024-0007", "type": "death", "status": "approved",
     "amount_claimed": 800000, "amount_paid": 0, "reported": "2024-10-30", "updated": "2024-11-06"},
    {"claim_id": "CLM-2024-0006", "policy_id": "POL-2024-0008", "type": "medical", "status": "registered",
     "amount_claimed": 620, "amount_paid": 0, "reported": "2024-11-18", "updated": "2024-11-18"},
]

ORDERS: list[dict[str, object]] = [
    {"order_id": "ORD-5001", "customer_id": "CUS-1001", "item": "安心意外伤害保险 续保", "status": "paid",
     "amount": 680, "created": "2025-02-10"},
    {"order_id": "ORD-5002", "customer_id": "CUS-1004", "item": "安心意外伤害保险 新投保", "status": "pending_payment",
     "amount": 1350, "created": "2024-07-28"},
    {"order_id": "ORD-5003", "customer_id": "CUS-1006", "item": "团体意外险 加保", "status": "refunded",
     "amount": 300, "created": "2024-10-02"},
]

STATUS_ZH = {
    "active": "有效", "lapsed": "已失效（欠缴保费）", "cancelled": "已退保（犹豫期内）", "expired": "已满期",
    "registered": "已登记", "under_review": "审核中", "investigating": "调查中", "approved": "已核定待支付",
    "paid": "已赔付", "declined": "已拒赔", "pending_payment": "待支付", "refunded": "已退款",
}
CLAIM_TYPE_ZH = {"medical": "意外医疗", "disability": "意外伤残", "death": "意外身故"}
