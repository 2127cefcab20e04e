"""江州市第一人民医院：检验报告、门诊预约、住院信息查询工具（tool plug-in）。

    ASSISTANT_TOOLS='["bench.domains.hospital.tools:tools"]'

The plug-in keeps its own SQLite database, `$ASSISTANT_HOME/jiangzhou_hospital.db`, created and seeded on first
use (a few records copied from the LIS, the appointment system and the inpatient system).
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from pathlib import Path
from typing import Annotated, Any

from langchain_core.tools import BaseTool
from pydantic import Field

from assistant.tools.registry import business_tool

DB_NAME = "jiangzhou_hospital.db"
SEED_VERSION = "2026-11-10"

# 检验报告 status: pending | in_progress | reported | critical_notified | cancelled
LAB_REPORTS: list[dict[str, Any]] = [
    {"report_id": "LAB-20261101-007", "patient_id": "P0388412", "patient": "刘**", "ward": "心血管内科二病区",
     "item": "血钾", "result": "6.8", "unit": "mmol/L", "reference": "3.5-5.3", "critical": 1,
     "status": "critical_notified", "reported_at": "2026-11-01 08:42",
     "notified_to": "心血管内科二病区护士站 何丽 08:49"},
    {"report_id": "LAB-20261101-015", "patient_id": "P0401177", "patient": "陈**", "ward": "门诊",
     "item": "血糖（空腹）", "result": "7.9", "unit": "mmol/L", "reference": "3.9-6.1", "critical": 0,
     "status": "reported", "reported_at": "2026-11-01 10:05", "notified_to": None},
    {"report_id": "LAB-20261102-003", "patient_id": "P0377020", "patient": "王**", "ward": "血液内科一病区",
     "item": "血小板计数", "result": "18", "unit": "×10⁹/L", "reference": "125-350", "critical": 1,
     "status": "critical_notified", "reported_at": "2026-11-02 07:55",
     "notified_to": "血液内科一病区护士站 赵敏 08:01"},
    {"report_id": "LAB-20261103-021", "patient_id": "P0412230", "patient": "张**", "ward": "普外科一病区",
     "item": "血常规", "result": None, "unit": None, "reference": None, "critical": 0,
     "status": "in_progress", "reported_at": None, "notified_to": None},
    {"report_id": "LAB-20261103-030", "patient_id": "P0399815", "patient": "李**", "ward": "门诊",
     "item": "凝血酶原时间", "result": "13.2", "unit": "秒", "reference": "11.0-14.5", "critical": 0,
     "status": "reported", "reported_at": "2026-11-03 15:20", "notified_to": None},
    {"report_id": "LAB-20261104-002", "patient_id": "P0388412", "patient": "刘**", "ward": "心血管内科二病区",
     "item": "血钾", "result": None, "unit": None, "reference": None, "critical": 0,
     "status": "cancelled", "reported_at": None, "notified_to": None},
    {"report_id": "LAB-20261104-011", "patient_id": "P0420518", "patient": "周**", "ward": "急诊科",
     "item": "血钠", "result": "118", "unit": "mmol/L", "reference": "137-147", "critical": 1,
     "status": "critical_notified", "reported_at": "2026-11-04 22:16", "notified_to": "急诊科 值班医生 孙涛 22:21"},
    {"report_id": "LAB-20261105-009", "patient_id": "P0405561", "patient": "吴**", "ward": "内分泌科病区",
     "item": "糖化血红蛋白", "result": None, "unit": None, "reference": None, "critical": 0,
     "status": "pending", "reported_at": None, "notified_to": None},
]

# 门诊预约 status: booked | checked_in | completed | cancelled | no_show
APPOINTMENTS: list[dict[str, Any]] = [
    {"appointment_id": "APT-20261110-0031", "patient": "陈**", "department": "心血管内科", "doctor": "周敏 主任医师",
     "date": "2026-11-10", "slot": "上午 09:30-10:00", "status": "cancelled", "note": "患者 11-08 取消"},
    {"appointment_id": "APT-20261110-0045", "patient": "林**", "department": "内分泌科", "doctor": "黄晓燕 副主任医师",
     "date": "2026-11-10", "slot": "上午 10:00-10:30", "status": "completed", "note": None},
    {"appointment_id": "APT-20261111-0008", "patient": "郑**", "department": "普外科", "doctor": "高建国 主任医师",
     "date": "2026-11-11", "slot": "上午 08:00-08:30", "status": "checked_in", "note": "已签到，候诊中"},
    {"appointment_id": "APT-20261111-0102", "patient": "何**", "department": "呼吸内科", "doctor": "马俊 主治医师",
     "date": "2026-11-11", "slot": "下午 14:30-15:00", "status": "booked", "note": None},
    {"appointment_id": "APT-20261112-0017", "patient": "徐**", "department": "神经内科", "doctor": "罗佳 副主任医师",
     "date": "2026-11-12", "slot": "上午 09:00-09:30", "status": "no_show", "note": "未按时就诊"},
    {"appointment_id": "APT-20261113-0060", "patient": "孙**", "department": "血液内科", "doctor": "钱立新 主任医师",
     "date": "2026-11-13", "slot": "下午 15:00-15:30", "status": "booked", "note": "复诊"},
]

# 住院 status: admitted | pending_discharge | discharged | transferred
ADMISSIONS: list[dict[str, Any]] = [
    {"admission_id": "ADM-2026-0042", "patient_id": "P0388412", "patient": "刘**", "ward": "心血管内科二病区",
     "bed": "12床", "attending": "周敏 主任医师", "admitted": "2026-10-29", "diagnosis": "慢性心力衰竭急性加重",
     "nursing_level": "一级护理", "status": "admitted"},
    {"admission_id": "ADM-2026-0057", "patient_id": "P0377020", "patient": "王**", "ward": "血液内科一病区",
     "bed": "7床", "attending": "钱立新 主任医师", "admitted": "2026-10-30", "diagnosis": "急性髓系白血病",
     "nursing_level": "特级护理", "status": "admitted"},
    {"admission_id": "ADM-2026-0063", "patient_id": "P0412230", "patient": "张**", "ward": "普外科一病区",
     "bed": "25床", "attending": "高建国 主任医师", "admitted": "2026-11-02", "diagnosis": "胆囊结石伴慢性胆囊炎",
     "nursing_level": "二级护理", "status": "pending_discharge"},
    {"admission_id": "ADM-2026-0071", "patient_id": "P0405561", "patient": "吴**", "ward": "内分泌科病区",
     "bed": "3床", "attending": "黄晓燕 副主任医师", "admitted": "2026-11-04", "diagnosis": "2型糖尿病",
     "nursing_level": "二级护理", "status": "admitted"},
    {"admission_id": "ADM-2026-0018", "patient_id": "P0356601", "patient": "赵**", "ward": "骨科病区",
     "bed": "31床", "attending": "谢永康 主任医师", "admitted": "2026-10-12", "diagnosis": "股骨颈骨折",
     "nursing_level": "二级护理", "status": "discharged"},
    {"admission_id": "ADM-2026-0066", "patient_id": "P0420518", "patient": "周**", "ward": "重症医学科",
     "bed": "4床", "attending": "韩冰 副主任医师", "admitted": "2026-11-04", "diagnosis": "重度低钠血症",
     "nursing_level": "特级护理", "status": "transferred"},
]

STATUS_ZH = {
    "pending": "待检", "in_progress": "检验中", "reported": "已出报告", "critical_notified": "危急值已通知",
    "cancelled": "已取消", "booked": "已预约", "checked_in": "已签到", "completed": "已就诊", "no_show": "爽约",
    "admitted": "在院", "pending_discharge": "待出院", "discharged": "已出院", "transferred": "已转科",
}

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE lab_reports (report_id TEXT PRIMARY KEY, patient_id TEXT NOT NULL, patient TEXT, ward TEXT,
    item TEXT NOT NULL, result TEXT, unit TEXT, reference TEXT, critical INTEGER NOT NULL, status TEXT NOT NULL,
    reported_at TEXT, notified_to TEXT);
CREATE TABLE appointments (appointment_id TEXT PRIMARY KEY, patient TEXT, department TEXT NOT NULL, doctor TEXT,
    date TEXT NOT NULL, slot TEXT, status TEXT NOT NULL, note TEXT);
CREATE TABLE admissions (admission_id TEXT PRIMARY KEY, patient_id TEXT NOT NULL, patient TEXT, ward TEXT NOT NULL,
    bed TEXT, attending TEXT, admitted TEXT, diagnosis TEXT, nursing_level TEXT, status TEXT NOT NULL);
"""
SEEDS = (("lab_reports", LAB_REPORTS), ("appointments", APPOINTMENTS), ("admissions", ADMISSIONS))


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    return conn


def _seeded(path: Path) -> bool:
    try:
        conn = _connect(path)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'seed_version'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return row is not None and row["value"] == SEED_VERSION


def ensure_db(home: Path) -> Path:
    """The plug-in's database under `home`, created (or replaced, when seeded by another version) once; built
    beside the target and renamed in."""
    path = Path(home) / DB_NAME
    if path.exists() and _seeded(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}-{uuid.uuid4().hex[:8]}")
    conn = _connect(tmp)
    try:
        with conn:
            conn.executescript(SCHEMA)
            for table, rows in SEEDS:
                cols = list(rows[0])
                conn.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                                 [tuple(r[c] for c in cols) for r in rows])
            conn.execute("INSERT INTO meta VALUES ('seed_version', ?)", (SEED_VERSION,))
    finally:
        conn.close()
    os.replace(tmp, path)
    return path


def _one(db: Path, sql: str, key: str) -> dict[str, Any] | None:
    conn = _connect(db)
    try:
        row = conn.execute(sql, (key.strip().upper(),)).fetchone()
    finally:
        conn.close()
    if row is None:
        return None
    record = dict(row)
    record["status_zh"] = STATUS_ZH.get(record["status"], record["status"])
    return record


def hospital_tools(db: Path) -> list[BaseTool]:
    @business_tool(roles={"doctor", "nurse", "lab"},
                   route={"report_id": r"(?<![A-Za-z0-9])LAB-\d{8}-\d{3}(?!\d)"})
    def get_lab_report(report_id: Annotated[str, Field(description="报告单号，如 LAB-20261101-007")]) -> dict:
        """检验报告查询：项目、结果、是否危急值及通知情况 / Lab report and critical-value notification"""
        row = _one(db, "SELECT * FROM lab_reports WHERE report_id = ?", report_id)
        if row is None:
            return {"error": f"未找到检验报告 {report_id.strip().upper()}（not found）"}
        row["critical"] = bool(row["critical"])
        return row

    @business_tool(route={"appointment_id": r"(?<![A-Za-z0-9])APT-\d{8}-\d{4}(?!\d)"})
    def get_appointment(appointment_id: Annotated[str, Field(description="预约号，如 APT-20261110-0031")]) -> dict:
        """门诊预约查询：科室、医生、就诊时段与状态 / Outpatient appointment"""
        row = _one(db, "SELECT * FROM appointments WHERE appointment_id = ?", appointment_id)
        if row is None:
            return {"error": f"未找到预约 {appointment_id.strip().upper()}（not found）"}
        return row

    @business_tool(roles={"doctor", "nurse"}, route={"admission_id": r"(?<![A-Za-z0-9])ADM-\d{4}-\d{4}(?!\d)"})
    def get_admission(admission_id: Annotated[str, Field(description="住院号，如 ADM-2026-0042")]) -> dict:
        """住院信息查询：病区、床号、主管医生、护理级别与在院状态 / Inpatient admission"""
        row = _one(db, "SELECT * FROM admissions WHERE admission_id = ?", admission_id)
        if row is None:
            return {"error": f"未找到住院记录 {admission_id.strip().upper()}（not found）"}
        return row

    return [get_lab_report, get_appointment, get_admission]


def tools(settings: Any) -> list[BaseTool]:
    """The plug-in: the hospital's look-up tools over the database under `settings.home`."""
    return hospital_tools(ensure_db(Path(settings.home)))
