"""OpenAI-format schemas of the demo business tools, as the model sees them through the chat template.

The domain training set embeds these so the adapter learns the exact names and arguments that the
chain's tool registry executes (a test checks that the two agree).
"""

from __future__ import annotations


def _fn(name: str, description: str, **props: tuple[str, str]) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {k: {"type": t, "description": d} for k, (t, d) in props.items()},
                "required": list(props),
            },
        },
    }


DEMO_TOOL_SCHEMAS: list[dict] = [
    _fn("get_policy_status", "Policy status, dates, sum insured (保单状态)",
        policy_id=("string", "e.g. POL-2024-0001")),
    _fn("get_claim_status", "Claim status and amounts (理赔进度)",
        claim_id=("string", "e.g. CLM-2024-0001")),
    _fn("get_order_status", "Order payment status (订单状态)",
        order_id=("string", "e.g. ORD-5001")),
    _fn("list_customer_policies", "A customer's policies (客户保单)",
        customer_id=("string", "e.g. CUS-1001")),
    _fn("calculator", "Arithmetic, e.g. (2600 - 100) * 0.9 (计算)",
        expression=("string", "arithmetic expression")),
    _fn("search_documents", "Search the documents (检索资料)",
        query=("string", "search text")),
    _fn("draft_email", "Draft an email to the outbox, not sent (起草邮件)",
        to=("string", "email address"), subject=("string", "subject"),
        body=("string", "body")),
]
