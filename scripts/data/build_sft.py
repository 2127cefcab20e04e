"""Build the domain training set `data/sft/` from `corpus/` and the demo business records, in the structured form the
engine enforces (core.prompts), so that an adapter learns exactly what it will be asked to write.

Usage: .venv/bin/python scripts/data/build_sft.py  (deterministic; the output is committed)

Every prompt is the real chain's: the corpus is ingested into a temporary home, an `Assistant` over a scripted
backend is asked each question, and every model turn the chain makes is one example (the messages the model was
sent, then the reply it should write). The scripted replies cite the units that hold the answer, found by their
text in what was shown; a question whose answer unit is not shown is skipped (counted), never answered from a
wrong unit, and an answer is kept only if the chain's own verification accepts it.

Files (`{"messages": [...]}` rows, roles system/user/assistant, the tools described in the system prompt):
- rag_qa.jsonl     answers `{"evidence":[keys],"answer":...}` from the documents' numbered units (cited by their
                   keys: the opening words, core.prompts.unit_keys), and refusals
                   `{"evidence":[],"answer":""}` for questions they do not answer (the chain's prompt, or the units
                   it would show below its relevance floor).
- tool_calls.jsonl look-ups (a record id in the question: the chain has run the call, the prompt holds it as an
                   assistant `{"tool":...}` turn and its result as numbered units; the answer cites the result),
                   calculations (the model's `{"tool":"calculator",...}` choice, then the answer citing the clause
                   and the result), `{"tool":"none"}` where a tool is offered but none is needed, email drafts.
- followups.jsonl  follow-ups made standalone: `{"complete":false,"question":...}` or `{"complete":true}`.
- reasoning.jsonl  thinking-mode answers: the same prompts, the reasoning in `reasoning_content`, then the reply.
- glossary.jsonl   (alpaca) domain terms explained in the company's wording: plain instruction data.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from assistant.backends.base import to_template_messages  # noqa: E402
from assistant.backends.scripted import ScriptedChat  # noqa: E402
from assistant.chain import Assistant, build_assistant  # noqa: E402
from assistant.tools.calculator import safe_eval  # noqa: E402
from assistant.tools.demo.data import CLAIM_TYPE_ZH, CLAIMS, CUSTOMERS, ORDERS, POLICIES, STATUS_ZH  # noqa: E402
from core.identity import User  # noqa: E402
from core.prompts import PromptUnit, answer_reply, is_chinese, tool_reply  # noqa: E402
from core.settings import Settings  # noqa: E402

OUT = ROOT / "data" / "sft"
STAFF = User("wang.staff", "staff", "sales")  # offered: policy and order look-ups, calculator
CLAIMS_USER = User("li.claims", "claims", "claims")  # also claim and customer look-ups, email drafts
USERS = (STAFF, CLAIMS_USER)

# (file, clause fragment, [(question, answer, unit fragments)]): the answer rests on the units of that clause that
# hold the fragments (each fragment names one sentence or table row). The answer states only what they state.
FACTS: list[tuple[str, str, list[tuple[str, str, tuple[str, ...]]]]] = [
    ("安心意外伤害保险条款.pdf", "第一条", [
        ("安心意外险的合同由哪些文件构成？",
         "由保险单或其他保险凭证、投保单、与本合同有关的投保文件、声明、批注、附贴批单及其他书面协议构成。", ("本保险合同由保险单",)),
    ]),
    ("安心意外伤害保险条款.pdf", "第二条", [
        ("安心意外险的被保险人年龄范围是多少？", "被保险人须年满十八周岁至六十五周岁，且身体健康、能正常工作或生活。", ("十八周岁至六十五周岁",)),
        ("多大年龄的人可以投保安心意外伤害保险？", "年满十八周岁至六十五周岁、身体健康、能正常工作或生活的自然人可以作为被保险人。",
         ("十八周岁至六十五周岁",)),
        ("What ages can be insured under the Anxin accident policy?",
         "People aged 18 to 65 who are healthy and able to work or live normally.", ("十八周岁至六十五周岁",)),
        ("谁可以作为安心意外险的投保人？", "投保人应为被保险人本人或对被保险人有保险利益的其他人。", ("有保险利益",)),
    ]),
    ("安心意外伤害保险条款.pdf", "第三条", [
        ("意外身故保险金的受益人是谁？", "除另有指定外，意外身故保险金的受益人为被保险人的法定继承人。", ("法定继承人",)),
        ("没有指定受益人时，身故保险金给谁？", "给被保险人的法定继承人：除另有指定外，意外身故保险金的受益人为法定继承人。", ("法定继承人",)),
        ("意外医疗保险金的受益人是谁？", "意外伤残保险金和意外医疗保险金的受益人为被保险人本人。", ("受益人为被保险人本人",)),
    ]),
    ("安心意外伤害保险条款.pdf", "第四条", [
        ("安心意外险的保险期间多长？", "保险期间为一年，自保险单载明的生效日零时起至期满日二十四时止。", ("保险期间为一年",)),
        ("How long is the policy period of the accident policy?",
         "One year, from 00:00 on the effective date to 24:00 on the expiry date stated in the policy.", ("保险期间为一年",)),
    ]),
    ("安心意外伤害保险条款.pdf", "第五条", [
        ("意外身故保险金在什么情况下赔付？",
         "被保险人在保险期间内遭受意外伤害，并自事故发生之日起一百八十日内因该事故身故的，按保险单载明的意外身故保险金额给付，合同随即终止。",
         ("一百八十日内因该事故身故",)),
        ("事故发生多久内身故可以获得意外身故保险金？", "自事故发生之日起一百八十日内因该事故身故的，可获得意外身故保险金。",
         ("一百八十日内因该事故身故",)),
        ("When is the accidental death benefit paid?",
         "When the insured dies of an accident within 180 days of it during the policy period; the contract then ends.",
         ("一百八十日内因该事故身故",)),
    ]),
    ("安心意外伤害保险条款.pdf", "第六条", [
        ("三级伤残按多少比例给付？", "三级伤残按 80% 的比例给付。", ("| 三级 |",)),
        ("一级伤残的给付比例是多少？", "一级伤残的给付比例为 100%。", ("| 一级 |",)),
        ("二级伤残赔多少比例？", "二级伤残按 90% 给付。", ("| 二级 |",)),
        ("五级伤残怎么赔？", "五级伤残按 60% 的比例给付。", ("| 五级 |",)),
        ("What percentage is paid for a grade 2 disability?", "90% of the disability sum insured.", ("| 二级 |",)),
        ("意外伤残保险金怎么计算？",
         "自事故发生之日起一百八十日内因该事故造成伤残的，按《伤残等级给付比例表》所列比例乘以意外伤残保险金额给付。",
         ("所列比例乘以意外伤残保险金额",)),
    ]),
    ("安心意外伤害保险条款.pdf", "第七条", [
        ("意外医疗保险金怎么计算？",
         "在二级以上（含二级）公立医院就诊发生的合理且必要的医疗费用，扣除 100 元免赔额后按 90% 给付，累计以意外医疗保险金额为限。",
         ("一百元免赔额",)),
        ("意外医疗的免赔额是多少？", "意外医疗的免赔额为人民币 100 元，扣除后按 90% 给付。", ("一百元免赔额",)),
        ("意外医疗要在什么医院就诊才能赔？", "须在二级以上（含二级）公立医院就诊。", ("二级以上（含二级）公立医院",)),
    ]),
    ("安心意外伤害保险条款.pdf", "第八条", [
        ("醉酒驾驶出事故能赔吗？", "不能。被保险人醉酒驾驶或无有效驾驶证驾驶机动车属于责任免除。", ("醉酒驾驶",)),
        ("跳伞受伤能赔吗？", "不能。被保险人从事潜水、跳伞、攀岩等高风险运动属于责任免除。", ("跳伞",)),
        ("故意自伤能获得赔付吗？", "不能。被保险人故意自伤、故意犯罪或抗拒依法采取的刑事强制措施属于责任免除。", ("故意自伤",)),
        ("Is skydiving covered by the accident policy?", "No. High-risk sports such as diving, skydiving and climbing "
         "are excluded.", ("跳伞",)),
    ]),
    ("安心意外伤害保险条款.pdf", "第九条", [
        ("出险后多长时间内要通知保险公司？", "应于知道保险事故发生之日起十日内通知保险人，可拨打客服热线或通过长青保险 APP 报案。",
         ("十日内通知保险人",)),
        ("没有及时通知出险会怎样？",
         "故意或因重大过失未及时通知，致使保险事故的性质、原因、损失程度等难以确定的，保险人对无法确定的部分不承担给付责任。",
         ("未及时通知",)),
        ("How soon must an accident be reported to the insurer?", "Within 10 days of learning of the accident.",
         ("十日内通知保险人",)),
    ]),
    ("安心意外伤害保险条款.pdf", "第十条", [
        ("申请意外身故保险金需要哪些材料？", "需提供保险单、受益人身份证明、公安部门或医疗机构出具的死亡证明、户籍注销证明及意外事故证明。",
         ("申请意外身故保险金时",)),
        ("申请伤残保险金要提供什么？", "需提供具备资质的鉴定机构出具的伤残鉴定书。", ("申请意外伤残保险金时",)),
        ("申请意外医疗保险金要交什么材料？", "需提供医疗费用原始发票及病历。", ("申请意外医疗保险金时",)),
    ]),
    ("安心意外伤害保险条款.pdf", "第十一条", [
        ("保险公司多久作出理赔核定？", "收到完整的保险金给付申请材料后五个工作日内作出核定。", ("五个工作日内作出核定",)),
        ("情形复杂的理赔多久核定？", "情形复杂的，在三十日内作出核定。", ("情形复杂的",)),
        ("达成给付协议后多久付款？", "与受益人达成给付协议后十日内履行给付义务。", ("达成给付协议后十日内",)),
    ]),
    ("安心意外伤害保险条款.pdf", "第十二条", [
        ("犹豫期有多长？", "自投保人签收保险单之日起十五日为犹豫期。", ("十五日为犹豫期",)),
        ("犹豫期内退保能退多少钱？", "犹豫期内解除合同的，保险人无息退还全部保险费。", ("无息退还全部保险费",)),
        ("How long is the cooling-off period?", "15 days from signing for the policy.", ("十五日为犹豫期",)),
    ]),
    ("安心意外伤害保险条款.pdf", "第十三条", [
        ("犹豫期后退保退多少保费？", "犹豫期后书面申请解除合同的，保险人自收到申请书之日起三十日内按未满期净保险费的 80% 退还。",
         ("未满期净保险费的百分之八十",)),
        ("How much premium is refunded when cancelling after the cooling-off period?",
         "80% of the unearned net premium, within 30 days of the written request.", ("未满期净保险费的百分之八十",)),
    ]),
    ("claims_handling_manual.pdf", "1.2", [
        ("Does the claims handling manual cover reinsurance recoveries?",
         "No. Reinsurance recoveries and litigation are handled by the Legal Department and are out of scope.",
         ("Reinsurance recoveries",)),
    ]),
    ("claims_handling_manual.pdf", "2.1", [
        ("How can a customer notify a claim?", "By phone on the hotline 95500-88, through the Evergreen mobile app, by "
         "email to claims@evergreen-life.example, or at any branch counter.", ("hotline 95500-88",)),
        ("How soon must a claim notification be registered?",
         "Within one business day, and the claimant gets a claim number in the format CLM-YYYY-NNNN.",
         ("within one business day",)),
    ]),
    ("claims_handling_manual.pdf", "2.2", [
        ("What documents are needed for a hospital cash claim?",
         "Admission and discharge certificates, within 2 years of discharge.", ("| Hospital cash |",)),
        ("What is the deadline for a medical expense claim?",
         "Within 2 years of treatment, with original invoices, a discharge summary and an itemised bill.",
         ("| Medical expenses |",)),
        ("What documents does a disability claim need?",
         "A disability assessment by an accredited institution and medical records, within 2 years of assessment.",
         ("| Disability |",)),
    ]),
    ("claims_handling_manual.pdf", "3.1", [
        ("What does the assessor confirm in the coverage check?", "That the policy was in force on the date of loss, "
         "that premiums were paid up and that the loss falls within the insured perils.", ("was in force",)),
        ("What must the assessor check against the accident report?",
         "The exclusions listed in the policy terms, such as intentional self-injury, drunk driving and high-risk "
         "sports.", ("Exclusions listed",)),
    ]),
    ("claims_handling_manual.pdf", "3.2", [
        ("Which claims go to the Special Investigations Unit?", "Claims above CNY 200,000, claims within the first 90 "
         "days of cover and claims with inconsistent documents.", ("Special Investigations Unit",)),
        ("How long may an investigation by the Special Investigations Unit take?",
         "It must be completed within 30 days; the claimant is informed in writing if more time is needed.",
         ("investigation must be completed",)),
        ("Is a CNY 250,000 claim referred to the Special Investigations Unit?",
         "Yes: claims above CNY 200,000 are referred to the Special Investigations Unit.",
         ("Special Investigations Unit",)),
    ]),
    ("claims_handling_manual.pdf", "3.3", [
        ("Who must approve a claim above CNY 300,000?",
         "The Head of Claims must approve claims above CNY 300,000.", ("Head of Claims",)),
        ("A senior assessor can approve claims up to what amount?", "Up to CNY 300,000.",
         ("Senior assessors may approve",)),
        ("How much can a claims officer approve?", "Claims up to CNY 50,000.", ("Claims officers may approve",)),
        ("Who approves a CNY 80,000 claim?",
         "A senior assessor: claims officers approve up to CNY 50,000 and senior assessors up to CNY 300,000.",
         ("Claims officers may approve", "Senior assessors may approve")),
        ("Who approves a CNY 1.5 million claim?", "The Claims Committee: claims above CNY 1,000,000 require it.",
         ("Claims Committee",)),
    ]),
    ("claims_handling_manual.pdf", "3.4", [
        ("How are medical expenses reimbursed?",
         "After the CNY 100 deductible at a rate of 90 percent, up to the medical sum insured.", ("CNY 100 deductible",)),
        ("What is the deductible for accident medical expenses?",
         "CNY 100; eligible expenses above it are reimbursed at 90 percent.", ("CNY 100 deductible",)),
        ("Which hospitals qualify for medical expense reimbursement?",
         "Treatment must be at a public hospital of grade two or above.", ("grade two or above",)),
    ]),
    ("claims_handling_manual.pdf", "4.1", [
        ("How quickly must a claim decision be made?",
         "Within 5 business days after a complete claim file is received, or within 30 days for complex cases.",
         ("decision must be made",)),
        ("When is a claim paid after it is agreed?", "Within 10 days of the agreement with the beneficiary.",
         ("Payment is made within",)),
    ]),
    ("claims_handling_manual.pdf", "4.2", [
        ("What must a decline letter contain?", "The policy clause relied on and how to appeal.",
         ("written notice stating",)),
        ("Who handles appeals against declined claims?", "The Claims Review Panel, which answers within 15 business days.",
         ("Claims Review Panel",)),
    ]),
    ("claims_handling_manual.pdf", "4.3", [
        ("How fast must complaints be acknowledged?",
         "Within 2 business days; complaints are logged in the complaints register.", ("acknowledged within",)),
        ("What happens to a complaint that is not resolved?", "It may be escalated to the regulator.",
         ("escalated to the regulator",)),
    ]),
    ("claims_services_agreement.docx", "Claims Processing Services Agreement", [
        ("When was the SwiftClaims agreement made?",
         "On 15 March 2024, between Evergreen Life Insurance Co., Ltd. and SwiftClaims Services Ltd.",
         ("made on 15 March 2024",)),
    ]),
    ("claims_services_agreement.docx", "ARTICLE 1", [
        ("What counts as Personal Data in the SwiftClaims agreement?",
         "Any information relating to an identified or identifiable policyholder, insured person or beneficiary.",
         ("identifiable policyholder",)),
    ]),
    ("claims_services_agreement.docx", "ARTICLE 2", [
        ("When does the SwiftClaims agreement start and how long does it run?",
         "It starts on 1 April 2024 and runs for an initial term of three years.", ("starts on 1 April 2024",)),
        ("Does the SwiftClaims agreement renew automatically?", "Yes, for successive one-year periods unless either "
         "party gives written notice of non-renewal at least 90 days before the end of the term.",
         ("renews automatically",)),
        ("外包理赔服务协议的期限是多久？", "自 2024 年 4 月 1 日起，初始期限为三年。", ("starts on 1 April 2024",)),
    ]),
    ("claims_services_agreement.docx", "ARTICLE 3", [
        ("What fees does Evergreen pay the Provider?",
         "CNY 85 per registered claim, CNY 160 per claim assessed and a monthly platform fee of CNY 20,000.",
         ("CNY 85 per registered claim",)),
        ("How long does Evergreen have to pay an invoice?", "Each undisputed invoice within 30 days of receipt.",
         ("undisputed invoice",)),
        ("What interest applies to late payments under the SwiftClaims agreement?",
         "0.05 percent per day, capped at 5 percent of the overdue amount.", ("Late payments bear interest",)),
    ]),
    ("claims_services_agreement.docx", "ARTICLE 4", [
        ("What are the service levels in the claims outsourcing agreement?",
         "Registering 98 percent of claims within one business day of receipt, and first-level assessment of 95 "
         "percent of complete claim files within three business days.",
         ("register 98 percent", "95 percent of complete claim files")),
        ("What happens if a service level is missed?", "Evergreen may deduct a service credit of 5 percent of that "
         "month's fees for each missed service level, up to 15 percent in total.", ("service credit of 5 percent",)),
    ]),
    ("claims_services_agreement.docx", "ARTICLE 5", [
        ("How fast must the Provider report a data breach?", "Within 24 hours of becoming aware of it.",
         ("within twenty-four (24) hours",)),
        ("Where may the Provider process personal data?",
         "Only within mainland China, and only on Evergreen's documented instructions.", ("only within mainland China",)),
        ("How long do confidentiality obligations last after the agreement ends?", "Five years after termination.",
         ("survive termination",)),
        ("外包商发生个人信息泄露要多久内通知我们？", "知悉后 24 小时内通知长青。", ("within twenty-four (24) hours",)),
    ]),
    ("claims_services_agreement.docx", "ARTICLE 6", [
        ("Is the Provider's liability capped?", "Yes: each party's total liability in any contract year is limited "
         "to the fees paid or payable in that year.", ("total liability",)),
        ("Does the liability cap apply to fraud?", "No. The limit does not apply to breaches of Article 5, fraud or "
         "wilful misconduct.", ("does not apply to breaches",)),
    ]),
    ("claims_services_agreement.docx", "ARTICLE 7", [
        ("Can Evergreen terminate the agreement for convenience?", "Yes, on 180 days' written notice.",
         ("terminate for convenience",)),
        ("What must the Provider do with personal data on termination?",
         "Return or destroy all personal data within 15 days and certify that it has done so.",
         ("return or destroy all Personal Data",)),
        ("When can either party terminate the SwiftClaims agreement with immediate effect?",
         "By written notice if the other party commits a material breach not remedied within 30 days of notice.",
         ("material breach",)),
    ]),
    ("claims_services_agreement.docx", "ARTICLE 8", [
        ("Which law governs the SwiftClaims agreement?", "The laws of the People's Republic of China.",
         ("governed by the laws",)),
        ("Where are disputes under the SwiftClaims agreement resolved?",
         "They are submitted to the Shanghai International Arbitration Center.", ("Shanghai International Arbitration",)),
    ]),
    ("data_privacy_faq.html", "Who may see", [
        ("Who may see a customer's medical records?",
         "Only claims and underwriting staff working on that customer's case, on a need-to-know basis.",
         ("need-to-know basis",)),
        ("Is access to medical records logged?", "Yes. Access is logged and reviewed monthly by Compliance.",
         ("reviewed monthly",)),
        ("谁可以查看客户的病历？", "只有处理该客户案件的理赔和核保人员可按需查看。", ("need-to-know basis",)),
    ]),
    ("data_privacy_faq.html", "email claim", [
        ("Can I email claim documents to my personal mailbox?",
         "No. Claim documents must stay in the claims system or the company mailbox.", ("must stay in the claims system",)),
        ("Is sending customer data to a personal account allowed?", "No, it is a disciplinary offence.",
         ("disciplinary offence",)),
        ("可以把理赔材料发到个人邮箱吗？", "不可以。理赔材料只能留在理赔系统或公司邮箱。", ("must stay in the claims system",)),
    ]),
    ("data_privacy_faq.html", "How long", [
        ("How long do we keep declined claim files?", "5 years after the final decision.", ("| Declined claim files |",)),
        ("How long are paid claim files kept?", "10 years after the claim is closed.", ("| Paid claim files |",)),
        ("How long are call recordings kept?", "3 years.", ("| Call recordings |",)),
        ("理赔档案保存多久？", "已赔付档案结案后保存 10 年，拒赔档案最终决定后保存 5 年。",
         ("| Paid claim files |", "| Declined claim files |")),
    ]),
    ("data_privacy_faq.html", "data breach", [
        ("What do I do if I suspect a data breach?",
         "Report it immediately to the Data Protection Officer at dpo@evergreen-life.example or extension 8008.",
         ("Data Protection Officer",)),
        ("How soon must a data breach be reported to the regulator?", "Within 72 hours.", ("within 72 hours",)),
    ]),
    ("团体意外险费率说明.txt", "一、基本费率", [
        ("团体意外险办公室人员的费率是多少？", "第一类（办公室人员）年费率为每万元保额 8 元。", ("第一类（办公室人员）",)),
        ("第四类职业的团体意外险费率？", "第四类（重体力劳动）年费率为每万元保额 30 元。",
         ("第一类（办公室人员）", "第四类（重体力劳动）")),
        ("外勤人员的团体意外险费率是多少？", "第二类（外勤人员）年费率为每万元保额 12 元。",
         ("第一类（办公室人员）", "第二类（外勤人员）")),
        ("轻体力劳动岗位的团体意外险费率是多少？", "第三类（轻体力劳动）年费率为每万元保额 18 元。",
         ("第一类（办公室人员）", "第三类（轻体力劳动）")),
    ]),
    ("团体意外险费率说明.txt", "二、团体折扣", [
        ("300 人投保团体意外险有折扣吗？", "有，投保人数 200 至 999 人享受九折。", ("200 至 999 人",)),
        ("120 人投保团体意外险打几折？", "九五折：投保人数 50 至 199 人享受九五折。", ("50 至 199 人",)),
        ("1500 人投保团体意外险有什么折扣？", "八五折：1000 人以上享受八五折。", ("1000 人以上",)),
        ("团体意外险的人数折扣怎么算？", "50 至 199 人九五折，200 至 999 人九折，1000 人以上八五折。",
         ("50 至 199 人", "200 至 999 人", "1000 人以上")),
    ]),
    ("团体意外险费率说明.txt", "三、核保要求", [
        ("8 个人能按团体费率投保吗？", "不能。投保人数少于 10 人的不得按团体费率承保。", ("少于 10 人",)),
        ("高风险职业能投保团体意外险吗？", "第五类及以上高风险职业须经总公司核保部审批后方可承保。", ("第五类及以上",)),
    ]),
    ("理赔服务指南.md", "一、报案", [
        ("客户报案时需要记录哪些信息？", "需记录保单号（格式如 POL-2024-0001）、出险人姓名、出险时间、地点和经过。",
         ("报案时请记录保单号",)),
        ("客户可以通过哪些渠道报案？",
         "可拨打客服热线 95500-88（7×24 小时）、使用长青保险 APP“我的理赔”、官网在线报案或到各分支机构柜面报案。",
         ("客户可通过以下渠道报案",)),
        ("报案后要告诉客户什么？", "告知客户系统生成的理赔案件号（格式 CLM-YYYY-NNNN）。", ("理赔案件号",)),
    ]),
    ("理赔服务指南.md", "（一）意外医疗", [
        ("意外医疗理赔什么情况下可以免交发票原件？", "单次理赔金额在 3000 元以下的，可在 APP 上传发票照片，免交原件。",
         ("3000 元以下",)),
        ("意外医疗理赔需要哪些材料？", "需提供医疗费用原始发票、费用明细清单、门诊或住院病历和出院小结。", ("费用明细清单",)),
    ]),
    ("理赔服务指南.md", "（二）意外伤残", [
        ("伤残鉴定应该什么时候做？", "鉴定应在治疗结束后进行，由具备资质的司法鉴定机构出具伤残鉴定书。", ("治疗结束后",)),
    ]),
    ("理赔服务指南.md", "（三）意外身故", [
        ("意外身故理赔要准备哪些证明？", "需提供死亡证明、户籍注销证明、受益人身份证明及与被保险人关系证明。",
         ("与被保险人关系证明",)),
    ]),
    ("理赔服务指南.md", "三、审核与时效", [
        ("十万元的赔案由谁审批？", "由高级核赔人审批：5 万元至 30 万元的案件由高级核赔人审批。", ("由高级核赔人审批",)),
        ("理赔专员能审批多少金额？", "赔付金额在 5 万元以内的案件由理赔专员审批。", ("5 万元以内",)),
        ("一百二十万元的理赔由谁审批？", "报理赔负责人审批：30 万元以上的案件报理赔负责人审批。", ("理赔负责人",)),
        ("一个 45 万元的理赔由谁审批？", "由理赔负责人审批：30 万元以上的案件报理赔负责人审批。", ("理赔负责人",)),
        ("材料齐全后多久完成审核？", "理赔专员应在五个工作日内完成审核。", ("五个工作日内完成审核",)),
        ("需要调查的复杂案件多久核定？", "应在三十日内作出核定。", ("案情复杂",)),
    ]),
    ("理赔服务指南.md", "四、赔付与通知", [
        ("拒赔后客户怎么申诉？", "拒赔须书面通知客户所依据的条款及申诉途径，申诉由理赔复核小组在十五个工作日内答复。",
         ("理赔复核小组",)),
        ("核定属于保险责任后多久支付保险金？", "与受益人达成协议后十日内支付保险金。", ("达成协议后十日内",)),
    ]),
    ("理赔服务指南.md", "五、服务承诺", [
        ("小额快赔的标准是什么？", "5000 元以下的医疗险案件，材料齐全后 24 小时内赔付。", ("小额快赔",)),
        ("投诉要多久响应？", "投诉须在两个工作日内响应。", ("投诉处理",)),
        ("客户怎么查询理赔进度？", "客户可随时在 APP 或拨打热线查询案件进度。", ("进度查询",)),
    ]),
]

# Questions the documents do not answer: the reply is the refusal, whatever units are shown.
UNANSWERABLE = [
    "公司的年假制度是怎样的？", "重大疾病保险的等待期是多少天？", "车险的第三者责任限额是多少？", "总经理的电话是多少？",
    "长青人寿今年的净利润是多少？", "员工差旅报销的标准是什么？", "宠物保险怎么理赔？", "境外旅行险覆盖哪些国家？",
    "What is the company's parental leave policy?", "What is the waiting period for critical illness cover?",
    "How much did Evergreen earn last year?", "Which hospitals are in the dental network?",
    "What is the maximum sum insured for travel insurance?", "Who is the CEO of SwiftClaims?",
    "What is the office Wi-Fi password?", "How do I book a meeting room?", "What is the motor insurance excess?",
    "Does the policy cover cosmetic surgery abroad?", "理赔系统的管理员密码是什么？", "团体寿险的费率是多少？",
    # near misses: the documents speak of the subject, not of this
    "安心意外险每年的保费是多少钱？", "意外住院津贴每天赔多少？", "团体意外险的最高保额是多少？", "理赔复核小组由哪些人组成？",
    "How much is the hospital cash benefit per day?", "What does the Provider charge for handling an appeal?",
    "How many claims did the Provider register last year?", "Who is the Data Protection Officer's manager?",
]

# Calculations from a clause: (question, expression the model writes, answer, (file, clause, unit fragment), think).
# The chain offers the calculator (the question gives a figure of its own) and runs it only if every figure of the
# expression stands in the question or the units shown.
CALCULATIONS: list[tuple[str, str, str, tuple[str, str, str], str]] = [
    ("医疗费 2600 元，在二级公立医院就诊，安心意外险能赔多少？", "(2600 - 100) * 0.9",
     "可赔付 2250 元：扣除 100 元免赔额后按 90% 给付，(2600 - 100) × 90% = 2250 元。",
     ("安心意外伤害保险条款.pdf", "第七条", "一百元免赔额"),
     "第七条：扣除 100 元免赔额后按 90% 给付。计算器算出 (2600 - 100) × 0.9 = 2250。"),
    ("意外医疗花了 850 元，能报多少？", "(850 - 100) * 0.9", "可赔付 675 元：(850 - 100) × 90% = 675 元。",
     ("安心意外伤害保险条款.pdf", "第七条", "一百元免赔额"), "扣 100 元免赔额后按 90%：(850 - 100) × 0.9 = 675。"),
    ("A medical bill of CNY 5,100: how much does the accident policy pay?", "(5100 - 100) * 0.9",
     "CNY 4,500: (5,100 - 100) × 90% after the CNY 100 deductible.",
     ("claims_handling_manual.pdf", "3.4", "CNY 100 deductible"),
     "Deductible CNY 100, then 90 percent: (5,100 - 100) × 0.9 = 4,500."),
    ("Medical costs of CNY 12,300 at a grade-three public hospital: what is reimbursed?", "(12300 - 100) * 0.9",
     "CNY 10,980: (12,300 - 100) × 90%, up to the medical sum insured.",
     ("claims_handling_manual.pdf", "3.4", "CNY 100 deductible"), "12,300 - 100 = 12,200; × 0.9 = 10,980."),
    ("保额 50 万，三级伤残赔多少？", "500000 * 0.8", "赔付 400000 元：三级伤残按 80% 给付，500000 × 80% = 400000 元。",
     ("安心意外伤害保险条款.pdf", "第六条", "| 三级 |"), "三级伤残给付比例 80%，500000 × 0.8 = 400000。"),
    ("保额 80 万，四级伤残赔多少？", "800000 * 0.7", "赔付 560000 元：四级伤残按 70% 给付，800000 × 70% = 560000 元。",
     ("安心意外伤害保险条款.pdf", "第六条", "| 四级 |"), "四级 70%：800000 × 0.7 = 560000。"),
    ("保额 20 万，二级伤残能赔多少？", "200000 * 0.9", "赔付 180000 元：二级伤残按 90% 给付，200000 × 90% = 180000 元。",
     ("安心意外伤害保险条款.pdf", "第六条", "| 二级 |"), "二级 90%：200000 × 0.9 = 180000。"),
    ("The Provider registered 400 claims and assessed 250 this month. What is the invoice?",
     "400 * 85 + 250 * 160 + 20000", "CNY 94,000: 400 × 85 + 250 × 160 + the CNY 20,000 monthly platform fee.",
     ("claims_services_agreement.docx", "ARTICLE 3", "CNY 85 per registered claim"),
     "400 × 85 = 34,000; 250 × 160 = 40,000; platform fee 20,000; total 94,000."),
    ("This month's fees were CNY 90,000 and two service levels were missed. What credit can we deduct?",
     "90000 * 0.05 * 2", "CNY 9,000: 5 percent for each of the two missed service levels, 10% of 90,000.",
     ("claims_services_agreement.docx", "ARTICLE 4", "service credit of 5 percent"),
     "5% per missed level: 2 × 5% = 10%, below the 15% cap. 90,000 × 0.10 = 9,000."),
    ("保费 1200 元，犹豫期后退保，未满期净保费 600 元，能退多少？", "600 * 0.8", "可退 480 元：未满期净保险费 600 元 × 80%。",
     ("安心意外伤害保险条款.pdf", "第十三条", "未满期净保险费的百分之八十"), "第十三条：按未满期净保险费的 80% 退还。600 × 0.8 = 480。"),
    ("An invoice of CNY 50,000 is paid 40 days late. What interest is due?", "50000 * 0.0005 * 40",
     "CNY 1,000: 0.05 percent a day for 40 days on 50,000, below the 5 percent cap.",
     ("claims_services_agreement.docx", "ARTICLE 3", "Late payments bear interest"),
     "0.05% per day × 40 days = 2% → 1,000. The cap is 5% = 2,500, so 1,000."),
    ("120 名办公室员工投保团体意外险，每人保额 20 万，不算折扣年保费多少？", "200000 / 10000 * 8 * 120",
     "不计折扣年保费 19200 元：按每万元保额 8 元，120 人每人 20 万保额合计 19200 元。",
     ("团体意外险费率说明.txt", "一、基本费率", "第一类（办公室人员）"), "第一类每万元保额 8 元：200000 / 10000 × 8 = 160 元/人，× 120 = 19200。"),
]

# Thinking-mode traces for answers that need no calculation (the question's quantity against a clause's tiers).
THINK = {
    "一个 45 万元的理赔由谁审批？": "5 万以内专员，5-30 万高级核赔人，30 万以上理赔负责人。45 万 > 30 万。",
    "Who approves a CNY 80,000 claim?": "Officers up to 50,000; senior assessors up to 300,000. 80,000 is between.",
    "Who approves a CNY 1.5 million claim?": "Above 1,000,000 requires the Claims Committee; 1.5 million is above it.",
    "Is a CNY 250,000 claim referred to the Special Investigations Unit?":
        "The threshold is above CNY 200,000; 250,000 > 200,000.",
    "120 人投保团体意外险打几折？": "120 人在 50 至 199 人一档：九五折。",
    "8 个人能按团体费率投保吗？": "少于 10 人不得按团体费率承保，8 < 10。",
    "十万元的赔案由谁审批？": "10 万在 5 万至 30 万之间，由高级核赔人审批。",
}

# A routed calculation: the question writes the sum itself; the chain computes it before the model writes.
EXPRESSIONS = [
    ("帮我算一下 (2600 - 100) × 0.9", "(2600 - 100) * 0.9"), ("计算 120 × 160 × 0.95", "120 * 160 * 0.95"),
    ("Compute 400 × 85 + 250 × 160 + 20,000", "400 * 85 + 250 * 160 + 20000"),
    ("Calculate (12,300 - 100) × 0.9", "(12300 - 100) * 0.9"), ("算一下 680 × 0.8", "680 * 0.8"),
    ("Compute 50,000 × 0.0005 × 40", "50000 * 0.0005 * 40"),
]

# Follow-ups: (earlier questions, the latest one, its standalone form or None when it stands alone).
FOLLOWUPS: list[tuple[list[str], str, str | None]] = [
    (["一级伤残的给付比例是多少？"], "三级呢？", "三级伤残的给付比例是多少？"),
    (["申请意外身故保险金需要哪些材料？"], "伤残的呢？", "申请意外伤残保险金需要哪些材料？"),
    (["团体意外险办公室人员的费率是多少？"], "外勤人员呢？", "团体意外险外勤人员的费率是多少？"),
    (["理赔专员能审批多少金额？"], "高级核赔人呢？", "高级核赔人能审批多少金额？"),
    (["意外身故保险金的受益人是谁？"], "意外医疗保险金呢？", "意外医疗保险金的受益人是谁？"),
    (["犹豫期有多长？"], "期内退保能全额退吗？", "犹豫期内退保能全额退吗？"),
    (["十万元的赔案由谁审批？"], "五十万元的呢？", "五十万元的赔案由谁审批？"),
    (["帮我查一下保单 POL-2024-0001 的状态"], "它的保额是多少？", "保单 POL-2024-0001 的保额是多少？"),
    (["意外医疗的免赔额是多少？"], "超过免赔额的部分按多少比例赔？", "意外医疗超过免赔额的部分按多少比例赔？"),
    (["安心意外险的保险期间多长？", "犹豫期有多长？"], "犹豫期后退保呢，退多少？", "犹豫期后退保退多少？"),
    (["How long do we keep declined claim files?"], "And paid ones?", "How long do we keep paid claim files?"),
    (["What documents are needed for a hospital cash claim?"], "What about a disability claim?",
     "What documents are needed for a disability claim?"),
    (["How much can a claims officer approve?"], "And a senior assessor?", "How much can a senior assessor approve?"),
    (["How fast must the Provider report a data breach?"], "And to the regulator?",
     "How fast must a data breach be reported to the regulator?"),
    (["Who approves a CNY 80,000 claim?"], "What about CNY 500,000?", "Who approves a CNY 500,000 claim?"),
    (["Can you check claim CLM-2024-0002?"], "When was it last updated?", "When was claim CLM-2024-0002 last updated?"),
    (["Can Evergreen terminate the agreement for convenience?"], "With how much notice?",
     "With how much notice can Evergreen terminate the agreement for convenience?"),
    (["犹豫期有多长？"], "醉酒驾驶出事故能赔吗？", None),
    (["一级伤残的给付比例是多少？"], "投诉要多久响应？", None),
    (["客户报案时需要记录哪些信息？"], "小额快赔的标准是什么？", None),
    (["保单 POL-2024-0001 现在还有效吗？"], "客户 CUS-1002 名下有哪些保单？", None),
    (["意外医疗保险金怎么计算？", "意外医疗的免赔额是多少？"], "犹豫期后退保退多少保费？", None),
    (["团体意外险办公室人员的费率是多少？"], "8 个人能按团体费率投保吗？", None),
    (["一级伤残的给付比例是多少？"], "三级伤残的给付比例是多少？", None),
    (["How long do we keep declined claim files?"], "Which law governs the SwiftClaims agreement?", None),
    (["What fees does Evergreen pay the Provider?"], "How fast must complaints be acknowledged?", None),
    (["Who must approve a claim above CNY 300,000?"], "How are medical expenses reimbursed?", None),
    (["What is the deadline for a medical expense claim?"], "Can I email claim documents to my personal mailbox?", None),
    (["How much can a claims officer approve?"], "How much can a senior assessor approve?", None),
]

GLOSSARY = [
    ("解释术语", "免赔额", "免赔额是保险人不予赔付、由被保险人自行承担的部分。安心意外伤害保险的意外医疗免赔额为 100 元。"),
    ("解释术语", "犹豫期", "犹豫期是投保人签收保单后可无损失解除合同的期间，安心意外伤害保险为 15 日，期内退保全额无息退还保费。"),
    ("解释术语", "受益人", "受益人是保险事故发生后有权领取保险金的人。未指定时，意外身故保险金的受益人为被保险人的法定继承人。"),
    ("解释术语", "保险期间", "保险期间是保险合同提供保障的时间段，安心意外伤害保险为一年。"),
    ("解释术语", "责任免除", "责任免除是保险合同中约定保险人不承担给付责任的情形，如醉酒驾驶、故意自伤、高风险运动等。"),
    ("解释术语", "核定", "核定是保险人审查理赔材料后确定是否属于保险责任及赔付金额的环节。"),
    ("解释术语", "未满期净保险费", "未满期净保险费是按剩余保险期间计算、扣除费用后的保险费，犹豫期后退保按其 80% 退还。"),
    ("解释术语", "伤残鉴定", "伤残鉴定是由具备资质的鉴定机构评定伤残等级的程序，是申请意外伤残保险金的必备材料。"),
    ("解释术语", "报案", "报案是出险后向保险公司通知保险事故的行为，长青人寿可通过热线 95500-88、APP、官网或柜面报案。"),
    ("解释术语", "拒赔", "拒赔是保险人认定事故不属于保险责任而不予赔付，须书面通知客户依据条款和申诉途径。"),
    ("Explain the term", "deductible", "The part of a loss the insured bears before the insurer pays; the accident policy's medical deductible is CNY 100."),
    ("Explain the term", "cooling-off period", "The period after receiving the policy in which it can be cancelled for a full refund: 15 days for the accident policy."),
    ("Explain the term", "sum insured", "The maximum amount the insurer pays for a covered loss, stated on the policy schedule."),
    ("Explain the term", "service credit", "A deduction from the Provider's fees when a service level is missed: 5% per missed level, capped at 15%."),
    ("Explain the term", "Special Investigations Unit", "The team that investigates high-value, early or inconsistent claims before a decision."),
    ("Explain the term", "Claims Review Panel", "The body that hears appeals against declined claims and answers within 15 business days."),
    ("Explain the term", "need-to-know basis", "Access limited to staff who need the information for the case they are working on."),
    ("Explain the term", "exclusion", "A situation the policy does not cover, such as drunk driving or high-risk sports."),
    ("把这句话改写得更正式", "你的案子我们正在看，别急", "您的理赔申请正在审核中，我们将在规定时效内完成核定并及时通知您，感谢您的耐心等待。"),
    ("把这句话改写得更正式", "材料不全，补齐了再说", "经审核，您提交的理赔材料尚不完整，请补充相关材料后重新提交，我们将在收到完整材料后继续处理。"),
    ("Rewrite politely for a customer", "we said no to your claim", "After careful review we are unable to approve your claim; the enclosed notice explains the policy clause relied on and how to appeal."),
    ("Rewrite politely for a customer", "send the invoices again", "Could you please resend the original invoices so we can complete the assessment of your claim?"),
    ("用一句话概括", "理赔流程", "理赔流程为：报案登记、收集材料、审核核定、赔付或书面拒赔，客户可随时查询进度。"),
    ("Summarise in one sentence", "the claims process", "A claim is notified and registered, documents are collected, the claim is assessed and decided, and it is paid or declined in writing."),
]


# ---- the scripted model: the reply each turn should get ---------------------------------------------------------
@dataclass(frozen=True)
class Frag:
    """What a cited unit holds: a document's unit (its label names `source` and `clause`, its text holds `text`) or
    a tool's result (`source` the tool's name, `clause` empty)."""

    source: str
    clause: str
    text: str


@dataclass
class Plan:
    """One question and the replies it should get: the tool choice when a tool is offered (None: `{"tool":"none"}`)
    and the answer resting on the units that hold `evidence` (no evidence: the refusal)."""

    question: str
    user: User
    answer: str = ""
    evidence: tuple[Frag, ...] = ()
    tool: tuple[str, dict[str, Any]] | None = None
    think: str = ""
    kind: str = "answer"  # answer | refusal | lookup | calculation | email


_UNIT = re.compile(r"^\[(\d+)\] (.*)$")


def prompt_units(messages: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    """(id, text, label) of every unit the user messages show: a document unit under its label line, a tool result
    under the result's heading."""
    out: list[tuple[int, str, str]] = []
    for m in messages:
        if m["role"] != "user":
            continue
        label = ""
        for line in m["content"].split("\n"):
            if found := _UNIT.match(line):
                out.append((int(found.group(1)), found.group(2), label))
            elif line.strip():
                label = line
    return out


def holders(units: list[tuple[int, str, str]], frag: Frag) -> list[int]:
    if not frag.clause:  # a tool result: `name(arguments) ...`
        return [n for n, text, _ in units if text.startswith(f"{frag.source}(") and frag.text in text]
    return [n for n, text, label in units if frag.source in label and frag.clause in label and frag.text in text]


def schema_kind(schema: dict[str, Any] | None) -> str:
    text = json.dumps(schema or {})
    return "tool" if '"tool"' in text else "standalone" if '"complete"' in text else "answer"


@dataclass
class Turn:
    kind: str  # tool | answer | standalone
    messages: list[dict[str, Any]]
    reply: str


@dataclass
class Oracle:
    """The scripted model's replies (ScriptedChat calls it with each turn's messages; its schema tells the turn)."""

    chat: ScriptedChat | None = None
    plan: Plan | None = None
    rewrite: tuple[bool, str | None] | None = None  # the standalone decision of a follow-up
    turns: list[Turn] = field(default_factory=list)
    missing: list[Frag] = field(default_factory=list)

    def start(self, plan: Plan | None = None, rewrite: tuple[bool, str | None] | None = None) -> None:
        self.plan, self.rewrite, self.turns, self.missing = plan, rewrite, [], []

    def __call__(self, messages: list[Any]) -> str:
        assert self.chat is not None
        kind = schema_kind(self.chat.schemas[-1])
        msgs = to_template_messages(messages)
        plan = self.plan
        if kind == "standalone":
            assert self.rewrite is not None
            stands, question = self.rewrite
            reply = json.dumps({"complete": True} if stands else {"complete": False, "question": question},
                               ensure_ascii=False, separators=(",", ":"))
        elif kind == "tool":
            reply = tool_reply(*plan.tool) if plan and plan.tool else tool_reply("none", {})
        elif plan is None or not plan.evidence:
            reply = answer_reply([], [], "")
        else:
            units = prompt_units(msgs)
            ids: set[int] = set()
            for frag in plan.evidence:
                found = holders(units, frag)
                if not found:
                    self.missing.append(frag)
                ids.update(found)
            shown = [PromptUnit(n, text, label) for n, text, label in units]
            reply = answer_reply([], [], "") if self.missing else answer_reply(shown, sorted(ids), plan.answer)
        self.turns.append(Turn(kind, msgs, reply))
        return reply


def example(turn: Turn, think: str = "") -> dict[str, Any]:
    last: dict[str, Any] = {"role": "assistant", "content": turn.reply}
    if think:
        last["reasoning_content"] = think
    return {"messages": [*turn.messages, last]}


# ---- the plans ----------------------------------------------------------------------------------------------------
def fact_plans() -> list[Plan]:
    plans = []
    for source, clause, items in FACTS:
        for question, answer, frags in items:
            user = USERS[len(plans) % len(USERS)]
            plans.append(Plan(question, user, answer, tuple(Frag(source, clause, f) for f in frags),
                              think=THINK.get(question, "")))
    return plans


def calculation_plans() -> list[Plan]:
    plans = []
    for i, (question, expression, answer, (source, clause, frag), think) in enumerate(CALCULATIONS):
        plans.append(Plan(question, USERS[i % len(USERS)], answer,
                          (Frag(source, clause, frag), Frag("calculator", "", "")),
                          tool=("calculator", {"expression": expression}), think=think, kind="calculation"))
    for i, (question, expression) in enumerate(EXPRESSIONS):
        value = safe_eval(expression)
        answer = f"结果是 {value}。" if is_chinese(question) else f"The result is {value:,}."
        plans.append(Plan(question, USERS[i % len(USERS)], answer, (Frag("calculator", "", expression),),
                          kind="calculation"))
    return plans


def _money(n: object) -> str:
    return f"{n:,}"


def lookup_plans() -> list[Plan]:
    plans = []
    customers = {c["customer_id"]: c for c in CUSTOMERS}
    for i, p in enumerate(POLICIES):
        pid, st = str(p["policy_id"]), str(p["status"])
        holder = customers[str(p["customer_id"])]["name"]
        frag = (Frag("get_policy_status", "", pid),)
        user = USERS[i % len(USERS)]
        plans.append(Plan(f"帮我查一下保单 {pid} 的状态", user,
                          f"保单 {pid}（{p['product']}，投保人 {holder}）当前状态为“{STATUS_ZH[st]}”，保险期间 "
                          f"{p['start_date']} 至 {p['end_date']}，保额 {_money(p['sum_insured'])} 元。", frag, kind="lookup"))
        plans.append(Plan(f"What is the status of policy {pid}?", user,
                          f"Policy {pid} ({p['product']}, holder {holder}) is {st}, covering {p['start_date']} to "
                          f"{p['end_date']} with a sum insured of CNY {_money(p['sum_insured'])}.", frag, kind="lookup"))
        still = (f"是的，保单 {pid} 当前有效，保险期间至 {p['end_date']}。" if st == "active"
                 else f"不是。保单 {pid} 当前状态为“{STATUS_ZH[st]}”。")
        plans.append(Plan(f"保单 {pid} 现在还有效吗？", user, still, frag, kind="lookup"))
    for c in CLAIMS:
        cid, st = str(c["claim_id"]), str(c["status"])
        frag = (Frag("get_claim_status", "", cid),)
        paid_zh = f"，已赔付 {_money(c['amount_paid'])} 元" if c["amount_paid"] else ""
        paid_en = f", CNY {_money(c['amount_paid'])} paid" if c["amount_paid"] else ""
        plans.append(Plan(f"理赔案件 {cid} 进展到哪一步了？", CLAIMS_USER,
                          f"案件 {cid}（{CLAIM_TYPE_ZH[str(c['type'])]}，保单 {c['policy_id']}）目前“{STATUS_ZH[st]}”，"
                          f"申请金额 {_money(c['amount_claimed'])} 元{paid_zh}，最近更新 {c['updated']}。", frag, kind="lookup"))
        plans.append(Plan(f"Can you check claim {cid}?", CLAIMS_USER,
                          f"Claim {cid} ({c['type']}, policy {c['policy_id']}) is {st.replace('_', ' ')}: CNY "
                          f"{_money(c['amount_claimed'])} claimed{paid_en}, last updated {c['updated']}.", frag,
                          kind="lookup"))
        paid = (f"已赔付，金额 {_money(c['amount_paid'])} 元。" if st == "paid"
                else f"还没有赔付，案件 {cid} 目前“{STATUS_ZH[st]}”。")
        plans.append(Plan(f"客户问案件 {cid} 赔了没有", CLAIMS_USER, paid, frag, kind="lookup"))
    for i, o in enumerate(ORDERS):
        oid, st = str(o["order_id"]), str(o["status"])
        plans.append(Plan(f"订单 {oid} 付款了吗？", USERS[i % len(USERS)],
                          f"订单 {oid}（{o['item']}，金额 {_money(o['amount'])} 元）状态为“{STATUS_ZH[st]}”，创建于 "
                          f"{o['created']}。", (Frag("get_order_status", "", oid),), kind="lookup"))
    for c in CUSTOMERS:
        mine = [p for p in POLICIES if p["customer_id"] == c["customer_id"]]
        items = "；".join(f"{p['policy_id']} {p['product']}（{STATUS_ZH[str(p['status'])]}）" for p in mine)
        plans.append(Plan(f"客户 {c['customer_id']} 名下有哪些保单？", CLAIMS_USER,
                          f"客户 {c['customer_id']} 名下的保单：{items}。",
                          (Frag("list_customer_policies", "", c["customer_id"]),), kind="lookup"))
    # unknown ids: the tool says so and the answer passes it on
    plans.append(Plan("查一下保单 POL-2023-9999 的状态", STAFF, "没有找到保单 POL-2023-9999，请核对保单号。",
                      (Frag("get_policy_status", "", "not found"),), kind="lookup"))
    plans.append(Plan("Check claim CLM-2020-0042", CLAIMS_USER,
                      "No claim CLM-2020-0042 was found; please check the number (format CLM-YYYY-NNNN).",
                      (Frag("get_claim_status", "", "not found"),), kind="lookup"))
    return plans


def email_plans() -> list[Plan]:
    plans = []
    for cid in ("CLM-2024-0003", "CLM-2024-0006"):
        claim = next(c for c in CLAIMS if c["claim_id"] == cid)
        policy = next(p for p in POLICIES if p["policy_id"] == claim["policy_id"])
        cust = next(c for c in CUSTOMERS if c["customer_id"] == policy["customer_id"])
        body = (f"{cust['name']}您好：我们已收到您的理赔案件 {cid}，正在按流程处理，审核完成后会及时通知您。长青人寿理赔部")
        args = {"to": cust["email"], "subject": f"理赔案件 {cid} 进度通知", "body": body}
        plans.append(Plan(f"给 {cust['name']}（{cust['email']}）写一封邮件，告诉他案件 {cid} 的进度", CLAIMS_USER,
                          f"已为 {cust['name']}（{cust['email']}）起草邮件并保存到发件箱，未发送，请审阅后发出。",
                          (Frag("draft_email", "", "saved to outbox"),), tool=("draft_email", args), kind="email"))
    args = {"to": "sarah.lin@example.com", "subject": "Claim CLM-2024-0005 received",
            "body": "Dear Ms Lin, we confirm receipt of claim CLM-2024-0005 and will keep you informed of its progress. "
                    "Evergreen Life Claims"}
    plans.append(Plan("Draft an email to sarah.lin@example.com confirming we received claim CLM-2024-0005.", CLAIMS_USER,
                      "The draft to sarah.lin@example.com is saved in the outbox (not sent) for your review.",
                      (Frag("draft_email", "", "saved to outbox"),), tool=("draft_email", args), kind="email"))
    return plans


def refusal_plans() -> list[Plan]:
    return [Plan(q, USERS[i % len(USERS)], kind="refusal") for i, q in enumerate(UNANSWERABLE)]


# ---- running the chain ----------------------------------------------------------------------------------------------
@dataclass
class Builder:
    chain: Assistant  # the chain as configured
    loose: Assistant  # the same chain without its relevance floor: the units it would show a question it refuses
    oracle: Oracle
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    skipped: list[str] = field(default_factory=list)

    def add(self, file: str, kind: str, row: dict[str, Any]) -> None:
        self.rows.setdefault(file, []).append(row)
        self.counts[kind] += 1

    def skip(self, why: str, plan: Plan) -> None:
        self.counts[f"skipped: {why}"] += 1
        self.skipped.append(f"{why}: {plan.question}")

    def ask(self, plan: Plan, chain: Assistant | None = None) -> Any:
        self.oracle.start(plan)
        return (chain or self.chain).ask(plan.question, plan.user)

    def run(self, plan: Plan) -> None:
        ans = self.ask(plan)
        if plan.kind == "refusal":
            if not any(t.kind == "answer" for t in self.oracle.turns):  # refused below the floor, without the model
                ans = self.ask(plan, self.loose)
            self._keep(plan, ans, refusal=True)
            return
        answers = [t for t in self.oracle.turns if t.kind == "answer"]
        if not answers:
            self.skip("nothing shown", plan)
            return
        if self.oracle.missing:
            self.skip("answer unit not shown", plan)
            return
        status = ans.verification.get("status")
        if status != "verified":
            self.skip(f"verification {status} ({'; '.join(ans.verification.get('reasons', []))})", plan)
            return
        if plan.tool and not any(t.name == plan.tool[0] and t.ok for t in ans.tool_calls):
            self.skip("tool call not run", plan)
            return
        self._keep(plan, ans)

    def _keep(self, plan: Plan, ans: Any, refusal: bool = False) -> None:
        for turn in self.oracle.turns:
            if turn.kind == "tool":
                chosen = json.loads(turn.reply)["tool"]
                kind = "tool choice: none" if chosen == "none" else f"tool choice: {chosen}"
                self.add("tool_calls.jsonl", kind, example(turn))
            elif refusal:
                self.add("rag_qa.jsonl", "refusal", example(turn))
            elif plan.kind == "answer":
                self.add("rag_qa.jsonl", "answer", example(turn))
            else:
                self.add("tool_calls.jsonl", f"{plan.kind} answer", example(turn))
            if turn.kind == "answer" and plan.think:
                self.add("reasoning.jsonl", "thinking answer", example(turn, plan.think))

    def followup(self, history: list[str], question: str, rewritten: str | None) -> None:
        user = STAFF if all("CLM-" not in q for q in [*history, question]) else CLAIMS_USER
        self.oracle.start(Plan(question, user, kind="refusal"), (rewritten is None, rewritten))
        self.chain.ask(question, user, history=[{"role": "user", "content": q} for q in history])
        turn = next(t for t in self.oracle.turns if t.kind == "standalone")
        self.add("followups.jsonl", "follow-up: complete" if rewritten is None else "follow-up: rewritten",
                 example(turn))


def build(home: Path) -> tuple[dict[str, list[dict[str, Any]]], Counter, list[str]]:
    from ingest import pipeline

    settings = Settings(home=home, _env_file=None)  # the defaults: what the chain does out of the box
    report = pipeline.add_paths(settings, [ROOT / "corpus"])
    bad = [f"{r.path.name}: {r.status} {r.reason or ''}" for r in report.results if r.status != "added"]
    if bad:
        raise SystemExit(f"corpus not ingested: {bad}")
    oracle = Oracle()
    chat = ScriptedChat(replies=[oracle])
    oracle.chat = chat
    chain = build_assistant(settings, chat=chat)
    loose = build_assistant(settings.model_copy(update={"min_relevance": 0.0, "min_coverage": 0.0}), chat=chat)
    b = Builder(chain, loose, oracle)
    for plan in [*fact_plans(), *refusal_plans(), *calculation_plans(), *lookup_plans(), *email_plans()]:
        b.run(plan)
    for history, question, rewritten in FOLLOWUPS:
        b.followup(history, question, rewritten)
    b.rows["glossary.jsonl"] = [{"instruction": i, "input": x, "output": o} for i, x, o in GLOSSARY]
    b.counts["glossary (alpaca)"] = len(GLOSSARY)
    return b.rows, b.counts, b.skipped


def main() -> None:
    for key in [k for k in os.environ if k.startswith("ASSISTANT_")]:
        del os.environ[key]  # the build is the chain's defaults, whatever this shell sets
    with tempfile.TemporaryDirectory(prefix="build_sft-") as tmp:
        os.chdir(tmp)  # no .env of the working directory either
        rows, counts, skipped = build(Path(tmp) / "home")
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.jsonl"):
        if old.name not in rows:
            old.unlink()
    for name, items in sorted(rows.items()):
        with open(OUT / name, "w", encoding="utf-8") as fh:
            for row in items:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"{name}: {len(items)} examples")
    print(f"total: {sum(len(r) for r in rows.values())}")
    for kind, n in sorted(counts.items()):
        print(f"  {kind}: {n}")
    for line in skipped:
        print(f"  skipped {line}")


if __name__ == "__main__":
    main()
