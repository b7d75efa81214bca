"""test_qemu: one QEMU per scenario (pgtest.scenarios), judged by QEMU's exit status and
the console: the ktest programs, the demo, several memory sizes, deliberate kernel
crashes and swap. `scripts/qemu-tests` runs these."""

import pytest
from pgtest import scenarios

SCENARIOS = scenarios.all_scenarios()


@pytest.mark.scenario
@pytest.mark.timeout(scenarios.DEFAULT_TIMEOUT_S + 60)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(scenario, boot, options):
    timeout = options.scenario_timeout or scenarios.DEFAULT_TIMEOUT_S
    machine = boot(f"{scenario.cmdline} onexit=exit", mem=scenario.mem, swap=scenario.swap,
                   stub=None, qmp=())
    status = machine.wait(timeout)
    machine.stop()
    reason = scenarios.judge(scenario, status, machine.console_text(), timeout)
    assert not reason, f"{scenario.name} ({scenario.describe()}): {reason}"
