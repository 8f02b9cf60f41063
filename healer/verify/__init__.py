"""Verification: did a change do what it should, without regressing anything it guards?"""

from healer.verify.compare import KmsgFn, SeriesFn, evaluate, summarize_baseline
from healer.verify.quiet import KmsgPattern
from healer.verify.spec import GuardSpec, VerifyResult, VerifySpec, spec_from_playbook

__all__ = [
    "GuardSpec",
    "KmsgFn",
    "KmsgPattern",
    "SeriesFn",
    "VerifyResult",
    "VerifySpec",
    "evaluate",
    "spec_from_playbook",
    "summarize_baseline",
]
