"""Charts as inert data: amounts exact in the JSON, text from callers unable to close the block it sits in."""

from __future__ import annotations

import json
from decimal import Decimal

from ledger.web.charts import stacked_bars


def test_a_chart_block_keeps_hostile_names_as_text_and_amounts_exact():
    chart = stacked_bars("spend", "Spend a day", ["2026-11-01"], [("</script><script>alert(1)</script>", [Decimal("0.000000001")])],
                         links=[["/calls?project=x&day=2026-11-01"]])
    block = chart.data_json()
    assert "</script>" not in block and "<" not in block and "&" not in block
    data = json.loads(block)
    assert data["option"]["series"][0]["name"] == "</script><script>alert(1)</script>"
    assert data["option"]["series"][0]["data"] == ["0.000000001"]
    assert data["links"] == [["/calls?project=x&day=2026-11-01"]]
