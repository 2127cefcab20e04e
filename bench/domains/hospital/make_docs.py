"""Writes docs/手术分级管理制度.docx (江州市第一人民医院) with python-docx.

The .docx is committed beside this script; rerun only to change it (the questions that cite it are frozen):

    python bench/domains/hospital/make_docs.py
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from docx import Document

OUT = Path(__file__).resolve().parent / "docs" / "手术分级管理制度.docx"

CHAPTERS: list[tuple[str, list[object]]] = [
    ("第一章 总则", [
        "第一条 为加强手术安全管理，保障医疗质量和患者安全，根据《医疗机构手术分级管理办法》，"
        "结合本院实际，制定本制度。",
        "第二条 本院手术按照风险性和难易程度分为四级：（一）一级手术：风险较低、过程简单、技术难度低的手术；"
        "（二）二级手术：有一定风险、过程复杂程度一般、有一定技术难度的手术；（三）三级手术：风险较高、过程较复杂、"
        "难度较大的手术；（四）四级手术：风险高、过程复杂、难度大、资源消耗多或涉及重大伦理风险的手术。"
        "各术式的级别以医务部公布的《手术分级目录》为准。",
    ]),
    ("第二章 手术医师授权", [
        "第三条 医师主刀手术的权限如下表。",
        [("医师职称", "可主刀的手术级别"),
         ("住院医师", "一级手术"),
         ("主治医师", "二级及以下手术；在上级医师指导下可主刀三级手术"),
         ("副主任医师", "三级及以下手术"),
         ("主任医师", "各级手术，含四级手术")],
        "第四条 手术授权实行动态管理。医务部每两年对医师手术权限重新审核一次；"
        "医师发生严重手术并发症或医疗事故的，应即时重新评估其权限。",
    ]),
    ("第三章 手术审批", [
        "第五条 择期手术的审批权限如下表。",
        [("手术级别", "审批人"),
         ("一级、二级手术", "医疗组长"),
         ("三级手术", "科室主任"),
         ("四级手术", "科室主任审核后报医务部审批"),
         ("新技术、新项目首次开展，或可能致残、涉及多学科的重大手术", "医务部审核后报分管副院长批准")],
        "第六条 急诊手术来不及按第五条审批的，由在场最高职称医师决定并报告科室主任，术后二十四小时内补办审批手续。",
        "第七条 邀请外院专家来院手术的，须提前 3 个工作日报医务部审批备案。",
    ]),
    ("第四章 术前讨论与安全核查", [
        "第八条 三级、四级手术必须进行术前讨论，由科室主任或其授权的副主任医师以上人员主持；"
        "四级手术的术前讨论记录须于术前报医务部备案。",
        "第九条 手术安全核查由手术医师、麻醉医师和巡回护士三方，"
        "分别在麻醉实施前、手术开始前和患者离开手术室前共同进行。",
        "第十条 择期手术患者的平均术前住院日应控制在 3 日以内。",
    ]),
    ("第五章 知情同意与不良事件", [
        "第十一条 手术前由主刀医师或第一助手向患者或其近亲属告知手术风险并签署知情同意书。"
        "患者不能签字且无近亲属在场的紧急情况，经医疗机构负责人或授权负责人（夜间为医院总值班）批准后实施。",
        "第十二条 术后 30 日内因各种原因再次进入手术室进行的手术为非计划再次手术。主刀医师应在再次手术后 48 小时内填报"
        "《非计划再次手术报告表》，报医务部。",
        "第十三条 本制度自 2025 年 5 月 1 日起施行，由医务部负责解释。",
    ]),
]


def build(out: Path = OUT) -> Path:
    doc = Document()
    props = doc.core_properties
    props.title = "江州市第一人民医院手术分级管理制度"
    props.author = "医务部"
    props.created = props.modified = dt.datetime(2025, 4, 18, 9, 0, 0)
    doc.add_heading("江州市第一人民医院手术分级管理制度", level=0)
    doc.add_paragraph("医务部　2025 年 4 月修订")
    for heading, body in CHAPTERS:
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
