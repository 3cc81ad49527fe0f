"""BENCH bulk-load: five departments' extracts loaded into the base libraries on PostgreSQL
through the bus, against psycopg COPY of the same rows into a plain table in the same run.

The extracts come from the synthetic generator (examples/masterdata/generate.py): 公安 GA,
民政 MZ and 人社 RS hold people, 工商 GS and 国税 GSW legal entities, about 1,000,000 rows
in all by default. govbus: `govbus masterdata load` of the five files at once (as five
departments would), through RabbitMQ and one worker process per stage (ingress, router,
deliver with the `masterdata` outbound of the 人口库 RKK and 法人库 FRK), timed from the start
of the loads to the last batch applied. COPY: the same CSV rows, parsed in Python and copied
into one table of text columns, one transaction per file.

    python bench/run.py bulk-load                       # 1,000,000 rows
    python -m bench.bulk_load --records 200000 --profile   # quicker; cProfile of the workers

Prints the CPU seconds of every process (where the time goes), with --profile the top
functions of each worker and the statements PostgreSQL was busy with (pg_stat_activity,
sampled), and the projected time of Zhuhai's initial sharing.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import itertools
import os
import pstats
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psycopg
from sqlalchemy import create_engine, text

from bench.common import GOVBUS, bench_line, scratch_database, scratch_vhost

ROOT = Path(__file__).resolve().parent.parent
RESIDENTS, ENTITIES = 2_500_000, 400_000  # Zhuhai
ROWS_PER_PERSON_GUESS = 2.53  # generator: records of all five extracts per person simulated
ROUTES = ROOT / "examples" / "masterdata" / "routes.toml"  # the five extracts' resources, RKK and FRK subscribing
STAGES = ("ingress", "router", "deliver")


def generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("masterdata_generate", ROOT / "examples" / "masterdata" / "generate.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]  # its dataclasses look themselves up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module




# -- COPY ----------------------------------------------------------------------------------------


def measure_copy(extracts: dict[str, tuple[str, Path, int]], per: int = 1000) -> float:
    """rows/s of psycopg COPY of every extract's rows into one plain table of text columns,
    committed every `per` rows: the bus commits each batch of as many."""
    headers = {d: next(csv.reader(path.open(encoding="utf-8"))) for d, (_, path, _) in extracts.items()}
    columns = list(dict.fromkeys(c for h in headers.values() for c in h))
    rows = 0
    with scratch_database() as url, psycopg.connect(url.replace("+psycopg", "")) as conn:
        conn.execute("create table extract_row (department text, " + ", ".join(f'"{c}" text' for c in columns) + ")")
        conn.commit()
        started = time.perf_counter()
        for department, (_, path, _) in extracts.items():
            names = ", ".join(f'"{c}"' for c in headers[department])
            with path.open(encoding="utf-8", newline="") as f, conn.cursor() as cursor:
                reader = csv.reader(f)
                next(reader)
                while True:
                    chunk = list(itertools.islice(reader, per))
                    if not chunk:
                        break
                    with cursor.copy(f"copy extract_row (department, {names}) from stdin") as copy:
                        for row in chunk:
                            copy.write_row((department, *row))
                    conn.commit()
                    rows += len(chunk)
        return rows / (time.perf_counter() - started)


# -- govbus --------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def servers_cpu() -> dict[str, float]:
    """CPU seconds so far of PostgreSQL's and RabbitMQ's processes on this machine."""
    found = {"postgresql": 0.0, "rabbitmq": 0.0}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            key = "postgresql" if comm.startswith("postgres") else "rabbitmq" if comm in ("beam.smp", "erl_child_setup") else None
            if key:
                found[key] += cpu_seconds(int(entry.name))
    return found


class SqlSampler:
    """What PostgreSQL is busy with, by sampling pg_stat_activity every `every` seconds: a
    statement's share of the samples is its share of the server's working time."""

    def __init__(self, database: str, every: float = 0.02) -> None:
        self.url = database.replace("+psycopg", "")
        self.every = every
        self.samples: Counter[str] = Counter()
        self.taken = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SqlSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(self.every):
                rows = conn.execute("select query, coalesce(wait_event, '') from pg_stat_activity where "
                                    "datname = current_database() and state = 'active' and pid <> pg_backend_pid()").fetchall()
                self.taken += 1
                for query, wait in rows:
                    statement = " ".join(query.split())[:120]
                    self.samples[f"{statement}{' [waiting: ' + wait + ']' if wait else ''}"] += 1

    def show(self, top: int = 12) -> None:
        busy = sum(self.samples.values())
        print(f"-- PostgreSQL: statements active in {busy} of {self.taken} samples of pg_stat_activity "
              f"({busy / max(1, self.taken):.0%} of the time one was running), by share of the busy samples")
        for statement, n in self.samples.most_common(top):
            print(f"  {n / max(1, busy):5.0%}  {statement}")


def measure_govbus(extracts: dict[str, tuple[str, Path, int]], folder: Path,
                   profile: bool) -> tuple[float, dict[str, float], dict[str, Path], SqlSampler | None]:
    """rows/s through the bus, CPU seconds per process, and with `profile` the workers'
    profiles and what PostgreSQL was busy with."""
    rows = sum(n for _, _, n in extracts.values())
    with scratch_vhost() as url, scratch_database() as database:
        env = {**os.environ, "GOVBUS_BROKER_URL": url, "GOVBUS_DATABASE_URL": database, "GOVBUS_PREFIX": "bench",
               "GOVBUS_ROUTES": str(ROUTES), "GOVBUS_DATA_DIR": str(folder / "data")}
        subprocess.run([GOVBUS, "topology", "declare"], env=env, check=True, stdout=subprocess.DEVNULL)
        profiles = {stage: folder / f"{stage}.prof" for stage in STAGES} if profile else {}
        workers = {}
        for stage in STAGES:
            command = ([sys.executable, "-m", "cProfile", "-o", str(profiles[stage]), "-m", "bus.cli"] if profile
                       else [GOVBUS]) + ["worker", "--stage", stage]
            workers[stage] = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                              stderr=open(folder / f"{stage}.log", "wb"))
        engine = create_engine(database)
        time.sleep(3)  # the workers connect and declare
        servers_before = servers_cpu()
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        sampler = SqlSampler(database) if profile else None
        if sampler:
            sampler.__enter__()
        started = time.time()
        loads = [subprocess.Popen([GOVBUS, "masterdata", "load", str(path), "--department", department,
                                   "--resource", f"{department}-001"], env=env, stdout=subprocess.PIPE,
                                  stderr=open(folder / f"load-{department}.log", "wb"), text=True)
                 for department, (_, path, _) in extracts.items()]
        batches = 0
        for load, department in zip(loads, extracts, strict=True):
            out, _ = load.communicate(timeout=1800)
            found = re.search(r"(\d+) rows in (\d+) batches", out)
            if load.returncode != 0 or not found:
                raise RuntimeError(f"the load of {department} failed ({load.returncode}): {out}; see {folder}")
            batches += int(found.group(2))
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        loaders = (children.ru_utime + children.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
        deadline = time.monotonic() + 1800
        scope = "bench.deliver.%"
        while True:
            with engine.connect() as conn:
                done, last = conn.execute(text("select count(*), max(claimed_at) from message_claim where scope like :s"),
                                          {"s": scope}).one()
            if done >= batches:
                break
            if time.monotonic() > deadline or any(w.poll() is not None for w in workers.values()):
                raise RuntimeError(f"{done} of {batches} batches applied; logs in {folder}")
            time.sleep(0.5)
        elapsed = last.timestamp() - started
        if sampler:
            sampler.__exit__()
        cpu = {f"worker {stage}": cpu_seconds(w.pid) for stage, w in workers.items()}
        cpu["loaders (5)"] = loaders
        servers = servers_cpu()
        cpu.update({name: servers[name] - servers_before[name] for name in servers})
        cpu["wall"] = elapsed
        for w in workers.values():
            w.send_signal(signal.SIGTERM)
        for w in workers.values():
            try:
                w.wait(30)
            except subprocess.TimeoutExpired:
                w.kill()
        engine.dispose()
    return rows / elapsed, cpu, profiles, sampler


def show_profile(stage: str, path: Path, top: int = 14) -> None:
    if not path.exists():
        print(f"  ({stage}: no profile written)")
        return
    print(f"-- {stage} worker: top {top} functions by own time, then by cumulative time")
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(r"masterdata|bus/|schemas/|psycopg/(connection|cursor)", top * 2)


def duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="rows in all five extracts (default 1000000)")
    parser.add_argument("--profile", action="store_true", help="run the workers under cProfile and print their top functions")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="govbus-bench-bulk-"))
    try:
        line = run(folder, args.records, args.profile)
    except BaseException:
        print(f"bulk-load: the extracts, logs and profiles are kept in {folder}", file=sys.stderr)
        raise
    shutil.rmtree(folder, ignore_errors=True)  # some hundred megabytes of extracts
    return line


def run(folder: Path, records: int, profile: bool) -> str:
    people = max(100, round(records / ROWS_PER_PERSON_GUESS))
    truth = generator().generate(folder / "extracts", people=people)
    extracts = {d: (e.kind, folder / "extracts" / e.file, e.records) for d, e in truth.extracts.items()}
    rows = sum(n for _, _, n in extracts.values())
    copy_rate = measure_copy(extracts)
    ours, cpu, profiles, sampler = measure_govbus(extracts, folder, profile)
    person_rows = sum(n for k, _, n in extracts.values() if k == "person")
    entity_rows = rows - person_rows
    registers = RESIDENTS + ENTITIES  # 公安's and 工商's registers alone
    everything = RESIDENTS * person_rows / truth.parameters["people"] + ENTITIES * entity_rows / max(1, truth.parameters["entities"])
    wall = cpu.pop("wall")
    print("where the time goes (CPU seconds, and share of the wall time):")
    for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
        print(f"  {name:22} {seconds:8.1f} s  {seconds / wall:6.0%}")
    print(f"  {'wall':22} {wall:8.1f} s")
    for stage, path in profiles.items():
        show_profile(stage, path)
    if sampler:
        sampler.show()
    print(f"projected for Zhuhai: the registers of 公安 and 工商 ({registers / 1e6:.1f} M rows) in "
          f"{duration(registers / ours)}; all five extracts at this coverage ({everything / 1e6:.1f} M rows) in "
          f"{duration(everything / ours)} (COPY alone: {duration(registers / copy_rate)} and {duration(everything / copy_rate)})")
    return bench_line(
        "bulk-load", ours / copy_rate, ">=0.5", rows=rows, person_rows=person_rows, entity_rows=entity_rows,
        govbus_rows_s=f"{ours:.0f}", copy_rows_s=f"{copy_rate:.0f}", batch=1000,
        layout="5 loaders + 1 worker per stage, quorum queues, PostgreSQL",
    )


if __name__ == "__main__":
    main()
