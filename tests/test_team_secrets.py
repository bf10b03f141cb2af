"""No message, log line, traceback, ``repr`` or state of the store and team paths shows a store password
(issue 19, item 13): every failure a person can meet with a PostgreSQL URL that holds one is provoked
on a real server, and everything the package says about it is searched for the secret.

The Ray side (the actor's name, ``livetrain serve --status``) is in ``test_serve_cli.py``.
"""

from __future__ import annotations

import logging
import socket
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from livetrain_widgets import SessionConfig, TrainerConfig
from livetrain_widgets.engine._sql import hide_secrets, redact
from livetrain_widgets.engine.annotation import Annotation
from livetrain_widgets.engine.ray_trainer import actor_name
from livetrain_widgets.engine.store import AnnotationStore
from livetrain_widgets.engine.team import TeamSession, TeamTrainer
from livetrain_widgets.serve import public_url

from .pg_server import PostgresServer
from .tiny_model import TinyClassifier, two_class_images

SECRET = "Hunter2-Sekret"
#: forms of a password a careless message could show: as written, percent-encoded, and pieces of it
FORMS = (SECRET, quote(SECRET, safe=""), "Sekret")


def leaks(texts: list[str]) -> list[str]:
    return [t for t in texts if any(form in t for form in FORMS)]


def everything_about(exc: BaseException) -> list[str]:
    """What a person or a log sees of an error: its text, its repr, and the whole traceback (causes and
    contexts included, as logging.exception prints them)."""
    return [str(exc), repr(exc), "".join(traceback.format_exception(exc))]


def failure(fn: Callable[[], Any]) -> BaseException:
    try:
        fn()
    except Exception as exc:  # any type: the point is what it says
        return exc
    raise AssertionError(f"{fn} did not fail")


def closed_port() -> int:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_redact_hides_the_password_of_malformed_urls_too() -> None:
    cases = {
        f"postgresql://lt:{SECRET}@db:5432/cells": "postgresql://lt:***@db:5432/cells",
        f"postgresql://lt:{SECRET}%ZZ@db/cells": "postgresql://lt:***@db/cells",  # bad percent-encoding
        f"postgresql://lt:{SECRET}/x?y#z@db/cells": "postgresql://lt:***@db/cells",  # unencoded / ? #
        f"postgresql://lt:{SECRET}@x@db/cells": "postgresql://lt:***@db/cells",  # unencoded @
        f"postgresql://lt@db/cells?sslmode=require&password={SECRET}":
            "postgresql://lt@db/cells?sslmode=require&password=***",
        "postgresql://lt@db:5432/cells?application_name=a@b": "postgresql://lt@db:5432/cells?application_name=a@b",
    }
    for url, shown in cases.items():
        assert redact(url) == shown
        assert SECRET not in redact(url, marker=None) and "***" not in redact(url, marker=None)
        assert SECRET not in actor_name(url) and SECRET not in public_url(url)
        assert SECRET not in hide_secrets(f'libpq said: "{url}"', url)
    assert redact(f"postgresql://lt@db/cells?password={SECRET}", marker=None) == "postgresql://lt@db/cells"
    assert redact(f"postgresql://lt:{SECRET}@db/cells", marker=None) == "postgresql://lt@db/cells"
    # annotators with their own credentials find the trainer started with the trainer's
    assert actor_name(f"postgresql://lt:{SECRET}@db/cells") == actor_name("postgresql://lt@db/cells")


async def test_no_error_message_log_repr_or_state_shows_the_password(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    host, port = postgres_server.host, postgres_server.port
    database = postgres_url.rsplit("/", 1)[1]
    with_secret = postgres_url.replace("postgres@", f"postgres:{quote(SECRET)}@")  # trust auth ignores it
    password_only = postgres_server.password_user("lt_secret", "the-right-one")
    bad_urls = {
        "bad percent-encoding": f"postgresql://postgres:{SECRET}%ZZ@{host}:{port}/{database}",
        "unencoded slash": f"postgresql://postgres:{SECRET}/x@{host}:{port}/{database}",
        "space in the password": f"postgresql://postgres:{SECRET} x@{host}:{port}/{database}",
        "unclosed IPv6 bracket": f"postgresql://postgres:{SECRET}@[::1/{database}",
        "unreachable host": f"postgresql://postgres:{SECRET}@127.0.0.1:{closed_port()}/{database}",
        "password parameter, unreachable": f"postgresql://postgres@127.0.0.1:{closed_port()}/x?password={SECRET}",
        "wrong password": password_only.replace("lt_secret@", f"lt_secret:{SECRET}@"),
        "no such database": f"postgresql://postgres:{SECRET}@{host}:{port}/no_such_database",
        "unsupported scheme": f"mysql://postgres:{SECRET}@{host}/{database}",
    }
    seen: list[str] = []
    config = SessionConfig(trainer=TrainerConfig(batch_size=4, offer_min_steps=5))
    model = TinyClassifier("classification", ["left", "right"])

    for what, url in bad_urls.items():
        for open_it in (lambda u=url: AnnotationStore(u),
                        lambda u=url: TeamSession(u, object(), user="alice"),
                        lambda u=url: TeamTrainer(tmp_path / "t", u, "classification", ["left", "right"], model=model)):
            seen += [what, *everything_about(failure(open_it))]
        seen += [actor_name(url), public_url(url), redact(url)]
    assert "password authentication failed" in " ".join(seen)  # the wrong password was refused, as such

    # An empty database: the team's session says it holds no project yet (it named the URL with its password).
    exc = failure(lambda: TeamSession(with_secret, object(), user="alice"))
    assert "holds no project yet" in str(exc)
    seen += everything_about(exc)

    # A working team on a URL with the password in it, then its connections cut by the server.
    trainer = TeamTrainer(tmp_path / "trainer", with_secret, "classification", ["left", "right"], model=model,
                          config=config, poll_s=0.05)
    images, labels = two_class_images(6)
    trainer.session.add_images(images)
    me = TeamSession(with_secret, trainer, user="alice")
    try:
        await me.poll()
        image_id = await me.claim_next()
        assert image_id is not None
        await me.submit(image_id, Annotation(16, 16, category=labels[0]))
        seen += [repr(me), repr(me.store), me.store.where, repr(trainer), repr(trainer.session.store),
                 str(me.state), str(await trainer.status())]
        seen += everything_about(failure(lambda: me.image(10**6)))
        seen += everything_about(failure(lambda: me.store.image(10**6)))
        with postgres_server.admin() as db:  # a server restart, as every connection sees it
            db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                       "AND pid <> pg_backend_pid()", (database,))
        seen += everything_about(failure(lambda: me.store.image_ids()))
        with postgres_server.admin() as db:  # and the database gone
            db.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        seen += everything_about(failure(lambda: me.store.image_ids()))
        seen += everything_about(failure(lambda: AnnotationStore(with_secret)))
        await me.poll()  # the heartbeat keeps going and says what it could not do
        seen += [str(me.state), str(await trainer.status()), me.lease_error or ""]
        with pytest.raises(Exception) as info:
            await trainer.sync()
        seen += everything_about(info.value)
    finally:
        for close in (me.close, trainer.close):
            try:
                await close()
            except Exception as exc:  # the database is gone: what closing says counts too
                seen += everything_about(exc)
    seen += [f"{r.levelname} {r.name}: {r.getMessage()} {r.exc_text or ''}" for r in caplog.records]
    assert leaks(seen) == []
