"""Profile a device: every layer a search space can produce, plus whole sampled networks.

Two phases, so that nothing is timed while the machine is busy converting:

1. *convert*: every model file not yet in the cache is made, in parallel on all cores;
2. *measure*: each layer and network not yet done in the store is timed on pinned cores, in
   ``spec.sessions`` round-robin rounds (one fresh session per layer per round, so a layer's runs
   are spread over the whole profile) whose samples are pooled; a result whose coefficient of
   variation exceeds ``cv_threshold`` is recorded and gets more rounds (up to ``max_attempts``);
   every round and attempt is committed to the store the moment it is known.

A killed profile resumes where it stopped: the cache keeps converted files, the store keeps
every attempt, and done layers are never measured again.

Reference networks (:mod:`hwnas.latency_tables.drift`) are timed in the same rounds as the layers
and kept in ``table.references``. A later session on the same store (more ``--layers``, more
networks) first re-times them and records the ratio to the stored figures (``table.drift``), so a
table grown over two days says whether the two days ran at one speed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from hwnas.arch import Arch
from hwnas.devices.backends import Backend, make_backend
from hwnas.devices.measurement import Measurement
from hwnas.devices.spec import DeviceSpec
from hwnas.latency_tables.convert import ConversionJob, convert_all, network_job, op_job, torchvision_job
from hwnas.latency_tables.drift import DRIFT_PREFIX, REFERENCE_PREFIX, DriftCheck, drift_from_pairs, reference_job
from hwnas.latency_tables.sampling import ZooNetwork
from hwnas.latency_tables.store import LatencyStore
from hwnas.latency_tables.table import LatencyEntry, LatencyTable
from hwnas.opkey import OpKey
from hwnas.runfolder import exclusive
from hwnas.space import SearchSpace

Work = tuple[str, str, ConversionJob, dict[str, Any]]
ZOO_PREFIX = "zoo:"  # torchvision networks at sampled widths and resolutions (table.zoo_networks)
EXTRA_PREFIX = "extra:"  # subject, key, its model file's job, detail to store


@dataclass
class ProfileSettings:
    networks: int = 40
    seed: int = 0
    workers: int = 2
    cv_threshold: float = 0.15
    max_attempts: int = 3
    allow_mismatch: bool = False


@dataclass
class ProfileReport:
    table: LatencyTable
    ops: int
    networks: int
    measured_now: int
    attempts_now: int
    wall_s: float
    convert_s: float
    measure_s: float
    noisy: list[str] = field(default_factory=list)
    drift: DriftCheck | None = None


def sample_networks(space: SearchSpace, count: int, seed: int) -> list[Arch]:
    """A fixed list of distinct sampled architectures (the same list on every resume)."""
    rng, seen, archs = random.Random(seed), set(), []
    for _ in range(count * 20):
        if len(archs) == count:
            break
        arch = space.sample(rng)
        if arch not in seen:
            seen.add(arch)
            archs.append(arch)
    return archs


def store_meta(spec: DeviceSpec, backend: Backend, space: SearchSpace) -> dict[str, Any]:
    return {"spec": spec.to_json(), "fingerprint": backend.fingerprint(), "space": space.to_json(), "space_hash": space.hash}


class Profiler:
    """Profiles one device for one space into ``out`` (store.sqlite, table.json) using ``cache``."""

    def __init__(
        self,
        spec: DeviceSpec,
        space: SearchSpace,
        out: Path,
        cache: Path,
        settings: ProfileSettings | None = None,
        backend: Backend | None = None,
        layers: Sequence[OpKey] | None = None,
        references: Sequence[str] = (),
        extra_networks: Sequence[tuple[str, ConversionJob]] = (),
        zoo: Sequence[ZooNetwork] = (),
    ) -> None:
        """``layers``: the layers to measure (default: every layer ``space`` can produce);
        ``references``: reference networks (names in :data:`~hwnas.latency_tables.drift.REFERENCES`);
        ``extra_networks``: (name, model file job) of other whole networks to time in the same rounds
        (stored as ``extra:<name>``, not listed among the table's space networks); ``zoo``: torchvision networks at
        sampled widths and resolutions, timed in the same rounds and kept as the table's ``zoo_networks``."""
        self.spec, self.space, self.out, self.cache = spec, space, Path(out), Path(cache)
        self.settings = settings or ProfileSettings()
        self.backend = backend or make_backend(spec)
        self.layers = list(dict.fromkeys(layers)) if layers is not None else space.enumerate_op_keys()
        self.references = list(references)
        self.extra_networks = list(extra_networks)
        self.zoo = list(dict.fromkeys(zoo))

    def run(self, progress: bool = True) -> ProfileReport:
        """Measure what the store does not hold yet, then write the table. The store is held for this process: a
        second profile of the same folder would measure everything twice, under the other's load (one line instead)."""
        self.backend.require_available()
        with exclusive(self.out, "profile store"):
            return self._run(progress)

    def _run(self, progress: bool) -> ProfileReport:
        started = time.perf_counter()
        store = LatencyStore.open(
            self.out / "store.sqlite", store_meta(self.spec, self.backend, self.space), self.settings.allow_mismatch
        )
        try:
            ops = [
                (key.describe(), op_job(key, self.backend.model_format, self.cache), {"op": key.to_json()}) for key in self.layers
            ]
            nets = [
                (arch.format(), network_job(self.space, arch, self.backend.model_format, self.cache), {"arch": arch.format()})
                for arch in sample_networks(self.space, self.settings.networks, self.settings.seed)
            ]
            refs = [
                (REFERENCE_PREFIX + name, reference_job(name, self.backend.model_format, self.cache), {"reference": name})
                for name in self.references
            ]
            refs += [(EXTRA_PREFIX + name, job, {"extra": name}) for name, job in self.extra_networks]
            refs += [(ZOO_PREFIX + net.label, self._zoo_job(net), {"zoo": net.to_json()}) for net in self.zoo]
            done_ops, done_nets = store.done("op"), store.done("network")
            work = [("op", *item) for item in ops if item[0] not in done_ops]
            work += [("network", *item) for item in nets + refs if item[0] not in done_nets]
            retime = [item for item in refs if item[0] in done_nets and "reference" in item[2]] if work else []
            with _bar(progress) as bar:
                convert_s = self._convert([job for _, _, job, _ in work] + [job for _, job, _ in retime], bar)
                measure_start = time.perf_counter()
                if work:
                    self.backend.settle(work[0][2].path)
                drift = self._retime_references(store, retime)
                attempts = self._measure(store, work, bar)
                measure_s = time.perf_counter() - measure_start
            wall_s = time.perf_counter() - started
            stats = {
                "ops": len(ops),
                "networks": len(nets),
                "measured_now": len(work),
                "attempts_now": attempts,
                "wall_s": wall_s,
                "convert_s": convert_s,
                "measure_s": measure_s,
            }
            table = replace(self.build_table(store), stats=stats)
            table.save(self.out / "table.json")
        finally:
            store.close()
        noisy = [entry.op.describe() for entry in table.entries.values() if (entry.cv or 0) > self.settings.cv_threshold]
        return ProfileReport(table, len(ops), len(nets), len(work), attempts, wall_s, convert_s, measure_s, noisy, drift)

    def _zoo_job(self, network: ZooNetwork) -> ConversionJob:
        return torchvision_job(network.family, network.width, network.resolution, self.backend.model_format, self.cache)

    def _retime_references(
        self, store: LatencyStore, retime: list[tuple[str, ConversionJob, dict[str, Any]]]
    ) -> DriftCheck | None:
        """A later session on this store: time the stored reference networks again, first, and record the ratio."""
        if not retime:
            return None
        stored = {row.key: row.summary["median_ms"] for row in store.accepted("network")}
        pairs = {}
        for key, job, detail in retime:
            measurement = self.backend.measure(job.path)
            pairs[detail["reference"]] = (stored[key], measurement.median_ms)
        check = drift_from_pairs(pairs, context=f"profile {self.out}")
        session = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for row in check.rows:
            detail = {"drift_of": row["reference"], "ratio": row["ratio"], "table_ms": row["table_ms"], "session": session}
            detail["session_ratio"] = check.ratio
            store.record("network", DRIFT_PREFIX + row["reference"], detail, _single(row["now_ms"]), accepted=False)
        return check

    def _convert(self, jobs: list[ConversionJob], bar: Progress) -> float:
        started = time.perf_counter()
        task = bar.add_task(f"convert ({self.backend.model_format})", total=len(jobs))
        convert_all(jobs, self.settings.workers, on_done=lambda _job: bar.advance(task))
        return time.perf_counter() - started

    def _measure(self, store: LatencyStore, work: list[Work], bar: Progress) -> int:
        backend, attempts = self.backend, 0
        if backend.times_in_rounds:
            return self._measure_rounds(store, work, backend, bar)  # its last attempt accepts every subject
        if not work:
            return attempts
        task = bar.add_task(f"measure on {self.spec.name}", total=len(work))
        for subject, key, job, detail in work:
            attempts += self.measure_until_stable(store, subject, key, detail, lambda job=job: backend.measure(job.path))
            bar.advance(task)
        return attempts

    def _measure_rounds(self, store: LatencyStore, work: list[Work], backend: Backend, bar: Progress) -> int:
        """Round-robin: round r times every subject in one fresh session before round r+1 starts.

        Two profiles whose layers were each timed in one contiguous second differed by ~3.2% per
        layer here (TFLite); spread over ``spec.sessions`` rounds across the run, by ~1-2%. When all
        its rounds are in, a subject gets a *pooled row* (an attempt) of every round's samples. A
        pooled result too noisy to accept is not re-timed in one stretch (one slow stretch of the
        machine would then decide it: six ONNX Runtime networks on an AMD EPYC came out ~60% slow
        that way); instead the noisy subjects get ``spec.sessions`` more rounds, round-robin among
        themselves, and the next attempt pools all rounds so far. Every round and pooled row is
        stored the moment it is known, so a killed run resumes at the first missing round.
        """
        pooled_now, pending = 0, list(work)
        for attempt in range(1, max(self.settings.max_attempts, 1) + 1):
            done = {"op": store.done("op"), "network": store.done("network")}
            pending = [item for item in pending if item[1] not in done[item[0]]]
            if not pending:
                break
            rounds = attempt * self.spec.sessions
            self._run_rounds(store, pending, backend, bar, rounds, again=attempt > 1)
            for subject, key, _, detail in pending:
                if store.attempts(subject, key) >= attempt:
                    continue  # pooled before an interruption
                samples = [sample for part in store.round_samples(subject, key)[:rounds] for sample in part]
                pooled = Measurement(tuple(samples), backend.fingerprint())
                accepted = pooled.cv <= self.settings.cv_threshold or attempt >= self.settings.max_attempts
                store.record(subject, key, {**detail, "pooled_rounds": rounds}, pooled, accepted)
                pooled_now += 1
        return pooled_now

    def _run_rounds(
        self, store: LatencyStore, pending: list[Work], backend: Backend, bar: Progress, rounds: int, again: bool
    ) -> None:
        """Bring every pending subject up to ``rounds`` stored rounds, one round of all of them at a time."""
        stored = {(subject, key): len(store.round_samples(subject, key)) for subject, key, _, _ in pending}
        first = min(stored.values(), default=rounds) + 1
        label = f"measure on {self.spec.name} ({rounds} rounds)" + (f", {len(pending)} noisy ones again" if again else "")
        task = bar.add_task(label, total=sum(max(rounds - count, 0) for count in stored.values()))
        for round_number in range(first, rounds + 1):
            for subject, key, job, detail in pending:
                if stored[(subject, key)] >= round_number:
                    continue
                store.record(subject, key, {**detail, "round": round_number}, backend.measure_session(job.path), accepted=False)
                bar.advance(task)

    def measure_until_stable(
        self, store: LatencyStore, subject: str, key: str, detail: dict[str, Any], measure: Callable[[], Measurement]
    ) -> int:
        """Measure until the CV is under the threshold or attempts run out; every attempt is stored."""
        done_before = store.attempts(subject, key)
        for attempt in range(done_before + 1, max(self.settings.max_attempts, done_before + 1) + 1):
            measurement = measure()
            accepted = measurement.cv <= self.settings.cv_threshold or attempt >= self.settings.max_attempts
            store.record(subject, key, detail, measurement, accepted)
            if accepted:
                return attempt - done_before
        return self.settings.max_attempts - done_before

    def build_table(self, store: LatencyStore) -> LatencyTable:
        meta = store.meta()
        entries = {}
        for row in store.accepted("op"):
            op = OpKey.from_json(row.detail["op"])
            entries[op] = LatencyEntry(
                op, row.summary["median_ms"], row.summary["p10_ms"], row.summary["p90_ms"], row.summary["cv"], row.summary["n"]
            )
        accepted = store.accepted("network")
        networks = [
            {"arch": row.key, **row.summary}
            for row in accepted
            if not row.key.startswith((REFERENCE_PREFIX, EXTRA_PREFIX, ZOO_PREFIX))
        ]
        zoo = [{**row.detail["zoo"], **row.summary} for row in accepted if row.key.startswith(ZOO_PREFIX)]
        references = {row.detail["reference"]: row.summary for row in accepted if row.key.startswith(REFERENCE_PREFIX)}
        return LatencyTable(
            device=meta["spec"],
            fingerprint=meta["fingerprint"],
            space=self.space.name,
            space_hash=self.space.hash,
            entries=entries,
            networks=networks,
            kind="measured",
            source=str(store.path),
            references=references,
            drift=_drift_records(store),
            zoo_networks=zoo,
        )


def _single(median_ms: float) -> Measurement:
    return Measurement((median_ms,))


def _drift_records(store: LatencyStore) -> list[dict[str, Any]]:
    """One record per later session that re-timed the reference networks, in order."""
    sessions: dict[str, dict[str, Any]] = {}
    for row in store.all():
        if row.subject != "network" or not row.key.startswith(DRIFT_PREFIX):
            continue
        record = sessions.setdefault(
            row.detail["session"],
            {"ratio": row.detail["session_ratio"], "context": "profile", "measured_at": row.detail["session"], "references": []},
        )
        record["references"].append(
            {
                "reference": row.detail["drift_of"],
                "table_ms": row.detail["table_ms"],
                "now_ms": row.summary["median_ms"],
                "ratio": row.detail["ratio"],
            }
        )
    return list(sessions.values())


def _bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        disable=not enabled,
    )
