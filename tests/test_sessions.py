"""test_sessions: every scripted gdb session of gdb/sessions/ is a test. The ones whose
SESSION says `fast: True` are marked fast and run by default; the others are marked slow
and run with --slow (scripts/sessions without --fast). `scripts/session NAME` runs one
outside pytest, with the same code (pgtest.sessions)."""

import pytest
from pgtest import sessions


def _params():
    params = []
    for path in sessions.session_files():
        try:
            spec, _ = sessions.read_declaration(path)
        except sessions.BadSession as error:  # a broken declaration fails its own test
            params.append(pytest.param(path.stem, None, str(error), id=path.stem))
            continue
        # Its gdb session, then up to KERNEL_END_TIMEOUT for the kernel's own end, then set-up.
        limit = spec["timeout"] + sessions.KERNEL_END_TIMEOUT + 60
        marks = [pytest.mark.fast if spec["fast"] else pytest.mark.slow, pytest.mark.timeout(limit)]
        params.append(pytest.param(path.stem, spec, None, id=path.stem, marks=marks))
    return params


@pytest.mark.parametrize(("name", "spec", "broken"), _params())
def test_session(name, spec, broken, options, built):
    assert broken is None, broken
    # The log: target/sessions/NAME.log, or DIR/NAME.log with --keep-logs DIR.
    ok, line, log_path, seconds = sessions.run_session(name, options.keep_logs, accel=options.accel)
    if not ok:
        tail = log_path.read_text(errors="replace").splitlines()[-40:]
        pytest.fail(f"{line} ({seconds:.1f} s; log {log_path})\n" + "\n".join(tail), pytrace=False)
