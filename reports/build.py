"""From records to a report model: one :class:`SectionResult` per registered experiment.

Records are the only input: each section's analysis function gets its experiment's records.
The report adds two computed verdicts of its own where they apply: ``tasks completed`` (FAIL when a
task raised) and ``analysis ran`` (FAIL when the analysis function raised; the section then shows
the error and the records' own verdicts).  Failed and diverged tasks are always listed with their
reasons.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path

from rtrl_validation.analysis import style
from rtrl_validation.analysis.sections import Section
from rtrl_validation.simulations.experiments.base import Verdict
from rtrl_validation.simulations.records import SCHEMA_VERSION, environment, load_records, utc_now
from rtrl_validation.simulations.runner import one_line

from . import registry


@dataclass
class SectionResult:
    """One experiment's section with the records it came from and its normalised verdicts."""

    experiment: str
    section: Section
    records: list[dict]
    verdicts: list[dict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    error: str | None = None            # traceback of a failed analysis
    status: str = "complete"            # "complete" | "not run"

    @property
    def passed(self) -> bool:
        """No verdict FAILed (INCONCLUSIVE is not a failure, and is counted apart)."""
        return not any(status_of(v) == "FAIL" for v in self.verdicts)


def status_of(v: dict) -> str:
    """PASS, FAIL or INCONCLUSIVE of a verdict dict (one without ``status`` is read from ``passed``)."""
    return v.get("status") or ("PASS" if v["passed"] else "FAIL")


def status_counts(verdicts) -> dict:
    statuses = [status_of(v) for v in verdicts]
    return {k.lower(): statuses.count(k) for k in ("PASS", "FAIL", "INCONCLUSIVE")}


@dataclass
class Report:
    sections: list[SectionResult]
    profile: str | None
    seed: int | None
    source: str                          # where the records came from
    generated: str = field(default_factory=utc_now)
    environment: dict = field(default_factory=environment)
    skipped: list[str] = field(default_factory=list)   # bad records left out (--skip-bad-records), one line each

    @property
    def verdicts(self) -> list[dict]:
        """Every verdict, with the section title and experiment name."""
        return [{"section": s.section.title, "experiment": s.experiment, **v}
                for s in self.sections for v in s.verdicts]

    @property
    def not_run(self) -> list[str]:
        return [s.experiment for s in self.sections if s.status == "not run"]

    @property
    def passed(self) -> bool:
        """No verdict FAILed (INCONCLUSIVE verdicts are counted apart, not as failures)."""
        return not any(status_of(v) == "FAIL" for v in self.verdicts)

    def summary(self) -> dict:
        """The content of ``summary.json``."""
        verdicts = self.verdicts
        return {"schema_version": SCHEMA_VERSION, "generated": self.generated, "profile": self.profile,
                "seed": self.seed, "source": self.source, "passed": self.passed,
                "counts": {**status_counts(verdicts), "not_run": len(self.not_run)},
                "not_run": self.not_run, "skipped_records": list(self.skipped), "verdicts": verdicts,
                "experiments": {s.experiment: _record_stats(s.records) for s in self.sections}}


def verdict_dict(v) -> dict:
    """A :class:`Verdict` or verdict dict as a plain dict with every verdict key."""
    return (Verdict.from_dict(v) if isinstance(v, dict) else v).to_dict()


def _record_stats(records: list[dict]) -> dict:
    status = [r["status"] for r in records]
    return {"records": len(records), **{s: status.count(s) for s in ("ok", "diverged", "failed")},
            "seeds": sorted({r["seed"] for r in records}),
            "wall_time": sum(r["provenance"].get("wall_time") or 0.0 for r in records)}


def default_analysis(records: list[dict]) -> Section:
    """A section that lists every record's own verdicts (used when no analysis function is given)."""
    name = records[0]["experiment"]
    return Section(title=name, experiment=name, method="The tasks' own checks, one row per task.",
                   verdicts=[{**verdict_dict(v), "check": f"{r['task']}: {v['check']}"}
                             for r in records for v in r["verdicts"]])


def analyse(name: str, analysis, records: list[dict]) -> SectionResult:
    """Run ``analysis(records)`` and add the report's own checks; never raises."""
    if not records:
        section = Section(title=name, experiment=name, method="",
                          notes=["No records of this experiment were found; it was not run."])
        return SectionResult(name, section, records, status="not run")
    error = None
    try:
        with style.style():
            section = (analysis or default_analysis)(records)
        if not isinstance(section, Section):
            raise TypeError(f"analysis returned {type(section).__name__}, not Section")
        verdicts = [verdict_dict(v) for v in section.verdicts]
    except Exception as e:  # noqa: BLE001 - a broken analysis is reported, never fatal
        error = traceback.format_exc()
        section = default_analysis(records)
        section.title = f"{name} (analysis failed)"
        verdicts = [verdict_dict(v) for v in section.verdicts]
        verdicts.append(Verdict("analysis ran", False, one_line(f"{type(e).__name__}: {e}")).to_dict())
    if not section.config:
        section.config = dict(records[-1]["experiment_config"] or {})

    bad = [r for r in records if r["status"] != "ok"]
    failures = [f"{r['task']}: {r['status']}: {r['reason']}" for r in bad]
    failures += [f for f in section.failures if f not in failures]
    failed = [r for r in bad if r["status"] == "failed"]
    if failed:
        verdicts.append(Verdict(
            "tasks completed", False,
            f"{len(failed)} of {len(records)} tasks failed: " + "; ".join(f"{r['task']} ({r['reason']})"
                                                                          for r in failed[:3])
            + (" ..." if len(failed) > 3 else ""),
            value=len(failed), bound=0).to_dict())
    return SectionResult(name, section, records, verdicts, failures, error)


def build_report(records_by_experiment: dict[str, list[dict]], *, profile: str | None, seed: int | None,
                 source: str, skipped: list[str] = ()) -> Report:
    """Analyse each registered experiment's records, in registry order; ``skipped``: the bad
    records left out (shown in the provenance)."""
    analyses = registry.analyses()
    sections = [analyse(name, analyses.get(name), records) for name, records in records_by_experiment.items()]
    return Report(sections, profile=profile, seed=seed, source=source, skipped=list(skipped))


def stored_records(from_dir: str | Path, on_bad=None) -> dict[str, list[dict]]:
    """The records of every registered experiment found in ``from_dir`` (nothing is computed); a
    bad record (unreadable, or its data breaking the experiment's declared schema) raises
    :class:`~simulations.records.RecordError`, or is handed to ``on_bad`` and left out."""
    return {name: load_records(from_dir, name, on_bad, exp.check_record_data)
            for name, exp in registry.experiments().items()}
