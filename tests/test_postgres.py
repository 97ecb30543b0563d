"""The same models, migrations and sync on PostgreSQL (127.0.0.1:5432 on these machines)."""

from __future__ import annotations

import subprocess
import sys

from support import PASSWORD, ROOT, Portal, client_for, create_env, make_app, run_sync

from portal.extensions import db
from portal.models import User
from portal.security import hash_password
from portal.simulator import Simulator


def test_portal_on_postgresql(tmp_path, pg_url):
    app = make_app(tmp_path, DATABASE_URL=pg_url)
    make_app(tmp_path, DATABASE_URL=pg_url)  # a second start changes nothing
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(User.id))) == 1
        db.session.add(User(username="alice", role="admin", password_hash=hash_password(PASSWORD)))
        db.session.commit()
    admin = Portal(client_for(app))
    assert admin.login("alice").status_code == 302
    with Simulator(credentials=150, seed=4) as sim:
        env = create_env(admin, sim)
        assert run_sync(app, admin, env["id"])["counts"]["new"] == 150
        sim.rotate(0.2)
        run = run_sync(app, admin, env["id"])
        assert run["counts"]["changed"] == 30
        first_run = admin.api("POST", f"/api/v1/environments/{env['id']}/sync", json={}).json
        second = admin.api("POST", f"/api/v1/environments/{env['id']}/sync", json={}).json
        assert first_run["id"] == second["id"]
    page = admin.client.get(f"/api/v1/environments/{env['id']}/credentials?q=esx&sort=-username")
    assert page.status_code == 200 and page.json["total"] > 0
    assert admin.api("DELETE", f"/api/v1/environments/{env['id']}").status_code == 204
    with app.app_context():
        db.engine.dispose()


def test_first_start_on_postgresql_prints_the_sign_in_hint(tmp_path, pg_url):
    env = {
        "PATH": "/usr/bin:/bin",
        "PORTAL_DATA_DIR": str(tmp_path / "data"),
        "PORTAL_LOG_DIR": str(tmp_path / "logs"),
        "PORTAL_SCHEDULER": "off",
        "DATABASE_URL": pg_url,
    }
    command = [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import app"]
    first = subprocess.run([*command, str(ROOT)], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "sign in as 'admin' with the password 'admin'" in first.stderr
    again = subprocess.run([*command, str(ROOT)], env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "sign in as" not in again.stderr
