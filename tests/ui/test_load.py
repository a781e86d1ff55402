"""Load: 50 simulated clinicians chat and rate at once for 20 s through the real UI and gateway.

All 50 sessions ask as the clock starts, so 20 s already has every clinician waiting on the gateway at once and
each answered and rated at least once; a longer run repeats the same requests and finds nothing more."""

from __future__ import annotations

import random
import threading
import time

import pytest
from sqlalchemy import func, select

from core.data import load_jsonl
from feedback.db import Rating, User
from tests.conftest import REPO
from tests.helpers.clinician import SimulatedClinician

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
CLINICIANS = 50
DURATION_S = 20.0


def test_50_clinicians_for_20_seconds_lose_nothing(ui_stack):
    url, store = ui_stack["ui"].url, ui_stack["store"]
    questions = [r["instruction"] for r in load_jsonl(REPO / "data" / "oncology_seed.jsonl")[:100]]
    names = [f"load{i:02d}" for i in range(CLINICIANS)]
    for name in names:
        store.add_user(name, f"{name}-password", "clinician")
    errors: list[str] = []
    rating_ids: list[int] = []
    asked = [0]
    lock = threading.Lock()
    ready = threading.Barrier(CLINICIANS + 1, timeout=300)
    deadline = [0.0]

    def clinician(name: str, seed: int) -> None:
        rng = random.Random(seed)
        try:
            person = SimulatedClinician(url, name, f"{name}-password")
        except Exception as e:  # noqa: BLE001 - every failure is counted, none is hidden
            errors.append(f"{name} login: {type(e).__name__}: {e}")
            ready.abort()
            return
        ready.wait()
        while time.monotonic() < deadline[0]:
            try:
                answer = person.ask(rng.choice(questions))
                rid = person.rate(answer["message_id"], thumbs=rng.choice(("up", "down", None)),
                                  score=rng.randint(1, 5), tags=rng.sample(("incorrect", "outdated", "incomplete"),
                                                                           rng.randint(0, 2)),
                                  correction="A better answer." if rng.random() < 0.2 else None)
                with lock:
                    rating_ids.append(rid)
                    asked[0] += 1
            except Exception as e:  # noqa: BLE001
                with lock:
                    errors.append(f"{name}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=clinician, args=(n, i), daemon=True) for i, n in enumerate(names)]
    for t in threads:
        t.start()
    ready.wait()  # all 50 logged in: start the clock
    started = time.monotonic()
    deadline[0] = started + DURATION_S
    for t in threads:
        t.join(timeout=DURATION_S + 600)
    elapsed = time.monotonic() - started
    assert not any(t.is_alive() for t in threads), "a simulated clinician hung"
    print(f"\nload: {CLINICIANS} clinicians, {elapsed:.0f} s, {asked[0]} questions answered and rated "
          f"({asked[0] / elapsed:.1f}/s), {len(errors)} errors")
    assert errors == [], errors[:5]
    assert len(rating_ids) >= CLINICIANS  # every clinician got at least one answer and rated it
    with store.session() as s:
        stored = s.scalar(select(func.count()).select_from(Rating).join(User, Rating.user_id == User.id)
                          .where(User.username.in_(names)))
        found = set(s.scalars(select(Rating.id).where(Rating.id.in_(rating_ids))))
    assert stored == len(rating_ids) == len(set(rating_ids)) and found == set(rating_ids)
