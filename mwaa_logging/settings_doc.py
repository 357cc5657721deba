"""The README's configuration table, generated from the settings specs (a test keeps README in sync)."""

from __future__ import annotations

from mwaa_logging.settings import SPECS, env_var


def _default(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) and value >= 1 << 20 and value % (1 << 20) == 0:
        return f"{value:,} ({value >> 20} MiB)"
    return f"{value:,}" if isinstance(value, int) else str(value)


def settings_table() -> str:
    """A Markdown table: setting, environment variable, default, accepted values, meaning."""
    rows = ["| setting | environment variable | default | accepted | meaning |", "|---|---|---|---|---|"]
    for name, spec in SPECS.items():
        rows.append(f"| `{name}` | `{env_var(name)}` | {_default(spec.default)} | {spec.form} | {spec.help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
