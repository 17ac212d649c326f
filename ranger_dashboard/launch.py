"""The command line that starts Tembo's ranger dashboard (used by `tembo dashboard` and `tembo demo`)."""

from __future__ import annotations

import sys
from pathlib import Path

from ranger_dashboard.palette import THEME

APP_PATH = Path(__file__).resolve().parent / "app.py"
DEFAULT_PORT = 8501
ADDRESS = "127.0.0.1"


def command(port: int = DEFAULT_PORT, database_url: str = "sqlite:///var/tembo.db") -> list[str]:
    """`streamlit run` for the dashboard on 127.0.0.1:`port`, reading `database_url`.

    Headless (no browser is opened), no usage statistics sent, no file watcher, night theme.
    The database URL goes to the app after streamlit's `--`.
    """
    if not 0 < int(port) < 65536:
        raise ValueError(f"port must be 1..65535, got {port}")
    theme_flags = [item for key, value in THEME.items() for item in (f"--theme.{key}", value)]
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_PATH),
        "--server.headless",
        "true",
        "--server.address",
        ADDRESS,
        "--server.port",
        str(int(port)),
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--global.developmentMode",
        "false",
        "--client.toolbarMode",
        "minimal",
        *theme_flags,
        "--",
        "--database-url",
        database_url,
    ]
