"""The one error kind a person sees: a single line naming the problem and the fix.

Modules raise a subclass (ConfigError, UsersFileError, InfluxdError, ...) and the
`kubemonitor` command prints `kubemonitor: <message>` and exits with status 2,
never a traceback. It lives here, below every module, so nothing has to import the
command-line module to raise one.
"""
from __future__ import annotations


class UserError(Exception):
    """A failure to report as one line on stderr (exit status 2)."""
