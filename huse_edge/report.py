"""The self-contained HTML report of `huse-edge verify`: inline SVG plots and base64 photos, no scripts, no
network, so it can be attached to a release or a bug report as one file."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np

from huse_edge.atomic import write_text
from huse_edge.verify import EMBEDDINGS, VerifyResult, row_cosines

COLOURS = {"fused": "#1f77b4", "image": "#ff7f0e", "text": "#2ca02c"}
STYLE = """body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}.pass{color:#080}
.fail{color:#b00;font-weight:bold}.unavailable{color:#888}figure{display:inline-block;margin:0 1em 1em 0}
.product{display:inline-block;width:220px;vertical-align:top;margin:0 1em 1em 0;font-size:90%}"""


def _accuracy_chart(rows: list[tuple[str, dict]]) -> str:
    """Grouped bars of fused/image/text top-1, zoomed to the range where the backends differ."""
    values = [m[f"{k}_top1"] for _, m in rows for k in COLOURS]
    low = max(0.0, np.floor(min(values) * 20) / 20 - 0.05)
    width, bar, height = 160 + 70 * len(rows), 18, 220
    parts = [f'<svg width="{width}" height="{height + 60}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="0" y="12" font-size="12">top-1 accuracy (axis from {low:.2f} to 1.00)</text>']
    for i, (label, metrics) in enumerate(rows):
        x = 40 + 70 * i
        for j, kind in enumerate(COLOURS):
            h = (metrics[f"{kind}_top1"] - low) / (1 - low) * height
            parts.append(f'<rect x="{x + j * bar}" y="{20 + height - h:.1f}" width="{bar - 2}" height="{h:.1f}" '
                         f'fill="{COLOURS[kind]}"><title>{html.escape(label)} {kind}: '
                         f'{metrics[f"{kind}_top1"]:.4f}</title></rect>')
        parts.append(f'<text x="{x}" y="{height + 36}" font-size="10" transform="rotate(20 {x} {height + 36})">'
                     f'{html.escape(label)}</text>')
    legend = "".join(f'<tspan fill="{c}">■ {k} </tspan>' for k, c in COLOURS.items())
    parts.append(f'<text x="{width - 200}" y="12" font-size="12">{legend}</text></svg>')
    return "".join(parts)


def _histogram(values: np.ndarray, title: str) -> str:
    low = min(float(values.min()), 0.99)
    counts, edges = np.histogram(values, bins=20, range=(low, 1.0))
    width, height = 260, 120
    bars = "".join(f'<rect x="{10 + 12 * i}" y="{10 + height - c / counts.max() * height:.1f}" width="11" '
                   f'height="{c / counts.max() * height:.1f}" fill="#1f77b4"><title>{edges[i]:.4f}–'
                   f'{edges[i + 1]:.4f}: {c}</title></rect>' for i, c in enumerate(counts))
    return (f'<figure><svg width="{width}" height="{height + 30}" xmlns="http://www.w3.org/2000/svg">{bars}'
            f'<text x="10" y="{height + 25}" font-size="10">{low:.4f}</text><text x="220" y="{height + 25}" '
            f'font-size="10">1.0</text></svg><figcaption>{html.escape(title)}</figcaption></figure>')


def _agreement_matrix(predictions: dict[str, np.ndarray]) -> str:
    names = list(predictions)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = []
    for a in names:
        cells = []
        for b in names:
            agreement = float(np.mean(predictions[a] == predictions[b]))
            shade = int(255 * (1 - min(1.0, (1 - agreement) * 20)))
            cells.append(f'<td style="background:rgb(255,{shade},{shade})">{agreement:.4f}</td>')
        rows.append(f"<tr><th>{html.escape(a)}</th>{''.join(cells)}</tr>")
    return f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def _photo(path: Path) -> str:
    try:
        data = base64.b64encode(Path(path).read_bytes()).decode()
    except OSError:
        return "<p>(photo unreadable)</p>"
    return f'<img src="data:image/jpeg;base64,{data}" width="120">'


def _disagreements(result: VerifyResult, limit: int = 12) -> str:
    """Products where a backend's fused decision differs from the float model's, most confident first."""
    reference = np.argmax(result.float_outputs["fused_probabilities"], 1)
    path = [" > ".join(p) for p in result.class_paths]
    cards: list[str] = []
    for backend in (b for b in result.backends if b.status != "unavailable"):
        probabilities = backend.outputs["fused_probabilities"]
        predicted = np.argmax(probabilities, 1)
        differing = np.flatnonzero(predicted != reference)
        for i in differing[np.argsort(-probabilities[differing, predicted[differing]])][: limit - len(cards)]:
            product = result.products[i] if result.products else None
            cards.append(
                f'<div class="product">{_photo(product.image) if product else ""}<br>'
                f'<b>{html.escape(product.title if product else f"product {i}")}</b><br>'
                f"{html.escape(backend.label)}: {html.escape(path[predicted[i]])} "
                f"({probabilities[i, predicted[i]]:.3f})"
                f"<br>float: {html.escape(path[reference[i]])}<br>true: {html.escape(path[result.labels[i]])}</div>")
    return "".join(cards) or "<p>None: every backend made the float model's fused decision on every product.</p>"


def render(result: VerifyResult) -> str:
    ran = [b for b in result.backends if b.status != "unavailable"]
    status_rows = "".join(
        f'<tr><td style="text-align:left">{html.escape(b.label)}</td><td class="{b.status}">{b.status}</td>'
        + (f"<td>{b.metrics['fused_top1']:.4f}</td><td>{b.metrics['fused_ece']:.4f}</td>"
           f"<td>{b.metrics['agreement_with_float']:.4f}</td><td>{b.metrics['image_embedding_cosine_p1']:.4f}</td>"
           f"<td>{b.metrics['latency_p50_ms']:.2f}</td>" if b.metrics else "<td></td>" * 5)
        + f'<td style="text-align:left">{html.escape(b.reason)}</td></tr>' for b in result.backends)
    chart = _accuracy_chart([("keras float", result.float_metrics)] + [(b.label, b.metrics) for b in ran])
    predictions = {"keras float": np.argmax(result.float_outputs["fused_probabilities"], 1)}
    predictions.update({b.label: np.argmax(b.outputs["fused_probabilities"], 1) for b in ran})
    histograms = "".join(_histogram(row_cosines(b.outputs[name], result.float_outputs[name]),
                                    f"{b.label}: {name.split('_')[0]} embedding cosine to float")
                         for b in ran for name in EMBEDDINGS)
    verdict = "PASS" if result.passed else "FAIL"
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>huse-edge verify: {verdict}</title>"
            f"<style>{STYLE}</style></head><body><h1>huse-edge verify — {result.variant}: "
            f"<span class='{verdict.lower()}'>{verdict}</span></h1><p>{len(result.labels)} products of the "
            f"{html.escape(result.split)} split. Float Keras fused top-1 {result.float_metrics['fused_top1']:.4f}, "
            f"calibration error {result.float_metrics['fused_ece']:.4f}.</p><table><tr><th>backend</th>"
            f"<th>status</th><th>fused top-1</th><th>fused ECE</th><th>agreement</th>"
            f"<th>image cos p1</th><th>p50 ms</th><th>reason</th></tr>{status_rows}</table>"
            f"<h2>Accuracy per backend</h2>{chart}<h2>Fused top-1 agreement</h2>{_agreement_matrix(predictions)}"
            f"<h2>Embedding cosine to the float model</h2>{histograms}"
            f"<h2>Worst disagreements with the float model</h2>{_disagreements(result)}</body></html>")


def write_report(result: VerifyResult, path: str | Path) -> None:
    write_text(Path(path), render(result))
