"""The unknown path: kernel errors no playbook claims become one incident per template."""

from __future__ import annotations

import random

import pytest

from healer.detect import Detector, IncidentTracker, MemorySink, UnknownPath
from healer.detect.templates import template
from healer.detect.unknown import OVERFLOW, UNCLASSIFIED, severity
from healer.models import KmsgRecord, Sample
from playbooks.loader import load_library
from playbooks.noise import load_noise
from tests.detect.fakes import FakeWindow

NOISE = load_noise()


def _drivers(rng: random.Random) -> list[str]:
    """60 lines from each of two drivers no playbook names, numbers and devices varying."""
    a = [f"mlx5_core 0000:{rng.randint(1, 255):02x}:00.{rng.randint(0, 7)}: "
         f"mlx5_cmd_check:{rng.randint(700, 900)}:(pid {rng.randint(1, 99999)}): "
         f"CREATE_MKEY(0x{rng.randint(0, 4095):x}) op_mod(0x0) failed, status bad "
         f"parameter(0x3), syndrome (0x{rng.getrandbits(24):x})" for _ in range(60)]
    b = [f"i40e 0000:{rng.randint(1, 255):02x}:00.{rng.randint(0, 3)}: "
         f"ARQ VF Error detected on vf {rng.randint(0, 63)}, queue {rng.randint(0, 255)}"
         for _ in range(60)]
    lines = a + b
    rng.shuffle(lines)
    return lines


def run(lines: list[tuple[int, str]], *, facility: int = 0, cycles: int = 3,
        unknown: UnknownPath | None = None) -> MemorySink:
    detector = Detector(load_library(), unknown=unknown or UnknownPath(NOISE))
    sink = MemorySink()
    tracker = IncidentTracker("h1", clock=lambda: 100.0, sink=sink)
    window = FakeWindow()
    step = max(1, len(lines) // cycles)
    for n, start in enumerate(range(0, len(lines) + step, step)):
        batch = tuple(KmsgRecord(seq=start + i, priority=level, facility=facility,
                                 ts_us=(start + i) * 100, message=text)
                      for i, (level, text) in enumerate(lines[start:start + step]))
        sample = Sample(ts=10.0 + n, metrics={}, kmsg=batch)
        window.append(sample)
        tracker.apply(detector.observe(window, sample))
    return sink


def test_120_lines_from_two_unknown_drivers_are_two_incidents_counting_every_line() -> None:
    sink = run([(3, line) for line in _drivers(random.Random(5))])
    assert sorted((i.playbook, i.count) for i in sink.incidents) == [(UNCLASSIFIED, 60)] * 2
    templates = {i.subject for i in sink.incidents}
    assert templates == {"mlx<N>_core <PCI>: mlx<N>_cmd_check:<N>:(pid <N>): CREATE_MKEY(<HEX>) "
                         "op_mod(<HEX>) failed, status bad parameter(<HEX>), syndrome (<HEX>)",
                         "i<N>e <PCI>: ARQ VF Error detected on vf <N>, queue <N>"}
    for incident in sink.incidents:
        assert incident.evidence.captures["template"] == incident.subject
        assert incident.evidence.kmsg and all(template(line) == incident.subject
                                              for line in incident.evidence.kmsg)


def test_a_warning_opens_only_when_it_reads_as_a_failure() -> None:
    sink = run([(4, "hv_balloon: Balloon request will be partially fulfilled. 8 pages failed"),
                (4, "hv_balloon: Max. dynamic memory size: 8192 MB"),
                (6, "foo: device reset failed, giving up")])  # info: never, whatever it says
    assert [i.subject for i in sink.incidents] == [
        "hv_balloon: Balloon request will be partially fulfilled. <N> pages failed"]


def test_user_space_writes_to_dev_kmsg_are_not_kernel_errors() -> None:
    assert run([(3, "myapp[123]: could not open the config: error 2")], facility=1).incidents == []


@pytest.mark.parametrize("line", [
    r"ACPI BIOS Error (bug): Could not resolve symbol [\_SB.PCI0.XHC.RHUB.HS11], AE_NOT_FOUND "
    "(20210730/dswload2-162)",
    "ACPI Error: Aborting method \\_SB.PCI0.XHC.RHUB.HS11._PLD due to previous error "
    "(AE_NOT_FOUND) (20210730/psparse-529)",
    "bluetooth hci0: Direct firmware load for qca/rampatch_usb_00000302.bin failed with error -2",
    "tpm tpm0: [Firmware Bug]: TPM interrupt not working, polling instead",
    " ? panic+0x10b/0x2e0",
    "RAX: 0000000000000000 RBX: ffff8881c0de0000 RCX: 0000000000000000",
])
def test_shipped_harmless_lines_and_report_pieces_open_nothing(line: str) -> None:
    assert run([(3, line)]).incidents == []


def test_new_templates_beyond_the_hourly_cap_share_one_overflow_incident() -> None:
    unknown = UnknownPath(NOISE, new_per_hour=5)
    lines = [(3, f"evil: process {name} said boom") for name in
             ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j")]
    sink = run(lines, cycles=1, unknown=unknown)
    counts = {i.subject: i.count for i in sink.incidents}
    assert len(counts) == 6 and counts[OVERFLOW] == 5
    assert unknown.over_cap_total == 5


def test_a_silenced_template_opens_nothing_while_the_silence_lasts() -> None:
    silenced = {template("i40e 0000:3b:00.0: ARQ VF Error detected on vf 1, queue 2")}
    unknown = UnknownPath(NOISE, silenced=lambda now: silenced if now < 12.5 else set())
    sink = run([(3, line) for line in _drivers(random.Random(9))], cycles=4, unknown=unknown)
    counts = sorted((i.subject[:3], i.count) for i in sink.incidents)
    assert counts[0] == ("i<N", counts[0][1]) and 0 < counts[0][1] < 60  # after the expiry only
    assert counts[1] == ("mlx", 60)
    assert unknown.silenced_total == 60 - counts[0][1]


@pytest.mark.parametrize(("level", "failure", "in_hour", "expected"), [
    (3, False, 1, "info"),  # a one-off err line
    (4, True, 1, "warning"),  # reads as a failure
    (3, False, 10, "warning"),  # repeats
    (3, True, 10, "critical"),  # both
    (1, False, 1, "warning"),  # alert
    (0, True, 1, "critical"),
])
def test_severity_starts_low_and_rises_with_repeats_failure_words_and_level(
        level: int, failure: bool, in_hour: int, expected: str) -> None:
    assert severity(level, failure, in_hour) == expected


def test_an_unclassified_incident_resolves_when_its_template_goes_quiet() -> None:
    unknown = UnknownPath(NOISE, quiet_seconds=60)
    detector = Detector(load_library(), unknown=unknown)
    window = FakeWindow()
    kinds = []
    for ts, lines in ((0.0, ["nouveau 0000:01:00.0: fifo: PBDMA0: 01000000 [] ch 2"]),
                      (30.0, []), (61.0, [])):
        sample = Sample(ts=ts, metrics={}, kmsg=tuple(
            KmsgRecord(seq=1, priority=3, ts_us=1, message=m) for m in lines))
        window.append(sample)
        kinds += [(e.kind, e.playbook_id) for e in detector.observe(window, sample)]
    assert kinds == [("fire", UNCLASSIFIED), ("clear", UNCLASSIFIED)]
