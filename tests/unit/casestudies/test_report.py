"""The report builder and the plots: HTML with the images inlined, readable without the result files."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import numpy as np

from airflow_provider_hpcai.casestudies import plots, report


def _png_payloads(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)]


def test_report_inlines_every_image_and_escapes_text(tmp_path) -> None:
    rain = np.outer(np.hanning(24), np.hanning(20)) * 40
    labels = (rain > 20).astype(int)
    png = plots.rainfall_map(rain, labels, [{"id": 1}], 5.0, str(tmp_path / "rain.png"))
    out = report.build_report(str(tmp_path / "r" / "report.html"), "Demo <1>", [
        {"title": "Climate & rain", "lead": "a <b>lead</b>", "facts": [("storms", 1)],
         "images": [("rainfall", png), ("gone", str(tmp_path / "nope.png"))]},
        {"title": "Seismic", "missing": "no seismic_risk result found"},
    ])
    html = Path(out).read_text(encoding="utf-8")
    payloads = _png_payloads(html)
    assert len(payloads) == 1 and payloads[0] == Path(png).read_bytes()
    assert payloads[0].startswith(b"\x89PNG")
    assert "Demo &lt;1&gt;" in html and "a &lt;b&gt;lead&lt;/b&gt;" in html and "Climate &amp; rain" in html
    assert "missing image: gone" in html and "no seismic_risk result found" in html
    assert "http://" not in html and "https://" not in html  # opens offline


def test_demo_report_uses_the_newest_run_and_says_what_is_missing(tmp_path) -> None:
    results = tmp_path / "results"
    for run, storms in (("old", 1), ("new", 2)):
        folder = results / "climate_adaptive" / run
        folder.mkdir(parents=True)
        (folder / "rainfall.json").write_text(json.dumps({
            "grid": [8, 8], "dx_km": 10.0, "simulated_hours": 3.0, "n_storms": storms, "n_analysed": storms,
            "total_m3": 2e9, "storms_m3": 1e9, "background_m3": 1e9, "storm_share": 0.5,
            "storms": [{"id": 1, "area_km2": 400.0, "volume_m3": 1e9, "refined_max_mm": 12.0}]}))
        os.utime(folder / "rainfall.json", (1e9, 1e9) if run == "old" else None)
    out, lines = report.demo_report(str(results), None, str(tmp_path / "report.html"))
    html = Path(out).read_text(encoding="utf-8")
    assert lines[0].startswith("climate: 2 storm(s) -> 2 mapped analyses")
    assert "no seismic_risk result found" in html and "no manufacturing_optimization result found" in html
    assert "missing image: Accumulated rain" in html  # the run folder had no PNG


def test_hazard_and_manufacturing_plots_write_pngs(tmp_path) -> None:
    levels = np.geomspace(0.1, 100, 20)
    curves = {"x=100 m": 0.05 * np.linspace(1, 0, 20), "x=200 m": 0.04 * np.linspace(1, 0, 20) ** 2}
    assert plots.hazard_curves(levels, curves, 3.0, 0.05, str(tmp_path / "h.png")).endswith("h.png")
    rows = [{"scenario": "no_shortage", "staff": s, "buffer": b, "throughput": 0.1 * s + 0.01 * b,
             "energy_per_unit_kwh": 1.0 / s, "throughput_ci95": 0.01, "energy_per_unit_kwh_ci95": 0.01}
            for s in (1, 2) for b in (0, 2, 4)]
    from airflow_provider_hpcai.casestudies.manufacturing import fit_surrogate, predict

    sur = fit_surrogate(rows)
    rec = {"buffer": 4, "staff": 2, "predicted": {"no_shortage": {"throughput": 0.24, "energy_per_unit_kwh": 0.5}}}
    path = plots.throughput_vs_buffer(rows, sur, rec, str(tmp_path / "m.png"), predict=predict)
    assert Path(path).read_bytes()[:4] == b"\x89PNG"
