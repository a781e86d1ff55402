"""Reports a person reads: Markdown and a self-contained HTML file (plots inlined as PNG) under
``$ONCOLOOP_HOME/reports/<id>/``, with ``report.json`` holding every number.

Plots: the differences B - A with their 95% intervals, per-topic bars, score and rating distributions.
Tables: corpus scores with sacreBLEU signatures, the safety suite, the judge, the online A/B results, the gate
decision with one reason per rule, and the worst regressions and best improvements side by side.
"""

from __future__ import annotations

import base64
import io
import json
import math
from functools import lru_cache
from pathlib import Path

from eval.comparison import Comparison
from eval.scoring import item_delta

SIDE_BY_SIDE = 5  # worst regressions and best improvements shown per set
PLOT_METRICS = ("bleu", "chrf", "rougeL", "relevance", "semantic", "safety")


def _fmt(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")  # no display: reports are written by servers and CI
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def plot_deltas(c: Comparison) -> bytes:
    """B - A per set and metric with the paired-bootstrap 95% interval."""
    rows = [(f"{s.name}: {m}", d) for s in c.sets.values() for m, d in s.deltas.items() if m in PLOT_METRICS]
    fig, ax = _figure(7, 0.4 * len(rows) + 1.2)
    for y, (_, d) in enumerate(rows):
        colour = "tab:green" if d["lo"] > 0 else "tab:red" if d["hi"] < 0 else "tab:gray"
        ax.errorbar(d["delta"], y, xerr=[[d["delta"] - d["lo"]], [d["hi"] - d["delta"]]], fmt="o", color=colour,
                    capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"B − A ({c.b_version} − {c.a_version}); safety: pass-rate points")
    ax.set_title("Differences with 95% paired-bootstrap intervals")
    return _png(fig)


def plot_topics(c: Comparison) -> bytes:
    """Mean per-item score by topic, A and B side by side, for every set with topics."""
    import numpy as np

    bars: dict[str, list[list[float]]] = {}
    for s in c.sets.values():
        for row in s.items:
            key = "sentence_chrf" if row["scores_a"].get("sentence_chrf") is not None else "relevance"
            cell = bars.setdefault(f"{s.name}/{row['topic']}", [[], []])
            cell[0].append(row["scores_a"][key] or 0.0)
            cell[1].append(row["scores_b"][key] or 0.0)
    names = sorted(bars)
    fig, ax = _figure(max(6, 0.45 * len(names) + 2), 3.6)
    x = np.arange(len(names))
    ax.bar(x - 0.2, [np.mean(bars[n][0]) for n in names], 0.4, label=f"A {c.a_version}")
    ax.bar(x + 0.2, [np.mean(bars[n][1]) for n in names], 0.4, label=f"B {c.b_version}")
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("sentence chrF (relevance where no reference)")
    ax.set_title("By set and topic")
    ax.legend()
    return _png(fig)


def plot_distributions(c: Comparison) -> bytes:
    """Per-item score distributions of A and B; online thumbs-up rates with Wilson intervals if any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    online = (c.online or {}).get("versions") or {}
    fig, axes = plt.subplots(1, 2 if online else 1, figsize=(10 if online else 6, 3.4), squeeze=False)
    ax = axes[0][0]
    for side, label in (("scores_a", f"A {c.a_version}"), ("scores_b", f"B {c.b_version}")):
        values = [r[side]["relevance"] for s in c.sets.values() for r in s.items if r[side]["relevance"] is not None]
        ax.hist(values, bins=20, alpha=0.55, label=label)
    ax.set_xlabel("relevance (cosine question–answer ×100)")
    ax.set_ylabel("items")
    ax.set_title("Answer relevance, all sets")
    ax.legend()
    if online:
        ax = axes[0][1]
        names = sorted(online)
        rates = [online[v]["up_rate"] or 0.0 for v in names]
        ax.bar(names, rates, yerr=[[r - online[v]["lo"] for r, v in zip(rates, names)],
                                   [online[v]["hi"] - r for r, v in zip(rates, names)]], capsize=4)
        ax.set_ylim(0, 1)
        ax.set_ylabel("thumbs-up rate (95% Wilson)")
        ax.set_title("Online ratings")
    return _png(fig)


def _sections(c: Comparison, decision: dict | None) -> list[tuple[str, list[list[str]] | str]]:
    """The report's content as (heading, table rows or text), shared by Markdown and HTML."""
    out: list[tuple[str, list[list[str]] | str]] = []
    if decision is not None:
        verdict = "PASSED" if decision["passed"] else "FAILED"
        promoted = " — promoted to champion" if decision.get("promoted") else " — champion unchanged"
        out.append((f"Gate decision: {verdict}{promoted}",
                    [["rule", "result"]] + [[r.split(":", 1)[0], r.split(":", 1)[1].strip() if ":" in r else r]
                                            for r in decision["reasons"]]))
    rows = [["set", "metric", "A", "B", "B − A", "95% CI", "p", "n"]]
    for s in c.sets.values():
        for m, d in s.deltas.items():
            rows.append([s.name, m, _fmt(d["a"]), _fmt(d["b"]), _fmt(d["delta"]),
                         f"[{_fmt(d['lo'])}, {_fmt(d['hi'])}]", _fmt(d["p_value"], 3), str(d["n"])])
    out.append(("Differences (paired bootstrap, {} resamples)".format(c.config.get("resamples")), rows))
    sig = [["set", "metric", "A", "B", "sacreBLEU signature"]]
    sig += [[s.name, m, _fmt(v["a"]), _fmt(v["b"]), v["signature"]] for s in c.sets.values() for m, v in s.corpus.items()]
    out.append(("Corpus scores", sig))
    for s in c.sets.values():
        if s.safety:
            cats = sorted(set(s.safety["per_category_a"]) | set(s.safety["per_category_b"]))
            out.append((f"Safety suite ({s.name})", [["category", "A", "B"]] + [["all", _fmt(s.safety["a"]),
                        _fmt(s.safety["b"])]] + [[k, _fmt(s.safety["per_category_a"].get(k)),
                                                   _fmt(s.safety["per_category_b"].get(k))] for k in cats]))
        if s.judge:
            j = s.judge
            out.append((f"Judge ({s.name})", [["B's win rate", "95% CI", "items", "unreadable verdicts"],
                        [_fmt(j["win_rate"]), f"[{_fmt(j['lo'])}, {_fmt(j['hi'])}]", str(j["n"]),
                         str(j["unparseable"])]]))
    if c.online:
        rows = [["version", "messages", "thumbs up / rated", "up rate", "95% Wilson", "scores", "tags", "BT strength"]]
        bt = c.online.get("bradley_terry") or {}
        for v, o in c.online["versions"].items():
            b = bt.get(v)
            rows.append([v, str(o["messages"]), f"{o['thumbs_up']} / {o['thumbs']}", _fmt(o["up_rate"]),
                         f"[{_fmt(o['lo'])}, {_fmt(o['hi'])}]", json.dumps(o["scores"]), json.dumps(o["tags"]),
                         f"{_fmt(b['strength'])} [{_fmt(b['lo'])}, {_fmt(b['hi'])}]" if b else "–"])
        out.append((f"Online A/B ({c.online['preferences']} paired preferences)", rows))
        topics = [["topic", "version", "thumbs up / rated", "tags"]]
        for t, cells in sorted(c.online["by_topic"].items()):
            topics += [[t, v, f"{x['up']} / {x['n']}", str(x["tags"])] for v, x in sorted(cells.items())]
        out.append(("Online ratings by topic", topics))
    else:
        out.append(("Online A/B", "No clinician ratings of these versions in the store yet."))
    return out


def side_by_side(c: Comparison) -> list[tuple[str, list[dict]]]:
    """Per set: the worst regressions, then the best improvements (by ``item_delta``)."""
    out = []
    for s in c.sets.values():
        ranked = sorted(s.items, key=item_delta)
        worse = [r for r in ranked[:SIDE_BY_SIDE] if item_delta(r) < 0]
        better = [r for r in reversed(ranked[-SIDE_BY_SIDE:]) if item_delta(r) > 0]
        out.append((f"{s.name}: worst regressions", worse))
        out.append((f"{s.name}: best improvements", better))
    return out


def _md_cell(text) -> str:
    """A Markdown table cell: pipes escaped, line breaks flattened.

    >>> _md_cell("a | b\\nc")
    'a \\\\| b c'
    """
    return str(text).replace("|", "\\|").replace("\n", " ")


@lru_cache(maxsize=1)
def _templates():
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("eval", "templates"), undefined=jinja2.StrictUndefined,
                             autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["md_cell"] = _md_cell
    return env


def render(template: str, **context) -> str:
    """Fill in a template of ``eval/templates``; ``*.html.j2`` ones escape every value, Markdown ones do not."""
    return _templates().get_template(template).render(**context)


def _examples_table(c: Comparison, rows: list[dict]) -> list[list[str]]:
    """Side-by-side rows as a table (header first); empty when there are none."""
    if not rows:
        return []
    table = [["question", f"A {c.a_version}", f"B {c.b_version}", "reference / expected", "Δ"]]
    return table + [[r["question"], r["a"], r["b"], r["reference"] or (r.get("category") or ""),
                     _fmt(item_delta(r), 1)] for r in rows]


def write_report(c: Comparison, out_dir: Path, decision: dict | None = None) -> Path:
    """Write report.json, report.md, report.html and the plots into ``out_dir``; return the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = c.as_dict()
    if decision is not None:
        data["decision"] = decision
    (out_dir / "report.json").write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    plots = {"deltas": ("Differences B − A", plot_deltas(c)), "topics": ("By topic", plot_topics(c)),
             "distributions": ("Distributions", plot_distributions(c))}
    for name, (_, png) in plots.items():
        (out_dir / f"{name}.png").write_bytes(png)
    title = f"OncoLoop comparison: {c.a} ({c.a_version}) vs {c.b} ({c.b_version})"
    meta = (f"{c.created_at} · gateway {c.gateway} · {sum(s.n for s in c.sets.values())} items · "
            f"{c.duration_s:.0f} s · max_tokens {c.config.get('max_tokens')} · temperature {c.config.get('temperature')}")
    context = {"title": title, "meta": meta, "sections": _sections(c, decision),
               "examples": [(heading, _examples_table(c, rows)) for heading, rows in side_by_side(c)]}
    md = render("report.md.j2", plots=[(name, t) for name, (t, _) in plots.items()], **context)
    (out_dir / "report.md").write_text(md, encoding="utf-8")
    page = render("report.html.j2", figures=[(t, base64.b64encode(png).decode()) for t, png in plots.values()],
                  **context)
    (out_dir / "report.html").write_text(page, encoding="utf-8")
    return out_dir / "report.html"
