"""Verification: did a change do what it should, without regressing anything it guards?"""

from healer.models import GuardSpec, KmsgPattern, Verdict, VerifyResult, VerifySpec
from healer.verify.compare import (
    KmsgFn,
    SeriesFn,
    evaluate,
    kmsg_baseline,
    summarize_baseline,
)
from healer.verify.spec import spec_from_playbook

__all__ = [
    "GuardSpec",
    "KmsgFn",
    "KmsgPattern",
    "SeriesFn",
    "Verdict",
    "VerifyResult",
    "VerifySpec",
    "evaluate",
    "kmsg_baseline",
    "spec_from_playbook",
    "summarize_baseline",
]
