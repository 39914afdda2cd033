"""The billing tests' month: February 2026, answers known in closed form (see tests/test_billing.py)."""
from __future__ import annotations

from kubemonitor.ratecard import example_resources

FEB = 1769904000  # 2026-02-01T00:00:00Z
DAYS = 28
GIB = 1024**3
EVIL = '=HYPERLINK("http://x")'



def card(groups: str, *resources: str) -> str:
    """A UTC card billing the packaged example's resources (cpu 0.02 per core-hour, memory
    0.004 per GiB-hour: the closed forms below use these prices) with the given groups."""
    text = "currency: CHF\ntimezone: UTC\nclose_after: 6h\n" + example_resources(*(resources or ("cpu", "memory")))
    assert "price: 0.020}" in text and ("memory" not in text or "price: 0.004}" in text), "the example's prices changed"
    return text + "groups:\n" + groups


CARD = card("""\
  astro: {name: Astrophysics Lab, account: CC-4711, namespaces: [astro-lab, astro-dev]}
  plus: {name: "+Lab", account: "@acct", namespaces: [plus-lab]}
""")


def escape(tag: str) -> str:
    return tag.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def month_lines() -> list[str]:
    lines = []
    pods = (("astro-lab", "a-1", 1000), ("astro-dev", "d-1", 500), ("bio-sim", "b-1", 2000), ("kube-system", "k-1", 100),
            (EVIL, "evil-1", 10))
    gap = (FEB + 9 * 86400 + 2 * 3600, FEB + 9 * 86400 + 3 * 3600)
    for i in range(DAYS * 1440):
        t = FEB + i * 60
        for ns, pod, cpu in pods:
            tags = f"namespace_name={escape(ns)},pod_name={pod}"
            lines.append(f"cpu/usage_rate,{tags},container_name=main,type=pod_container value={cpu}.0 {t}")
            lines.append(f"cpu/usage_rate,{tags},type=pod value={cpu}.0 {t}")
        lines.append(f"memory/usage,namespace_name=astro-lab,pod_name=a-1,type=pod value={2 * GIB}i {t}")
        if not gap[0] <= t < gap[1]:
            lines.append(f"cpu/usage_rate,type=cluster value=3610.0 {t}")
            lines.append(f"memory/usage,type=cluster value={2 * GIB}i {t}")
    return lines


def load_month(influxd):
    name = "billing_month"
    influxd.start()
    influxd.query(f'DROP DATABASE "{name}"')
    influxd.query(f'CREATE DATABASE "{name}"')
    lines = month_lines()
    for start in range(0, len(lines), 200_000):
        influxd.write(name, lines[start:start + 200_000], precision="s")
    return name


