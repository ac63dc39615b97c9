"""The whole-suite log audit (tests/conftest.py) really catches a secret that reaches a log line."""

from __future__ import annotations

import logging

from tests.conftest import SECRET, _SuiteLogAudit


def test_audit_flags_a_secret_that_survives_and_passes_redacted_lines() -> None:
    """Without the redactor a token is a leak; with it (as the suite runs) the same record is clean."""
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "token ghs_%s and secret %s", ("a" * 36, SECRET), None)
    raw = _SuiteLogAudit()
    raw.filters.clear()  # what a line would look like if redaction were broken
    raw.emit(record)
    assert len(raw.leaks) == 1
    audited = _SuiteLogAudit()
    audited.handle(logging.LogRecord("t", logging.INFO, __file__, 1, "token ghs_%s and secret %s",
                                     ("a" * 36, SECRET), None))
    assert audited.lines == 1 and audited.leaks == []
